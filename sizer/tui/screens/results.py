"""Step 5: every trial in a sortable table, and each trial as a point (its metric) with its 95%
interval against model size, coloured by strategy, with the target line. The recommended trial is marked ★ and gets the cursor."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from sizer.tui.engine import TrialRow
from sizer.tui.fmt import params, rate, size
from sizer.tui.screens import StepScreen

COLUMNS = ("★", "model", "params", "strategy", "status", "metric", "low", "high", "ex/s", "peak mem")
SORTS = {
    "params": lambda t: t.params,
    "metric": lambda t: -1.0 if t.metric is None else t.metric,
    "speed": lambda t: t.examples_per_s or 0.0,
}


def recommended(rec: object, trial: TrialRow) -> bool:
    return rec is not None and getattr(rec, "model", None) == trial.model and getattr(rec, "strategy", None) == trial.strategy


def target_value(task: object) -> float | None:
    target = getattr(task, "target", None)
    return getattr(target, "absolute", None) if target is not None else None


STRATEGY_COLORS = ("cyan", "green", "orange", "magenta", "red", "blue")
JITTER = 0.03  # log10 units between strategies' points at one size, so their intervals stay apart


def chart_points(trials: list[TrialRow]) -> list[tuple[str, str, list[tuple[float, float, float, float]]]]:
    """Per strategy (in order of first appearance): its colour and one (x, metric, low, high) per
    scored trial, x being log10 params nudged by strategy so points at one size do not overlap.
    Each trial stands alone: nothing joins trials of different models."""
    scored = [t for t in trials if t.metric is not None]
    strategies = list(dict.fromkeys(t.strategy for t in scored))
    middle = (len(strategies) - 1) / 2
    out = []
    for k, strategy in enumerate(strategies):
        points = [(math.log10(max(t.params, 1)) + (k - middle) * JITTER, t.metric,
                   t.metric if t.low is None else t.low, t.metric if t.high is None else t.high)
                  for t in scored if t.strategy == strategy]
        out.append((strategy, STRATEGY_COLORS[k % len(STRATEGY_COLORS)], sorted(points)))
    return out


class ResultsScreen(StepScreen):
    STEP = "results"
    AUTO_FOCUS = "#trials"
    BINDINGS = [
        Binding("s", "sort('params')", "By size"),
        Binding("m", "sort('metric')", "By metric"),
        Binding("f", "sort('speed')", "By speed"),
        Binding("n", "app.step('recommendation')", "Next"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort_key = "params"

    def body(self) -> ComposeResult:
        with Vertical(id="results"):
            yield DataTable(id="trials", cursor_type="row", zebra_stripes=True)
            yield PlotextPlot(id="chart")

    def on_mount(self) -> None:
        self.query_one("#trials", DataTable).add_columns(*COLUMNS)
        super().on_mount()

    def action_sort(self, key: str) -> None:
        self.sort_key = key
        self.show_state()

    def show_state(self) -> None:
        state = self.sizer.state
        rec = state.outcome.recommendation if state.outcome else None
        if not self.changed_since_shown("trials", (len(state.trials), id(state.outcome), self.sort_key)):
            return
        table = self.query_one("#trials", DataTable)
        table.clear()
        marked = None
        for i, t in enumerate(sorted(state.trials, key=SORTS[self.sort_key], reverse=True)):
            star = "★" if recommended(rec, t) else ""
            marked = i if star else marked
            cells = (star, t.model, params(t.params), t.strategy, t.status,
                     *(("-" if v is None else f"{v:.3f}") for v in (t.metric, t.low, t.high)),
                     rate(t.examples_per_s), size(t.peak_bytes))
            table.add_row(*cells, key=str(i))
        if marked is not None:
            table.move_cursor(row=marked)
        self._chart(state.trials, target_value(state.task))

    def _chart(self, trials: list[TrialRow], target: float | None) -> None:
        plot = self.query_one("#chart", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("each trial: metric and 95% interval vs model size"
                  + (f"; the line at {target:g} is the target" if target is not None else ""))
        plt.xlabel("log10 params")
        plt.ylabel("metric")
        for strategy, color, points in chart_points(trials):
            for i, (x, value, low, high) in enumerate(points):
                plt.plot([x, x], [low, high], color=color, marker="braille")  # the 95% interval
                plt.scatter([x], [value], color=color, marker="●", label=strategy if i == 0 else None)
        if target is not None:
            plt.hline(target)
        plt.ylim(0, 1)
        plot.refresh()
