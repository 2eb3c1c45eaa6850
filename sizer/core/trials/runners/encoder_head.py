"""Fine-tune strategy for sentence encoders on classify tasks: a logistic-regression head on the
embeddings of the training split, optionally after SetFit-style contrastive tuning of the encoder
(pairs of same-label / different-label examples, cosine-similarity loss, one epoch).

A learning curve (head on the frozen encoder, 25/50/100% of the training split) is computed by
default: with embeddings computed once it costs three small fits. The head is saved as JSON under
`cache_dir()/adapters/<key>/` (and the tuned encoder beside it when contrastive tuning ran).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from typing import Any, Callable, Sequence

import numpy as np

from sizer.core.trials import finetune

from sizer.core.engines import model_cache
from sizer.core.engines.encoder import Encoder
from sizer.core.trials.runners.encoder_classify import batches
from sizer.core.fileio import atomic_write_text
from sizer.core.trials.learning_curve import learning_curve
from sizer.core.trials.scoring import Metric, metric_for

BATCH = 64
PAIRS_PER_EXAMPLE = 4       # contrastive pairs per training example, capped by MAX_PAIRS
MAX_PAIRS = 480
PAIR_BATCH = 16
CONTRASTIVE_LR = 2e-5
MIN_CONTRASTIVE_BUDGET_S = 300.0  # below this (the CPU default), tuning the encoder is skipped
CONTRASTIVE_SHARE = 0.5           # contrastive tuning may use at most this share of the budget
HEAD_C = 10.0                     # inverse regularisation: embeddings are unit-length and few


def fit_head(x: np.ndarray, y: Sequence[str], seed: int) -> Any:
    """A multinomial logistic regression on unit-length embeddings."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=HEAD_C, max_iter=2000, random_state=seed).fit(x, list(y))


def head_scores(head: Any, x: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Class probabilities in the task's label order (labels unseen in training get 0)."""
    proba = head.predict_proba(x)
    out = np.zeros((x.shape[0], len(labels)))
    for j, cls in enumerate(head.classes_):
        out[:, labels.index(cls)] = proba[:, j]
    return out


def contrastive_pairs(examples: Sequence, seed: int, count: int) -> list[tuple[str, str, float]]:
    """SetFit-style pairs, alternating positive (same label, 1.0) and negative (different label, 0.0)."""
    rng = random.Random(seed)
    by_label: dict[str, list] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    pairs = []
    for i in range(count):
        anchor = examples[rng.randrange(len(examples))]
        positive = i % 2 == 0 and len(by_label[anchor.label]) > 1
        pool = by_label[anchor.label] if positive else [e for e in examples if e.label != anchor.label]
        if not pool:
            continue
        other = rng.choice([e for e in pool if e is not anchor] or pool)
        pairs.append((anchor.text, other.text, 1.0 if positive else 0.0))
    return pairs


def tune_contrastive(model: Any, pairs: Sequence[tuple[str, str, float]], seed: int, budget_s: float,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """One epoch of cosine-similarity loss over `pairs` (stops when `budget_s` runs out)."""
    import torch
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    torch.manual_seed(seed)
    loss_fn = CosineSimilarityLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=CONTRASTIVE_LR)
    began, done = clock(), 0
    model.train()
    for start in range(0, len(pairs), PAIR_BATCH):
        if clock() - began >= budget_s:
            break
        batch = pairs[start : start + PAIR_BATCH]
        features = [_features(model, [p[k] for p in batch]) for k in (0, 1)]
        loss = loss_fn(features, torch.tensor([p[2] for p in batch], device=model.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += len(batch)
    model.eval()
    return {"pairs": done, "planned_pairs": len(pairs), "seconds": round(clock() - began, 2)}


def _features(model: Any, texts: list[str]) -> dict:
    import torch

    prepare = getattr(model, "preprocess", None) or model.tokenize  # tokenize is deprecated in 6.x
    return {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in prepare(texts).items()}


class EncoderHeadRunner:
    def __init__(self, loader: Callable[[], Encoder], model_id: str, revision: str | None, seed: int,
                 budget_s: float, contrastive: bool | None, curve: bool) -> None:
        self._loader = loader
        self.model_id = model_id
        self.revision = revision
        self.seed = seed
        self.budget_s = budget_s
        self.contrastive = contrastive
        self.curve = curve
        self.encoder: Encoder | None = None
        self.warnings: list[str] = []

    def load(self) -> None:
        self.encoder = self._loader()

    def _curve(self, task: Any, train: Sequence, x_train: np.ndarray, test: Sequence) -> dict:
        x_test = self.encoder.embed([e.text for e in test], BATCH)
        row = {e.id: i for i, e in enumerate(train)}

        def fit_and_score(subset: list) -> Metric:
            head = fit_head(x_train[[row[e.id] for e in subset]], [e.label for e in subset], self.seed)
            preds = [task.labels[int(j)] for j in np.argmax(head_scores(head, x_test, list(task.labels)), axis=1)]
            return metric_for("classify", task.metric, [e.label for e in test], preds, task.labels)

        return learning_curve(fit_and_score, train, task.target.absolute, self.seed, lambda e: e.label)

    def _use_contrastive(self) -> bool:
        if self.contrastive is not None:
            return self.contrastive
        return self.budget_s >= MIN_CONTRASTIVE_BUDGET_S

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        began = time.monotonic()
        texts = [e.text for e in train]
        x_train = self.encoder.embed(texts, BATCH)
        settings: dict[str, Any] = {"head": "logistic-regression", "head_c": HEAD_C, "train_examples": len(train)}
        if self.curve:
            settings["learning_curve"] = self._curve(task, train, x_train, test)
        tuned = None
        if self._use_contrastive():
            pairs = contrastive_pairs(train, self.seed, min(MAX_PAIRS, PAIRS_PER_EXAMPLE * len(train)))
            left = self.budget_s * CONTRASTIVE_SHARE - (time.monotonic() - began)
            tuned = tune_contrastive(self.encoder.model, pairs, self.seed, max(left, 0.0))
            x_train = self.encoder.embed(texts, BATCH)
        settings["contrastive"] = tuned is not None
        if tuned:
            settings.update({f"contrastive_{k}": v for k, v in tuned.items()}, contrastive_loss="cosine-similarity",
                            contrastive_lr=CONTRASTIVE_LR)
        self._head = fit_head(x_train, [e.label for e in train], self.seed)
        self._labels = list(task.labels)
        settings["train_seconds"] = round(time.monotonic() - began, 2)
        settings["budget_s"] = self.budget_s
        digest = hashlib.sha256(json.dumps([self.model_id, self.revision, [e.id for e in train], self.seed,
                                            settings["contrastive"]]).encode()).hexdigest()[:16]
        settings["adapter_path"] = str(self._save(digest, tuned is not None))
        return settings, digest, list(test)

    def _save(self, digest: str, tuned: bool):
        folder = finetune.adapter_dir(f"head-{digest}")
        folder.mkdir(parents=True, exist_ok=True)
        head = {"classes": list(self._head.classes_), "coef": self._head.coef_.tolist(),
                "intercept": self._head.intercept_.tolist(), "encoder": self.model_id, "normalize_embeddings": True}
        if tuned:
            self.encoder.model.save(str(folder / "encoder"))
            head["encoder_path"] = "encoder"
        atomic_write_text(folder / "head.json", json.dumps(head))
        return folder

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        for batch in batches(examples, BATCH):
            began = time.perf_counter()
            scores = head_scores(self._head, self.encoder.embed([e.text for e in batch], BATCH), self._labels)
            each = (time.perf_counter() - began) / len(batch)
            on_batch([
                {"example_id": e.id, "gold": e.label, "prediction": self._labels[int(np.argmax(row))],
                 "scores": [round(float(x), 6) for x in row], "latency_s": each}
                for e, row in zip(batch, scores)
            ])


def make(entry, task, spec, placement, seed) -> EncoderHeadRunner:
    local, device = placement.local, placement.device
    budget = getattr(spec, "budget_s", None) or finetune.default_budget_s(device)
    curve = getattr(spec, "learning_curve", None)
    return EncoderHeadRunner(lambda: model_cache.fresh(lambda: Encoder.load(local, device, spec.trust_remote_code)), entry.id, local.revision,
                             seed, budget, getattr(spec, "contrastive", None), True if curve is None else curve)
