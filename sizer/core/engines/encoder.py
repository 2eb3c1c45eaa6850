"""Sentence encoders through sentence-transformers, for classify tasks: embed, then label each
example by its nearest label centroid or by a vote of its nearest labelled neighbours."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from sizer.core.catalog.resolve import LocalModel


class Encoder:
    """A loaded sentence-transformers model on one device."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @classmethod
    def load(cls, local: LocalModel, device: str, trust_remote_code: bool = False) -> "Encoder":
        from sentence_transformers import SentenceTransformer

        from sizer.core.engines.library_output import hook_transformers_bars

        hook_transformers_bars()
        model = SentenceTransformer(
            str(local.path), device=device, trust_remote_code=trust_remote_code, local_files_only=True
        )
        return cls(model)

    @property
    def max_context(self) -> int:
        return int(self.model.max_seq_length or 512)

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=True)["input_ids"])

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        return self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )


def centroids(embeddings: np.ndarray, labels: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """One unit-length mean embedding per label in `order` (labels with no example get zeros)."""
    rows = []
    for label in order:
        members = embeddings[[i for i, l in enumerate(labels) if l == label]]
        mean = members.mean(axis=0) if len(members) else np.zeros(embeddings.shape[1])
        norm = np.linalg.norm(mean)
        rows.append(mean / norm if norm else mean)
    return np.stack(rows)


def nearest_centroid(queries: np.ndarray, label_vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query to each label vector: (queries, labels)."""
    return queries @ label_vectors.T


def knn_votes(queries: np.ndarray, bank: np.ndarray, bank_labels: Sequence[str], order: Sequence[str], k: int) -> np.ndarray:
    """Similarity-weighted votes of the k nearest bank examples per label: (queries, labels)."""
    sims = queries @ bank.T
    k = min(k, bank.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    index = {label: j for j, label in enumerate(order)}
    votes = np.zeros((queries.shape[0], len(order)))
    for row, neighbours in enumerate(top):
        weights: Counter[int] = Counter()
        for n in neighbours:
            weights[index[bank_labels[n]]] += float(sims[row, n])
        for j, w in weights.items():
            votes[row, j] = w
    return votes
