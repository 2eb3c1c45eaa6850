"""Step 5: every trial in a sortable table, and each trial as a point (its metric) with its 95%
interval against model size, coloured by strategy, with the target line. The recommended trial is marked ★ and gets the cursor."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


STRATEGY_STYLES = (("cyan", "●"), ("green", "■"), ("orange", "▲"), ("magenta", "◆"), ("red", "▼"), ("blue", "★"))
NUDGE = 0.025  # of the x range, between strategies' points at one size, so their intervals stay apart


@dataclass(frozen=True)
class Series:
    """One strategy's trials on the chart: (x, metric, low, high) each, x being log10 params."""

    strategy: str
    color: str
    marker: str  # the point's shape: strategies stay apart without colour too
    points: list[tuple[float, float, float, float]]


def chart_series(trials: list[TrialRow]) -> list[Series]:
    """One series per strategy, in order of first appearance. Points at one size are nudged apart
    by strategy; each trial stands alone: nothing joins trials of different models."""
    scored = [t for t in trials if t.metric is not None]
    strategies = list(dict.fromkeys(t.strategy for t in scored))
    xs = [math.log10(max(t.params, 1)) for t in scored]
    step = NUDGE * ((max(xs) - min(xs)) or 1.0) if xs else 0.0
    middle = (len(strategies) - 1) / 2
    series = []
    for k, strategy in enumerate(strategies):
        points = [(math.log10(max(t.params, 1)) + (k - middle) * step, t.metric,
                   t.metric if t.low is None else t.low, t.metric if t.high is None else t.high)
                  for t in scored if t.strategy == strategy]
        color, marker = STRATEGY_STYLES[k % len(STRATEGY_STYLES)]
        series.append(Series(strategy, color, marker, sorted(points)))
    return series


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
        plt.xlabel("parameters (log scale)")
        plt.ylabel("metric")
        series = chart_series(trials)
        for one in series:
            for i, (x, value, low, high) in enumerate(one.points):
                plt.plot([x, x], [low, high], color=one.color, marker="│")  # the 95% interval
                plt.scatter([x], [value], color=one.color, marker=one.marker, label=one.strategy if i == 0 else None)
        if target is not None:
            plt.hline(target)
        sizes = sorted({t.params for t in trials if t.metric is not None})
        if sizes:
            xs = [math.log10(max(p, 1)) for p in sizes]
            pad = 0.1 * ((xs[-1] - xs[0]) or 1.0)
            plt.xlim(xs[0] - pad, xs[-1] + pad)
            plt.xticks(xs, [params(p) for p in sizes])
        plt.ylim(0, 1.2)  # the band above 1 holds the legend
        plt.yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        plot.refresh()
