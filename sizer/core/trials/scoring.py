"""Metrics with 95% intervals: Wilson for proportions, a seeded percentile bootstrap otherwise.

classify: accuracy, macro-F1, a confusion table and per-label precision/recall/F1.
extract: per-field exact match over JSON objects parsed from generated text.
generate: SQuAD-style exact match and token F1 against one or more references.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sizer.core.errors import SizerError

Z95 = 1.96


@dataclass(frozen=True)
class Metric:
    """A metric's point value and its interval over `n` examples; `method` names the interval."""

    name: str
    value: float
    low: float
    high: float
    n: int
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- intervals -------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n` (Wilson 1927); (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside 0..{n}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(
    per_example: Sequence[Any],
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    batched: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over resamples of `per_example`.

    `per_example` becomes a numpy array (one row per example); `statistic` receives a resampled
    array of the same shape, or, with `batched`, all resamples stacked (shape (n_resamples, n,
    ...)) and returns one value per resample: one numpy call instead of a Python loop of
    `n_resamples`. The same seed gives the same interval. Empty input gives (0, 1).
    """
    data = np.asarray(per_example)
    n = len(data)
    if n == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, size=(n_resamples, n))
    if batched:  # in chunks of about 2**21 resampled values, so a large test set stays small in memory
        per = max(1, 2**21 // max(1, data[:1].size * n))
        stats = np.concatenate([np.asarray(statistic(data[indices[i:i + per]]), dtype=float)
                                for i in range(0, n_resamples, per)])
    else:
        stats = np.array([statistic(data[row]) for row in indices], dtype=float)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _proportion(name: str, hits: Sequence[bool]) -> Metric:
    n = len(hits)
    k = int(sum(bool(h) for h in hits))
    low, high = wilson(k, n)
    return Metric(name, k / n if n else 0.0, low, high, n, "wilson")


def _mean_with_bootstrap(name: str, scores: Sequence[float], details: dict | None = None) -> Metric:
    arr = np.asarray(scores, dtype=float)
    value = float(arr.mean()) if len(arr) else 0.0
    low, high = bootstrap_interval(arr, lambda samples: samples.mean(axis=1), batched=True)
    return Metric(name, value, low, high, len(arr), "bootstrap", details or {})


def _check_lengths(golds: Sequence, preds: Sequence) -> None:
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} golds but {len(preds)} predictions")


# --- classify --------------------------------------------------------------------------------


def accuracy(golds: Sequence[str], preds: Sequence[str]) -> Metric:
    """Share of exact label matches, with a Wilson interval."""
    _check_lengths(golds, preds)
    return _proportion("accuracy", [g == p for g, p in zip(golds, preds)])


def _encode(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """(n, 2) array of label indices; anything outside `labels` becomes index len(labels)."""
    index = {label: i for i, label in enumerate(labels)}
    other = len(labels)
    return np.array([[index.get(g, other), index.get(p, other)] for g, p in zip(golds, preds)],
                    dtype=np.int64).reshape(-1, 2)


def _f1_per_class(samples: np.ndarray, n_labels: int) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1, support and predicted count per label index, per sample: `samples`
    is (R, n, 2) (gold, prediction) index pairs, each result (R, n_labels). 0 where undefined, as
    sklearn's zero_division=0; predictions outside the labels count only as misses of the gold
    label. The counts of all R samples come from one bincount each, offset per sample."""
    gold, pred = samples[..., 0], samples[..., 1]
    rows, width = samples.shape[0], n_labels + 1
    offset = (np.arange(rows) * width)[:, None]

    def counts(index: np.ndarray) -> np.ndarray:
        return np.bincount(index.ravel(), minlength=rows * width).reshape(rows, width)[:, :n_labels]

    tp = counts((gold + offset)[gold == pred])
    support, predicted = counts(gold + offset), counts(pred + offset)
    precision = tp / np.maximum(predicted, 1)  # tp is 0 wherever the denominator is
    recall = tp / np.maximum(support, 1)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return precision, recall, f1, support, predicted


def _macro_f1_rows(samples: np.ndarray, n_labels: int) -> np.ndarray:
    """Per sample of (R, n, 2) pairs, the mean F1 over the labels that occur in it as gold or
    prediction (as sklearn does without `labels=`): a resample that happens to miss a rare label
    is not charged a zero; 0 for a sample with none."""
    _, _, f1, support, predicted = _f1_per_class(samples, n_labels)
    present = (support > 0) | (predicted > 0)
    count = present.sum(axis=1)
    return np.where(count > 0, (f1 * present).sum(axis=1) / np.maximum(count, 1), 0.0)


def macro_f1(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str]) -> Metric:
    """Macro-averaged F1 over the labels present, with a bootstrap interval over examples."""
    _check_lengths(golds, preds)
    pairs = _encode(golds, preds, labels)
    n_labels = len(labels)
    value = float(_macro_f1_rows(pairs[None], n_labels)[0]) if len(pairs) else 0.0
    low, high = bootstrap_interval(pairs, lambda samples: _macro_f1_rows(samples, n_labels), batched=True)
    return Metric("macro_f1", value, low, high, len(pairs), "bootstrap")


def confusion(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """counts[gold][pred] for every label pair; a prediction outside `labels` gets its own column."""
    _check_lengths(golds, preds)
    columns = list(labels) + sorted({p for p in preds if p not in labels}, key=str)
    rows = list(labels) + sorted({g for g in golds if g not in labels}, key=str)
    table = {g: {p: 0 for p in columns} for g in rows}
    for g, p in zip(golds, preds):
        table[g][p] += 1
    return table


def per_label(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per label: precision, recall, f1 (0 where undefined) and support (gold count)."""
    _check_lengths(golds, preds)
    precision, recall, f1, support, _ = (x[0] for x in _f1_per_class(_encode(golds, preds, labels)[None], len(labels)))
    return {
        label: {"precision": float(precision[i]), "recall": float(recall[i]),
                "f1": float(f1[i]), "support": int(support[i])}
        for i, label in enumerate(labels)
    }


# --- extract ---------------------------------------------------------------------------------

_FENCE = re.compile(r"```[A-Za-z0-9_-]*")


def parse_json_object(text: str) -> dict | None:
    """The first JSON object in generated text (code fences and chatter around it allowed)."""
    if not text:
        return None
    cleaned = _FENCE.sub("", text)
    decoder = json.JSONDecoder()
    start = cleaned.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(cleaned, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
        start = cleaned.find("{", start + 1)
    return None


def _normalise_value(value: Any) -> Any:
    """Light normalisation: strings stripped and casefolded, numbers (and numeric strings)
    compared as floats, containers normalised element-wise."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text.casefold()
        return number if math.isfinite(number) else text.casefold()
    if isinstance(value, (list, tuple)):
        return tuple(_normalise_value(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _normalise_value(v)) for k, v in value.items()))
    return value


def _field_matches(gold: Mapping, pred: Mapping | None, name: str) -> bool:
    if pred is None or name not in pred:
        return False
    return _normalise_value(gold.get(name)) == _normalise_value(pred[name])


def field_accuracy(golds: Sequence[Mapping], preds: Sequence[Mapping | None], fields: Sequence[str]) -> Metric:
    """Mean per-field exact match (each example weighs the same); invalid JSON (None) is wrong on
    every field. details: per_field accuracies, invalid_json count, all_fields (records fully right)."""
    _check_lengths(golds, preds)
    if not fields:
        raise ValueError("field_accuracy needs at least one field")
    hits = np.array([[_field_matches(g, p, f) for f in fields] for g, p in zip(golds, preds)],
                    dtype=float).reshape(-1, len(fields))
    n = len(hits)
    details = {
        "per_field": {f: float(hits[:, i].mean()) if n else 0.0 for i, f in enumerate(fields)},
        "invalid_json": sum(p is None for p in preds),
        "all_fields": float(hits.all(axis=1).mean()) if n else 0.0,
    }
    return _mean_with_bootstrap("field_accuracy", hits.mean(axis=1), details)


# --- generate (SQuAD v1.1 evaluation rules) ---------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalise_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (the SQuAD evaluator's rule)."""
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _references(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else list(gold)


def example_token_f1(reference: str, prediction: str) -> float:
    ref, pred = normalise_answer(reference).split(), normalise_answer(prediction).split()
    if not ref or not pred:
        return float(ref == pred)
    common = sum((Counter(ref) & Counter(pred)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(golds: Sequence[str | Sequence[str]], preds: Sequence[str]) -> Metric:
    """Normalised exact match against any of the references, with a Wilson interval."""
    _check_lengths(golds, preds)
    hits = [any(normalise_answer(r) == normalise_answer(p) for r in _references(g))
            for g, p in zip(golds, preds)]
    return _proportion("exact_match", hits)


def contains_answer(reference: str, prediction: str) -> bool:
    """Whether the normalised reference appears, as whole words, in the normalised prediction."""
    ref, pred = normalise_answer(reference), normalise_answer(prediction)
    return bool(ref) and f" {ref} " in f" {pred} "


def contains(golds: Sequence[str | Sequence[str]], preds: Sequence[str]) -> Metric:
    """Share of predictions that contain a reference answer (short factual answers given in a
    sentence), with a Wilson interval."""
    _check_lengths(golds, preds)
    hits = [any(contains_answer(r, p) for r in _references(g)) for g, p in zip(golds, preds)]
    return _proportion("contains", hits)


def token_f1(golds: Sequence[str | Sequence[str]], preds: Sequence[str]) -> Metric:
    """SQuAD token F1 (best reference per example), averaged, with a bootstrap interval."""
    _check_lengths(golds, preds)
    scores = [max((example_token_f1(r, p) for r in _references(g)), default=0.0) for g, p in zip(golds, preds)]
    return _mean_with_bootstrap("token_f1", scores)


# --- dispatch --------------------------------------------------------------------------------

METRICS: dict[str, tuple[str, ...]] = {
    "classify": ("accuracy", "macro_f1"),
    "extract": ("field_accuracy",),
    "generate": ("token_f1", "exact_match", "contains"),
}
DEFAULT_METRIC: dict[str, str] = {kind: names[0] for kind, names in METRICS.items()}


def metric_for(
    kind: str,
    name: str | None,
    golds: Sequence,
    preds: Sequence,
    labels: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
) -> Metric:
    """Compute metric `name` (or the kind's default) for a task of `kind`."""
    if kind not in METRICS:
        raise SizerError(f"task kind {kind!r} is not one of {', '.join(METRICS)}")
    name = name or DEFAULT_METRIC[kind]
    if name not in METRICS[kind]:
        raise SizerError(f"metric {name!r} does not apply to {kind} tasks; use one of {', '.join(METRICS[kind])}")
    if name == "accuracy":
        return accuracy(golds, preds)
    if name == "macro_f1":
        if not labels:
            raise SizerError("metric 'macro_f1' needs the task's labels")
        return macro_f1(golds, preds, labels)
    if name == "field_accuracy":
        if not fields:
            raise SizerError("metric 'field_accuracy' needs the task's fields")
        return field_accuracy(golds, preds, fields)
    if name == "exact_match":
        return exact_match(golds, preds)
    if name == "contains":
        return contains(golds, preds)
    return token_f1(golds, preds)


def prediction(task: Any, record: dict) -> Any:
    """A stored record's prediction as the metric reads it (extract: the parsed JSON object or None)."""
    if task.kind == "extract":
        return parse_json_object(record["prediction"]) if isinstance(record["prediction"], str) else None
    return record["prediction"]


def score_records(task: Any, records: Sequence[dict]) -> tuple[Metric, dict[str, Metric], dict]:
    """The task's metric (and the others of its kind) over stored prediction records."""
    golds = [r["gold"] for r in records]
    preds = [r["prediction"] for r in records]
    if task.kind == "extract":
        preds = [parse_json_object(p) if isinstance(p, str) else None for p in preds]
    main = metric_for(task.kind, task.metric, golds, preds, task.labels, task.fields)
    others: dict[str, Metric] = {}
    table: dict = {}
    if task.kind == "classify":
        if all("prediction_norm" in r for r in records):
            norm = metric_for("classify", "accuracy", golds, [r["prediction_norm"] for r in records])
            others["accuracy_norm"] = Metric("accuracy_norm", norm.value, norm.low, norm.high, norm.n, norm.method)
        if task.metric != "macro_f1":
            others["macro_f1"] = metric_for("classify", "macro_f1", golds, preds, task.labels)
        table = confusion(golds, preds, task.labels)
    elif task.kind == "generate":
        for name in ("token_f1", "exact_match", "contains"):
            if name != task.metric:
                others[name] = metric_for("generate", name, golds, preds)
    return main, others, table


def example_scores(task: Any, records: Mapping[str, dict]) -> dict[str, float]:
    """Example id -> that example's share of the task metric (1/0 for accuracy-like metrics)."""
    out = {}
    for example_id, r in records.items():
        gold, pred = r.get("gold"), r.get("prediction")
        if task.kind == "classify":
            out[example_id] = float(pred == gold)
        elif task.kind == "extract":
            parsed = parse_json_object(pred) if isinstance(pred, str) else None
            fields = task.fields or tuple(gold or ())
            hits = [parsed is not None and normalise_answer(str(parsed.get(f))) == normalise_answer(str(gold.get(f)))
                    for f in fields]
            out[example_id] = float(np.mean(hits)) if hits else 0.0
        elif task.metric == "exact_match":
            out[example_id] = float(normalise_answer(str(pred)) == normalise_answer(str(gold)))
        elif task.metric == "contains":
            out[example_id] = float(contains_answer(str(gold), str(pred)))
        else:
            out[example_id] = example_token_f1(str(gold), str(pred))
    return out
