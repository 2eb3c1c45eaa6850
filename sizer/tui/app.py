"""The sizer app: one screen per step, the App owning all state.

Long work (hardware detection, candidate estimates, trials) runs in thread workers that get a
cancel event and post `CoreEvent`/`TrialDone` messages (`sizer.tui.messages`); only handlers on the
App's thread change its `State` (`sizer.tui.state`), then the visible screen re-renders from it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from sizer.core import events
from sizer.core.catalog.model_catalog import Catalog, load_catalog
from sizer.core.decide.types import RunSpec
from sizer.core.errors import SizerError
from sizer.core.hardware.profile import detect, simulated
from sizer.core.hardware.devices import HardwareProfile
from sizer.core.trials.strategies import STRATEGIES
from sizer.core.task.model import Task
from sizer.core.task.spec import load_task
from sizer.tui import engine
from sizer.tui.bridge import CoreEvent, sink_to
from sizer.tui.steps import step_bindings, step_screens
from sizer.tui.messages import CandidatesReady, DownloadsDone, ProfileReady, RunDone, TrialDone
from sizer.tui.state import Fetching, Live, State
from sizer.tui.task_form import form_from_task


def _load_progress(event: events.Event) -> bool:
    """A loading event that only advances the loader's counts (the log keeps the first one)."""
    return isinstance(event, events.ModelLoading) and event.total > 0


class SizerApp(App):
    CSS_PATH = "sizer.tcss"
    TITLE = "sizer"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        *step_bindings(),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, task_path: str | Path | None = None, here: HardwareProfile | None = None,
                 catalog: Catalog | None = None, limit: int | None = None) -> None:
        """`here`: use this profile instead of detecting this machine (tests, demos)."""
        super().__init__()
        self.state = State(here=here, profile=here, limit=limit)
        self.task_path = Path(task_path) if task_path else None  # None while the task has unsaved edits
        self.task_file: Path | None = None  # the file the task was last opened from or saved to
        self.catalog = catalog
        self.cancel_run = threading.Event()
        self.skip_trial = threading.Event()
        self.cancel_download = threading.Event()
        self.saved_report: Path | None = None

    def on_mount(self) -> None:
        for name, screen in step_screens().items():
            self.add_mode(name, screen)
        self.switch_mode("hardware")
        if self.state.here is None:
            self.detect_hardware()
        else:
            self.estimate_candidates()
        if self.task_path is not None:
            self.open_task(self.task_path)

    # ------------------------------------------------------------------ state changes

    def changed(self) -> None:
        """Re-render the visible screen from the state."""
        show = getattr(self.screen, "render_state", None)
        if show is not None:
            show()

    def action_step(self, name: str) -> None:
        self.switch_mode(name)

    def note_error(self, message: str) -> None:
        self.state.log.append(f"error: {message}")
        self.notify(message, title="sizer", severity="error", timeout=8)

    def open_task(self, path: str | Path) -> bool:
        try:
            task = load_task(path)
        except SizerError as exc:
            self.note_error(str(exc))
            return False
        self.task_path = self.task_file = Path(path)
        self.state.task, self.state.form = task, form_from_task(task)
        for warning in task.warnings:
            self.notify(warning, severity="warning")
        self.changed()
        return True

    def use_task(self, task: Task, path: Path | None) -> None:
        self.state.task, self.task_path = task, path
        self.task_file = path or self.task_file
        self.changed()

    def use_profile(self, spec: str | None) -> None:
        """Show a simulated machine (`spec`), or this machine again (None)."""
        if spec is None:
            self.state.profile = self.state.here
        else:
            try:
                self.state.profile = simulated(spec)
            except SizerError as exc:
                self.note_error(str(exc))
                return
        self.changed()
        self.estimate_candidates()

    # ------------------------------------------------------------------ workers

    @work(thread=True, exclusive=True, group="hardware")
    def detect_hardware(self, remeasure: bool = False) -> None:
        try:
            profile = detect(remeasure=remeasure, sink=sink_to(self))
        except SizerError as exc:
            self.post_message(ProfileReady(None, True, str(exc)))
            return
        self.post_message(ProfileReady(profile, True))

    @on(ProfileReady)
    def _profile_ready(self, message: ProfileReady) -> None:
        if message.error:
            self.note_error(message.error)
            return
        if self.state.profile is None or self.state.profile is self.state.here:
            self.state.profile = message.profile
        self.state.here = message.profile
        self.changed()
        self.estimate_candidates()

    def use_engine(self, name: str | None) -> None:
        """Estimate every candidate as engine `name` would serve it (None: the default engine)."""
        self.state.engine = name
        self.estimate_candidates()

    def use_run_options(self, limit: int | None, strategies: list[str]) -> None:
        """The next run's test examples per trial (None: all) and strategies, cheapest first."""
        self.state.limit, self.state.strategies = limit, [s for s in STRATEGIES if s in strategies]

    @work(thread=True, exclusive=True, group="candidates")
    def estimate_candidates(self) -> None:
        profile = self.state.profile
        if profile is None:
            return
        try:
            self.catalog = self.catalog or load_catalog()
            rows = engine.candidate_rows(self.catalog, profile, self.state.engine)
        except SizerError as exc:
            self.post_message(CandidatesReady([], str(exc)))
            return
        self.post_message(CandidatesReady(rows))

    @work(thread=True, exclusive=True, group="candidates")
    def add_model(self, name: str) -> None:
        """Size a model named by Hub repo id, folder or GGUF file (sizer.core.catalog.lookup, as `fit`
        does), keep it in the user catalog, and select it."""
        from sizer.core.catalog.lookup import resolve_model

        profile = self.state.profile
        if profile is None:
            return
        try:
            entry = resolve_model(name, self.catalog)
            self.catalog = load_catalog()
            rows = engine.candidate_rows(self.catalog, profile)
        except SizerError as exc:
            self.post_message(CandidatesReady([], str(exc)))
            return
        self.post_message(CandidatesReady(rows, added=entry.id))

    @on(CandidatesReady)
    def _candidates_ready(self, message: CandidatesReady) -> None:
        if message.error:
            self.note_error(message.error)
            return
        first = not self.state.candidates
        self.state.candidates = message.rows
        if first and not self.state.selected:  # start with what can run here now
            self.state.selected = {r.entry.id for r in message.rows if r.cached and r.fit != "no"}
        if message.added:
            self.state.selected.add(message.added)
        self.changed()

    def action_run(self) -> None:
        """Start a run over the selected models and strategies."""
        if self.state.running:
            self.notify("a run is already going; x cancels it")
            return
        problem = self._run_problem()
        if problem:
            self.note_error(problem)
            return
        self.cancel_run.clear()
        self.skip_trial.clear()
        self.state.running, self.state.trials, self.state.outcome = True, [], None
        self.state.live = Live()
        self.switch_mode("run")
        self.run_worker_thread(self._run_spec())

    def _run_problem(self) -> str:
        if self.state.task is None:
            return "no task: open one on the Task screen (2)"
        if not self.state.selected:
            return "no models selected: pick some on the Models screen (3)"
        if not self.state.strategies:
            return "no strategies selected: pick some on the Models screen (3)"
        if self.catalog is None:
            return "the catalog is still loading; try again in a moment"
        return ""

    def _run_spec(self) -> RunSpec:
        order = [r.entry.id for r in self.state.candidates if r.entry.id in self.state.selected]
        here = self.state.here
        return RunSpec(task=self.state.task, models=tuple(order), strategies=tuple(self.state.strategies),
                       limit=self.state.limit, profile=self.state.profile if self.state.profile is not here else None,
                       engine=self.state.engine)

    @work(thread=True, exclusive=True, group="run")
    def run_worker_thread(self, spec: RunSpec) -> None:
        here = self.state.here
        try:
            outcome = engine.run(spec, self.catalog, sink_to(self), self.cancel_run,
                                 lambda row: self.post_message(TrialDone(row)),
                                 here=here if here is not None and not here.simulated else None, skip=self.skip_trial)
        except SizerError as exc:
            self.post_message(RunDone(None, str(exc)))
            return
        self.post_message(RunDone(outcome))

    def action_skip_trial(self) -> None:
        """Stop the trial in flight (recorded as skipped); the run goes on with the next one."""
        if self.state.running:
            self.skip_trial.set()
            self.notify("skipping this trial...")

    def action_cancel_run(self) -> None:
        if self.state.running:
            self.cancel_run.set()
            self.notify("cancelling the run...")

    def action_download(self) -> None:
        """Download the selected models that are not on this machine yet (the Models screen's d)."""
        if self.state.fetching.active:
            self.notify("a download is going; x stops it")
            return
        rows = [r for r in self.state.candidates if r.entry.id in self.state.selected and not r.cached]
        if not rows:
            self.notify("nothing to download: the selected models are on this machine (space selects others)")
            return
        self.cancel_download.clear()
        self.state.fetching = Fetching(tuple(r.entry.id for r in rows), active=True)
        self.changed()
        self.download_models([r.entry for r in rows])

    @work(thread=True, exclusive=True, group="download")
    def download_models(self, entries: list[Any]) -> None:
        from sizer.core.download.progress import DownloadCancelled
        from sizer.core.download.in_run import fetch_models

        try:
            left_out = fetch_models(entries, None, sink_to(self), self.cancel_download)
        except DownloadCancelled:
            self.post_message(DownloadsDone({}, cancelled=True))
            return
        except SizerError as exc:
            self.post_message(DownloadsDone({}, error=str(exc)))
            return
        self.post_message(DownloadsDone(left_out))

    def action_cancel_download(self) -> None:
        """Stop the download in flight; the file being fetched is discarded, finished ones stay."""
        if self.state.fetching.active:
            self.cancel_download.set()
            self.notify("stopping the download...")

    @on(DownloadsDone)
    def _downloads_done(self, message: DownloadsDone) -> None:
        fetching = self.state.fetching
        fetching.active = False
        fetched = len(fetching.models) - len(message.left_out)
        if message.error:
            self.note_error(message.error)
        elif message.cancelled:
            self.notify("download stopped; the models finished before it are on disk")
        elif message.left_out:
            self.note_error(f"downloaded {fetched} of {len(fetching.models)}; not downloaded: "
                            + "; ".join(f"{m}: {why}" for m, why in message.left_out.items()))
        else:
            self.notify(f"downloaded {fetched} model(s)")
        self.changed()
        self.estimate_candidates()  # the "on disk" column

    @on(CoreEvent)
    def _core_event(self, message: CoreEvent) -> None:
        event, live = message.event, self.state.live
        self._download_event(event)
        now = time.monotonic()
        if isinstance(event, events.ModelLoading):
            same = live.phase == "loading" and live.model == event.model
            self.state.live = Live(event.model, phase="loading", load=event, since=live.since if same else now)
        elif isinstance(event, events.TrialPreparing):
            self.state.live = Live(event.model, event.strategy, phase="preparing", since=now)
        elif isinstance(event, events.TrialStarted):
            self.state.live = Live(event.model, event.strategy, event.settings.get("cached", 0), event.examples,
                                   phase="scoring", since=now)
        elif isinstance(event, events.TrialProgress):
            live.model, live.strategy, live.done, live.total = event.model, event.strategy, event.done, event.total
            live.metric, live.low, live.high, live.examples_per_s = event.metric, event.low, event.high, event.examples_per_s
        if not isinstance(event, (events.TrialProgress, events.Progress)) and not _load_progress(event):
            self.state.log.append(events.describe(event))
        self.changed()

    def _download_event(self, event: events.Event) -> None:
        fetching = self.state.fetching
        if isinstance(event, events.DownloadStarted):
            fetching.model, fetching.done, fetching.total = event.model, 0, event.total_bytes
        elif isinstance(event, events.Progress) and event.stage == "download":
            fetching.done, fetching.total = event.done, event.total
        elif isinstance(event, events.DownloadFinished):
            fetching.finished += 1

    @on(TrialDone)
    def _trial_done(self, message: TrialDone) -> None:
        self.state.trials.append(message.row)
        self.changed()

    @on(RunDone)
    def _run_done(self, message: RunDone) -> None:
        self.state.running = False
        if message.error:
            self.note_error(message.error)
        else:
            self.state.outcome = message.outcome
            done = "finished" if message.outcome is not None and message.outcome.finished else "cancelled"
            self.state.log.append(f"run {done}: {len(self.state.trials)} trials")
            self.notify(f"run {done}; 5 shows the results, 6 the decision")
        self.changed()

    # ------------------------------------------------------------------ command palette

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Run", "Run the selected models and strategies on the task", self.action_run)
        yield SystemCommand("Save recommendation", "Save the decision and all trials to a TOML report",
                            lambda: self._on_step("recommendation", "save"))
        yield SystemCommand("Open task", "Open a task TOML file", lambda: self._on_step("task", "open"))
        yield SystemCommand("Switch profile", "Plan for a simulated machine (or this one)",
                            lambda: self._on_step("hardware", "profile"))
        yield SystemCommand("Skip trial", "Stop the trial in flight; the run goes on", self.action_skip_trial)
        yield SystemCommand("Cancel run", "Stop the run (finished trials stay in the cache)", self.action_cancel_run)
        yield SystemCommand("Download selected models", "Fetch the selected models that are not on this machine",
                            self.action_download)
        yield SystemCommand("Stop download", "Stop the download in flight (finished models stay)",
                            self.action_cancel_download)

    def _on_step(self, step: str, action: str) -> None:
        self.switch_mode(step)
        self.call_after_refresh(self.run_action, action, self.screen)
