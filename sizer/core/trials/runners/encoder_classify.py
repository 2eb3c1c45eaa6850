"""Classify with a sentence encoder: similarity to label descriptions (zero-shot), or to the
labelled training examples (few-shot: nearest centroid, or a kNN vote)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Sequence

import numpy as np

from sizer.core.engines.encoder import Encoder, centroids, knn_votes, nearest_centroid
from sizer.core.trials.strategies import demonstrations

AUTO_SHOTS = 8
BATCH = 64
FIRST_BATCH = 1  # the first example scored alone: the running metric shows at once


def batches(items: Sequence, size: int = BATCH, first: int = FIRST_BATCH) -> list[Sequence]:
    """`items` in batches of `size`, the first of `first`."""
    head = [items[:first]] if items[:first] else []
    return head + [items[i:i + size] for i in range(first, len(items), size)]


class EncoderClassifyRunner:
    def __init__(self, loader: Callable[[], Encoder], strategy: str, shots: int | None, seed: int,
                 scoring: str = "centroid") -> None:
        self._loader = loader
        self.strategy = strategy
        self.shots = shots
        self.seed = seed
        self.scoring = scoring
        self.encoder: Encoder | None = None
        self.warnings: list[str] = []

    def load(self) -> None:
        self.encoder = self._loader()

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        if self.strategy == "zero-shot":
            texts = [f"{label.replace('_', ' ')}: {task.label_descriptions[label]}"
                     if task.label_descriptions.get(label) else label.replace("_", " ") for label in task.labels]
            self._label_vectors = self.encoder.embed(texts)
            self._scorer = lambda q: nearest_centroid(q, self._label_vectors)
            settings = {"shots_per_label": 0, "scoring": "label-description similarity"}
            digest_parts = texts
        else:
            per_label = self.shots if self.shots is not None else AUTO_SHOTS
            demos = demonstrations(train, task.labels, per_label, self.seed)
            bank = self.encoder.embed([d.text for d in demos])
            bank_labels = [d.label for d in demos]
            if self.scoring == "knn":
                self._scorer = lambda q: knn_votes(q, bank, bank_labels, task.labels, k=5)
            else:
                vectors = centroids(bank, bank_labels, task.labels)
                self._scorer = lambda q: nearest_centroid(q, vectors)
            settings = {"shots_per_label": per_label, "demonstrations": len(demos), "scoring": self.scoring}
            digest_parts = [d.id for d in demos]
        digest = hashlib.sha256(json.dumps([settings, digest_parts]).encode()).hexdigest()[:16]
        return settings, digest, self._drop_too_long(test)

    def _drop_too_long(self, test: Sequence) -> list:
        limit = self.encoder.max_context
        long = [e for e in test if self.encoder.count_tokens(e.text) > limit]
        if long:
            self.warnings.append(
                f"{len(long)} example(s) longer than the encoder's {limit}-token window are truncated ({long[0].source})"
            )
        return list(test)

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        for batch in batches(examples):
            began = time.perf_counter()
            scores = self._scorer(self.encoder.embed([e.text for e in batch]))
            each = (time.perf_counter() - began) / len(batch)
            best = np.argmax(scores, axis=1)
            on_batch([
                {"example_id": e.id, "gold": e.label, "prediction": task.labels[int(b)],
                 "scores": [round(float(x), 6) for x in row], "latency_s": each}
                for e, b, row in zip(batch, best, scores)
            ])


def make(entry, task, spec, placement, seed) -> EncoderClassifyRunner:
    from sizer.core.trials.runners import encoder_loader

    return EncoderClassifyRunner(encoder_loader(placement, spec), spec.strategy,
                                 spec.shots, seed, spec.encoder_scoring)
