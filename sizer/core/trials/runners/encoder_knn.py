"""The RAG strategy with a sentence encoder on a classify task: a similarity-weighted vote of the
k nearest examples in the whole labelled training bank (the "large labelled bank" case), whose
embeddings are indexed once and kept on disk."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from sizer.core.trials import retrieval
from sizer.core.engines.encoder import knn_votes
from sizer.core.trials.runners.encoder_classify import EncoderClassifyRunner

NEIGHBOURS = 10


class EncoderKNNRunner(EncoderClassifyRunner):
    def __init__(self, loader, embedder_name: str, top_k: int | None, seed: int) -> None:
        super().__init__(loader, "rag", None, seed, scoring="knn")
        self.embedder_name = embedder_name
        self.top_k = top_k if top_k is not None else NEIGHBOURS

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        embedder = retrieval.EncoderEmbedder(self.embedder_name, self.encoder)
        index = retrieval.build_index([retrieval.Chunk(e.id, e.text, 0) for e in train], embedder)
        bank_labels = [e.label for e in train]
        self._scorer = lambda q: knn_votes(q, index.vectors, bank_labels, task.labels, k=self.top_k)
        settings = {"scoring": "knn", "top_k": self.top_k, "bank": len(train)}
        digest = hashlib.sha256(json.dumps([settings, index.key]).encode()).hexdigest()[:16]
        return settings, digest, self._drop_too_long(test)


def make(entry, task, spec, placement, seed) -> EncoderKNNRunner:
    from sizer.core.trials.runners import encoder_loader

    local = placement.local
    return EncoderKNNRunner(encoder_loader(placement, spec),
                            f"{entry.id}@{local.revision}", spec.shots, seed)
