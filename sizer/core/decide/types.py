"""A run's data: what it is asked (`RunSpec`, with `RemoteModel` candidates on servers), the
candidates it considers (`Candidate`), each trial's outcome (`TrialOutcome`) and the run as walked
and decided (`RunResult`). Plain data at a low floor: the app and reports import it without the
walk, the engines or torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sizer.core.trials.strategies import STRATEGIES

if TYPE_CHECKING:
    from sizer.core.catalog.entry import ModelEntry
    from sizer.core.hardware.devices import HardwareProfile
    from sizer.core.trials.types import TrialResult


@dataclass(frozen=True)
class RemoteModel:
    """A candidate served by an OpenAI-compatible engine: the catalog id of its weights (for its
    size on the ladder), the server's URL and the name it serves the model under."""

    model: str
    url: str
    served_model: str | None = None


@dataclass(frozen=True)
class RunSpec:
    task: Any
    models: tuple[str, ...] | None = None
    family: str | None = None
    strategies: tuple[str, ...] = STRATEGIES
    limit: int | None = None
    target: float | None = None           # overrides the task's target with an absolute one
    budget_minutes: float | None = None   # default: the task's budget
    profile: HardwareProfile | None = None  # a machine to report fit and speed for, besides this one
    device: str | None = None
    dtype: str | None = None
    engine: str | None = None             # the engine candidates' size estimates assume (sizer.core.estimate.planning)
    remote: tuple[RemoteModel, ...] = ()  # candidates on serving engines, walked in the same ladders
    download: bool = False                # fetch missing candidates before the walk (sizer run does)
    download_budget_gb: float | None = None  # decimal GB; default: the task's [budget] download_gb
    serve: str | None = None              # run causal candidates on a managed server of this engine


@dataclass(frozen=True)
class Candidate:
    entry: ModelEntry
    fit: str
    predicted_bytes: int
    cached: bool
    usable: bool
    reason: str = ""
    endpoint: str | None = None        # set for a candidate on a serving engine
    served_model: str | None = None
    engine: str = ""                   # the engine all its trials run on; "": per strategy (trial_engine)

    @property
    def where(self) -> str:
        return self.endpoint or "local"


@dataclass
class TrialOutcome:
    model: str
    params: int
    kind: str
    strategy: str
    status: str                        # ok | oom | skipped | error | stopped-early
    reason: str = ""
    result: TrialResult | None = None
    predicted_bytes: int = 0
    correct: dict[str, float] = field(default_factory=dict)  # example id -> per-example score
    where: str = "local"               # "local", or the serving engine's URL
    quant: str = ""                    # a quantization rung's llama.cpp file type ("" = the model's own files)
    engine: str = "transformers"       # the engine the trial ran on


@dataclass
class RunResult:
    spec: RunSpec
    here: HardwareProfile
    candidates: list[Candidate]
    trials: list[TrialOutcome] = field(default_factory=list)
    recommendation: Any = None
    finished: bool = False
    rungs: list = field(default_factory=list)  # sizer.core.quant.rungs.RungResult, per model walked down its quantizations
