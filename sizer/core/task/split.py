"""Seeded, stratified train/test split.

Deterministic across runs, machines and Python versions: examples are ordered by
sha256(seed, example id) (never `hash()` or `random`), so the same task and seed always give the
same split, and adding examples moves few of the old ones. Classify tasks are stratified by label:
each label's share of the test split matches its share of the examples, with at least one example
of every label (that has two or more) on each side.

A split the user gave (`[examples] test_file`, a `split` column) is taken as it is: nothing is drawn.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from sizer.core.task.model import Example, Task


def holdout_count(count: int, fraction: float) -> int:
    """How many of `count` examples a test `fraction` holds out (rounded half up)."""
    return math.floor(count * fraction + 0.5)


def split(task: Task, seed: int | None = None) -> tuple[list[Example], list[Example]]:
    """(train, test) for the task, each in the task's own order. `seed` overrides `task.seed`.

    When the user gave the split, each example says its side and `seed` changes nothing."""
    if getattr(task, "split_from", "drawn") != "drawn":
        return ([e for e in task.examples if e.split != "test"], [e for e in task.examples if e.split == "test"])
    total = task.test_size if task.test_size is not None else holdout_count(len(task.examples), task.test_fraction)
    strata = (lambda e: e.label) if task.kind == "classify" else (lambda e: "")
    return stratified_split(task.examples, total, task.seed if seed is None else seed, strata)


def stratified_split(examples: Sequence[Example], test_total: int, seed: int,
                     stratum: Callable[[Example], str] = lambda e: "") -> tuple[list[Example], list[Example]]:
    """Hold out about `test_total` examples, spread over strata in proportion to their sizes."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(stratum(example), []).append(example)
    sizes = allocate({key: len(group) for key, group in groups.items()}, test_total)
    test_ids: set[str] = set()
    for key, group in groups.items():
        ranked = sorted(group, key=lambda e: _rank(seed, e.id))
        test_ids.update(e.id for e in ranked[: sizes[key]])
    train = [e for e in examples if e.id not in test_ids]
    test = [e for e in examples if e.id in test_ids]
    return train, test


def allocate(counts: dict[str, int], test_total: int) -> dict[str, int]:
    """Test examples per stratum: largest-remainder shares of `test_total`, in exact integers,
    then kept within [1, n - 1] for strata of two or more (a single example goes to train)."""
    whole = sum(counts.values())
    if whole == 0:
        return {}
    shares = {key: divmod(n * test_total, whole) for key, n in counts.items()}
    sizes = {key: q for key, (q, _) in shares.items()}
    leftover = test_total - sum(sizes.values())
    by_remainder = sorted(counts, key=lambda key: (-shares[key][1], key))
    for key in by_remainder[:leftover]:
        sizes[key] += 1
    return {key: (min(max(size, 1), counts[key] - 1) if counts[key] >= 2 else 0)
            for key, size in sizes.items()}


def _rank(seed: int, example_id: str) -> str:
    return hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()
