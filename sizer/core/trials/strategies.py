"""Adaptation strategies, cheapest first. zero-shot and few-shot differ only in demonstrations."""

from __future__ import annotations

import hashlib
from typing import Sequence

from sizer.core.errors import SizerError

STRATEGIES = ("zero-shot", "few-shot", "rag", "fine-tune")


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise SizerError(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")
    return name


def _rank(seed: int, example_id: str) -> str:
    return hashlib.sha256(f"demo:{seed}:{example_id}".encode()).hexdigest()


def demonstrations(train: Sequence, labels: Sequence[str], per_label: int, seed: int) -> list:
    """Up to `per_label` training examples of each label (of `per_label` x labels in all when
    there are no labels), interleaved label by label so no label sits all at the end."""
    if not labels:
        return sorted(train, key=lambda e: _rank(seed, e.id))[:per_label]
    by_label = {label: sorted((e for e in train if e.label == label), key=lambda e: _rank(seed, e.id))
                for label in labels}
    picked = []
    for round_ in range(per_label):
        for label in sorted(labels, key=lambda l: _rank(seed + round_, l)):
            if round_ < len(by_label[label]):
                picked.append(by_label[label][round_])
    return picked
