"""Step 4: the run: the trial now going (progress, running metric with its interval, speed,
memory), the trials done, and a log. x cancels the run (finished trials stay in the cache)."""

from __future__ import annotations

import os
import time

import psutil
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar, RichLog, Static

from sizer.tui.state import Live
from sizer.tui.fmt import interval, size, slow_rate
from sizer.tui.screens import StepScreen

MEMORY_POLL_S = 1.0


class RunScreen(StepScreen):
    STEP = "run"
    BINDINGS = [
        Binding("r", "app.run", "Run"),
        Binding("c", "app.skip_trial", "Skip trial"),
        Binding("x", "app.cancel_run", "Cancel run"),
        Binding("n", "app.step('results')", "Next"),
    ]

    def body(self) -> ComposeResult:
        with Vertical(id="run"):
            yield Label("", id="run-trial")
            yield ProgressBar(show_eta=False, id="run-bar")
            yield Static("", id="run-stats")
            yield Static("", id="run-done")
            yield RichLog(id="run-log", wrap=True, markup=False, max_lines=2000)

    def on_mount(self) -> None:
        self._shown_log = 0
        self._rss: int | None = None
        self.set_interval(MEMORY_POLL_S, self._poll_memory)
        super().on_mount()

    def _poll_memory(self) -> None:
        if self.sizer.state.running:
            self._rss = psutil.Process(os.getpid()).memory_info().rss
            self.show_state()

    def show_state(self) -> None:
        state, live = self.sizer.state, self.sizer.state.live
        memory = f"   process memory {size(self._rss)}" if state.running and self._rss else ""
        title, (done, total), stats = _live_lines(live)
        if state.running and live.since:
            stats += f"   {time.monotonic() - live.since:.0f} s"
        if not live.model:
            title = "starting: weighing the candidates" if state.running else "no run yet: r starts one over the selected models"
        self.query_one("#run-trial", Label).update(title)
        self.query_one("#run-bar", ProgressBar).update(total=total, progress=done)
        self.query_one("#run-stats", Static).update(stats + memory)
        done = [f"{t.model} {t.strategy}: {t.status} {interval(t.metric, t.low, t.high)}" for t in state.trials]
        status = "running" if state.running else ("finished" if state.outcome else "idle")
        self.query_one("#run-done", Static).update(f"{status}; trials done: {len(done)}\n" + "\n".join(done[-4:]))
        log = self.query_one("#run-log", RichLog)
        for line in state.log[self._shown_log:]:
            log.write(line)
        self._shown_log = len(state.log)


def _live_lines(live: Live) -> tuple[str, tuple[int, int | None], str]:
    """The title, the bar's (done, total; None: busy without a count) and the figures line for the
    phase the trial is in."""
    if live.phase == "loading" and live.load is not None:
        load = live.load
        title = f"loading {load.model} ({load.index} of {load.count})"
        if load.total:
            return title, (load.done, load.total), f"{load.step or 'loading'}: {load.done}/{load.total}"
        return title, (0, None), "reading the weights"
    if live.phase == "preparing":
        doing = "training" if live.strategy == "fine-tune" else "building prompts and demonstrations"
        return f"{live.model} · {live.strategy}", (0, None), doing
    stats = (f"{live.done}/{live.total} examples   metric {interval(live.metric, live.low, live.high)}   "
             f"{slow_rate(live.examples_per_s)} examples/s")
    return f"{live.model} · {live.strategy}" if live.model else "", (live.done, max(live.total, 1)), stats
