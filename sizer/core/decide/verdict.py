"""Does a trial meet the target? With confidence, not on a point estimate.

- An absolute target (`target = 0.85`): the metric's 95% lower bound must reach it.
- A margin (`within = 0.03` of the reference, the largest model's best strategy): a paired
  bootstrap over the test examples both trials scored; the 95% lower bound of the difference
  (candidate - reference) must be above -margin (non-inferiority).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


N_RESAMPLES = 2000


def absolute_bar(spec: Any) -> float | None:
    if spec.target is not None:
        return float(spec.target)
    return spec.task.target.absolute


def margin_bar(spec: Any, reference: Any) -> float:
    """The point value a candidate is compared against under a margin target (for display and
    early stopping; the decision itself uses the paired test)."""
    return reference.result.metric.value - (spec.task.target.within or 0.0)


def target_text(spec: Any) -> str:
    bar = absolute_bar(spec)
    if bar is not None:
        return f"{bar:g} target"
    return f"within {spec.task.target.within:g} of the reference"


def paired_lower_bound(candidate: dict[str, float], reference: dict[str, float], seed: int = 0) -> float | None:
    """95% lower bound of mean(candidate - reference) over shared examples (None if none shared)."""
    shared = sorted(set(candidate) & set(reference))
    if not shared:
        return None
    diff = np.array([candidate[i] - reference[i] for i in shared])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(N_RESAMPLES, len(diff)))].mean(axis=1)
    return float(np.quantile(means, 0.025))


def meets(spec: Any, outcome: Any, reference: Any, bar: float | None) -> bool:
    if outcome.status != "ok" or outcome.result is None:
        return False
    metric = outcome.result.metric
    if absolute_bar(spec) is not None:
        return metric.low >= bar
    if reference is None or outcome is reference:
        return outcome is reference
    lower = paired_lower_bound(outcome.correct, reference.correct)
    if lower is None:  # no shared examples: compare intervals conservatively
        return metric.low >= bar
    return lower >= -(spec.task.target.within or 0.0)


def best(outcomes: Iterable[Any]) -> Any:
    """The finished outcome with the highest metric (None when none finished)."""
    done = [o for o in outcomes if o.status == "ok" and o.result is not None]
    return max(done, key=lambda o: o.result.metric.value, default=None)
