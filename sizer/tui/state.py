"""What the app knows, owned by the App and changed only by its methods: the task, the machine,
the candidates, the run (the core's RunResult) and the live view of the trial in flight."""

from __future__ import annotations

from dataclasses import dataclass, field

from sizer.core import events
from sizer.core.decide.types import RunResult
from sizer.core.hardware.devices import HardwareProfile
from sizer.core.task.model import Task
from sizer.core.trials.strategies import STRATEGIES
from sizer.tui.engine import CandidateRow, TrialRow
from sizer.tui.task_form import TaskForm


@dataclass
class Live:
    """The trial now running, as the last events described it. `phase`: "loading" (the model's
    weights; `load` is the last loading event), "preparing" (prompts, demonstrations, training)
    or "scoring" (the test examples); "" before any trial."""

    model: str = ""
    strategy: str = ""
    done: int = 0
    total: int = 0
    metric: float | None = None
    low: float | None = None
    high: float | None = None
    examples_per_s: float | None = None
    phase: str = ""
    load: events.ModelLoading | None = None
    since: float = 0.0  # time.monotonic() when the phase began


@dataclass
class Fetching:
    """The downloads started from the Models screen, as the last events described them."""

    models: tuple[str, ...] = ()
    model: str = ""       # the model being fetched
    done: int = 0         # bytes of it received
    total: int = 0        # bytes of it to fetch
    finished: int = 0     # models done, failed or left out
    active: bool = False


@dataclass
class State:
    here: HardwareProfile | None = None  # this machine
    profile: HardwareProfile | None = None  # the profile on show: `here` or a simulated one
    task: Task | None = None
    form: TaskForm = field(default_factory=TaskForm)
    candidates: list[CandidateRow] = field(default_factory=list)
    engine: str | None = None  # the engine the Models screen's estimates assume (None: the default)
    selected: set[str] = field(default_factory=set)
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    limit: int | None = None
    trials: list[TrialRow] = field(default_factory=list)
    outcome: RunResult | None = None  # the last run, finished or cancelled part-way
    live: Live = field(default_factory=Live)
    running: bool = False
    log: list[str] = field(default_factory=list)
    fetching: Fetching = field(default_factory=Fetching)
