"""Learning curve: train on growing, nested shares of the training split, score each on the test
split, and fit a power law to the error, error(n) = a * n^-b, to say roughly how many more
examples would lift the metric to the target, or that the curve is flat."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from sizer.core.trials.scoring import Metric
from sizer.core.task.split import stratified_split

FRACTIONS = (0.25, 0.5, 1.0)
FLAT_GAIN = 0.01        # below this gain per doubling of the data, the curve is called flat
FAR = 10                # beyond this many times the current data, more examples are not the lever


def nested_subsets(train: Sequence, fractions: Sequence[float], seed: int,
                   stratum: Callable[[Any], str] = lambda e: "") -> list[list]:
    """One stratified subset per fraction; smaller subsets are contained in larger ones (each
    stratum is ranked once by the same seeded hash and cut at different lengths)."""
    subsets = []
    for fraction in fractions:
        if fraction >= 1.0:
            subsets.append(list(train))
            continue
        _, kept = stratified_split(train, max(1, round(len(train) * fraction)), seed, stratum)
        subsets.append(kept)
    return subsets


def fit_power_law(ns: Sequence[int], values: Sequence[float]) -> tuple[float, float] | None:
    """(a, b) of error = a * n^-b by least squares in log-log space; None when it cannot be fitted
    (fewer than two sizes, or a zero error)."""
    errors = [1.0 - v for v in values]
    if len(set(ns)) < 2 or min(errors) <= 0:
        return None
    slope, intercept = np.polyfit(np.log(ns), np.log(errors), 1)
    return float(math.exp(intercept)), float(-slope)


def estimate(points: Sequence[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """Plain-words reading of the curve: the gain per doubling and, with a target, roughly how many
    more examples would reach it."""
    ns = [p["n"] for p in points]
    values = [p["metric"] for p in points]
    last_n, last = ns[-1], values[-1]
    if target is not None and last >= target:
        return {"more_examples": 0, "flat": False,
                "words": f"already at the target ({last:.2f} >= {target:.2f}) with {last_n} examples"}
    law = fit_power_law(ns, values)
    if law is None:
        return {"more_examples": None, "flat": False, "words": "the curve cannot be fitted (perfect scores at some size)"}
    a, b = law
    gain = (1.0 - last) * (1.0 - 2.0 ** -b)   # what the next doubling adds, per the fit
    if b <= 0 or gain < FLAT_GAIN:
        return {"more_examples": None, "flat": True, "a": a, "b": b,
                "words": f"the curve is flat ({values[0]:.2f} at {ns[0]} examples, {last:.2f} at {last_n}): "
                         "more examples of this kind are unlikely to help"}
    fit = {"flat": False, "a": round(a, 5), "b": round(b, 5), "gain_per_doubling": round(gain, 4)}
    if target is None:
        return {**fit, "more_examples": None,
                "words": f"each doubling of the training data adds about {gain:.2f} (now {last:.2f} with {last_n} examples)"}
    needed = (a / (1.0 - target)) ** (1.0 / b)
    more = max(0, math.ceil(needed - last_n))
    if needed > FAR * last_n:
        return {**fit, "more_examples": more,
                "words": f"reaching {target:.2f} would take about {needed:,.0f} examples ({needed / last_n:.0f}x the "
                         f"{last_n} now): more data is not the lever; try a bigger model or another strategy"}
    return {**fit, "more_examples": more,
            "words": f"about {more:,} more examples (≈{needed:,.0f} in all) would likely lift it from {last:.2f} to {target:.2f}"}


def learning_curve(fit_and_score: Callable[[list], Metric], train: Sequence, target: float | None, seed: int,
                   stratum: Callable[[Any], str] = lambda e: "",
                   fractions: Sequence[float] = FRACTIONS) -> dict[str, Any]:
    """Train with `fit_and_score(subset) -> Metric` on each nested share of `train` and read the
    curve: {"points": [{n, fraction, metric, low, high}], "metric", "target", "estimate"}."""
    points = []
    for fraction, subset in zip(fractions, nested_subsets(train, fractions, seed, stratum)):
        metric = fit_and_score(subset)
        points.append({"n": len(subset), "fraction": fraction, "metric": round(metric.value, 4),
                       "low": round(metric.low, 4), "high": round(metric.high, 4)})
        name = metric.name
    return {"metric": name, "target": target, "points": points, "estimate": estimate(points, target)}
