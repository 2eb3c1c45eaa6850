"""Metrics and intervals against hand-computed values."""

import math

import numpy as np
import pytest

from sizer.core.errors import SizerError
from sizer.core.trials.scoring import (
    DEFAULT_METRIC,
    accuracy,
    bootstrap_interval,
    confusion,
    exact_match,
    field_accuracy,
    macro_f1,
    metric_for,
    normalise_answer,
    parse_json_object,
    per_label,
    token_f1,
    wilson,
)


# --- Wilson ----------------------------------------------------------------------------------


def test_wilson_32_of_40_by_hand():
    # p = 0.8, z = 1.96, z^2 = 3.8416, denom = 1 + z^2/n = 1.09604
    # centre = (0.8 + 3.8416/80) / 1.09604 = 0.848020 / 1.09604 = 0.773713
    # half   = 1.96 * sqrt(0.8*0.2/40 + 3.8416/6400) / 1.09604
    #        = 1.96 * sqrt(0.004 + 0.00060025) / 1.09604 = 1.96 * 0.0678251 / 1.09604 = 0.121289
    # -> (0.652424, 0.895001)
    low, high = wilson(32, 40)
    assert low == pytest.approx(0.652424, abs=1e-6)
    assert high == pytest.approx(0.895001, abs=1e-6)


def test_wilson_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(32, 40), (0, 10), (10, 10), (1, 3), (137, 200)]:
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        z = float(stats.norm.ppf(0.975))  # scipy uses the exact quantile, not 1.96
        low, high = wilson(k, n, z=z)
        assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(0, 10)
    assert low == 0.0
    assert high == pytest.approx(3.8416 / (10 + 3.8416))  # z^2 / (n + z^2) when k = 0
    low, high = wilson(10, 10)
    assert high == 1.0 and low == pytest.approx(10 / (10 + 3.8416))
    with pytest.raises(ValueError):
        wilson(11, 10)


# --- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_with_seed():
    data = np.random.default_rng(1).random(50)
    a = bootstrap_interval(data, np.mean, seed=7)
    b = bootstrap_interval(data, np.mean, seed=7)
    c = bootstrap_interval(data, np.mean, seed=8)
    assert a == b
    assert a != c


def test_bootstrap_interval_brackets_mean_and_matches_normal_width():
    data = np.random.default_rng(2).normal(size=400)
    low, high = bootstrap_interval(data, np.mean, n_resamples=2000)
    assert low < data.mean() < high
    # percentile bootstrap of a mean ~ mean +- 1.96 * s / sqrt(n)
    expected = 2 * 1.96 * data.std(ddof=1) / math.sqrt(len(data))
    assert (high - low) == pytest.approx(expected, rel=0.15)


def test_bootstrap_coverage_is_near_nominal():
    # 200 datasets of 60 Bernoulli(0.7) draws: the 95% interval should hold 0.7 in about 95% of them.
    rng = np.random.default_rng(3)
    hits = 0
    for seed in range(200):
        sample = (rng.random(60) < 0.7).astype(float)
        low, high = bootstrap_interval(sample, np.mean, n_resamples=400, seed=seed)
        hits += low <= 0.7 <= high
    assert 0.88 <= hits / 200 <= 0.99


def test_a_batched_statistic_gives_the_interval_the_per_resample_loop_gives():
    """The same resamples either way: macro-F1 and the mean computed for all resamples in one
    numpy call (in chunks) equal the same statistic computed resample by resample."""
    from sizer.core.trials.scoring import _encode, _macro_f1_rows

    rng = np.random.default_rng(4)
    labels = ["a", "b", "c", "d"]
    golds = list(rng.choice(labels, 300))
    preds = [g if rng.random() < 0.6 else str(rng.choice(labels + ["junk"])) for g in golds]
    pairs = _encode(golds, preds, labels)
    looped = bootstrap_interval(pairs, lambda one: float(_macro_f1_rows(one[None], 4)[0]))
    batched = bootstrap_interval(pairs, lambda many: _macro_f1_rows(many, 4), batched=True)
    assert batched == pytest.approx(looped, abs=1e-12)
    values = rng.random(5000)  # 1000 x 5000 values: resampled in chunks of 419 resamples
    assert bootstrap_interval(values, lambda many: many.mean(axis=1), batched=True) == pytest.approx(
        bootstrap_interval(values, np.mean), abs=1e-12)


def test_bootstrap_of_constant_and_empty():
    assert bootstrap_interval([1.0] * 10, np.mean) == (1.0, 1.0)
    assert bootstrap_interval([], np.mean) == (0.0, 1.0)


# --- classify --------------------------------------------------------------------------------

LABELS = ["card_arrival", "declined_card_payment", "lost_or_stolen_card"]
GOLDS = ["card_arrival"] * 4 + ["declined_card_payment"] * 3 + ["lost_or_stolen_card"] * 3
PREDS = (["card_arrival"] * 3 + ["lost_or_stolen_card"]
         + ["declined_card_payment"] * 2 + ["card_arrival"]
         + ["lost_or_stolen_card"] * 3)


def test_accuracy_with_wilson():
    m = accuracy(GOLDS, PREDS)
    assert m.value == pytest.approx(0.8)
    assert (m.low, m.high) == wilson(8, 10)
    assert m.n == 10 and m.method == "wilson" and m.name == "accuracy"


def test_confusion_counts():
    table = confusion(GOLDS, PREDS, LABELS)
    assert table == {
        "card_arrival": {"card_arrival": 3, "declined_card_payment": 0, "lost_or_stolen_card": 1},
        "declined_card_payment": {"card_arrival": 1, "declined_card_payment": 2, "lost_or_stolen_card": 0},
        "lost_or_stolen_card": {"card_arrival": 0, "declined_card_payment": 0, "lost_or_stolen_card": 3},
    }
    assert sum(sum(row.values()) for row in table.values()) == len(GOLDS)


def test_confusion_keeps_predictions_outside_the_labels():
    table = confusion(["a", "b"], ["a", "maybe"], ["a", "b"])
    assert table["b"] == {"a": 0, "b": 0, "maybe": 1}


def test_per_label_and_macro_f1_by_hand():
    # card_arrival: tp 3, predicted 4, support 4 -> P 0.75 R 0.75 F1 0.75
    # declined:     tp 2, predicted 2, support 3 -> P 1    R 2/3  F1 0.8
    # lost:         tp 3, predicted 4, support 3 -> P 0.75 R 1    F1 6/7
    stats = per_label(GOLDS, PREDS, LABELS)
    assert stats["card_arrival"] == pytest.approx({"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4})
    assert stats["declined_card_payment"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert stats["lost_or_stolen_card"] == pytest.approx({"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3})
    m = macro_f1(GOLDS, PREDS, LABELS)
    assert m.value == pytest.approx((0.75 + 0.8 + 6 / 7) / 3)
    assert m.method == "bootstrap" and m.low <= m.value <= m.high
    assert macro_f1(GOLDS, PREDS, LABELS) == m  # same seed, same interval


def test_f1_edge_cases():
    # a label never predicted: precision undefined -> 0, F1 0 (no NaN)
    stats = per_label(["a", "b"], ["a", "a"], ["a", "b"])
    assert stats["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert stats["a"]["f1"] == pytest.approx(2 / 3)
    # a label absent from golds and predictions does not drag the macro average down
    assert macro_f1(["a", "b"], ["a", "b"], ["a", "b", "c"]).value == 1.0
    # a label predicted but never gold counts with F1 0
    assert macro_f1(["a", "a"], ["a", "c"], ["a", "c"]).value == pytest.approx((2 / 3 + 0) / 2)
    # predictions outside the labels are misses, not a new class in the average
    assert macro_f1(["a", "b"], ["a", "junk"], ["a", "b"]).value == pytest.approx((1 + 0) / 2)
    empty = macro_f1([], [], ["a"])
    assert (empty.n, empty.low, empty.high) == (0, 0.0, 1.0)
    with pytest.raises(ValueError):
        accuracy(["a"], [])


def test_macro_f1_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    labels = list("abcde")
    golds = list(rng.choice(labels, 120))
    preds = [g if rng.random() < 0.6 else str(rng.choice(labels)) for g in golds]
    ref = metrics.f1_score(golds, preds, average="macro", zero_division=0)
    assert macro_f1(golds, preds, labels).value == pytest.approx(ref)


# --- extract ---------------------------------------------------------------------------------


def test_parse_json_object_tolerates_fences_and_chatter():
    assert parse_json_object('{"a": 1}') == {"a": 1}
    assert parse_json_object('Sure!\n```json\n{"amount": 12.5, "nested": {"x": [1, 2]}}\n```\nDone.') == {
        "amount": 12.5, "nested": {"x": [1, 2]}}
    assert parse_json_object('note {broken} then {"ok": true}') == {"ok": True}
    assert parse_json_object("[1, 2]") is None
    assert parse_json_object('{"a": 1') is None
    assert parse_json_object("") is None


def test_field_accuracy_normalises_and_counts_invalid_json():
    fields = ["merchant", "amount", "currency"]
    golds = [
        {"merchant": "Tesco", "amount": 12.5, "currency": "GBP"},
        {"merchant": "Aldi", "amount": 3, "currency": "EUR"},
        {"merchant": "Lidl", "amount": 7, "currency": "EUR"},
        {"merchant": "Spar", "amount": 1, "currency": "EUR"},
    ]
    preds = [
        {"merchant": "  tesco ", "amount": "12.50", "currency": "gbp"},  # 3/3 after normalisation
        {"merchant": "Aldi", "amount": 3.0, "currency": "USD"},            # 2/3
        {"merchant": "Lidl"},                                              # 1/3, missing fields wrong
        None,                                                              # invalid JSON: 0/3
    ]
    m = field_accuracy(golds, preds, fields)
    assert m.value == pytest.approx((1 + 2 / 3 + 1 / 3 + 0) / 4)
    assert m.details["invalid_json"] == 1
    assert m.details["per_field"] == pytest.approx({"merchant": 0.75, "amount": 0.5, "currency": 0.25})
    assert m.details["all_fields"] == 0.25
    assert m.method == "bootstrap" and m.low <= m.value <= m.high and m.n == 4


# --- generate --------------------------------------------------------------------------------


def test_squad_normalisation():
    assert normalise_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalise_answer("an apple, a pear") == "apple pear"


def test_exact_match_and_token_f1_by_hand():
    golds = ["The Eiffel Tower", ["Paris", "City of Paris"], "blue"]
    preds = ["eiffel tower.", "the city of paris", "dark red"]
    em = exact_match(golds, preds)
    assert em.value == pytest.approx(2 / 3) and (em.low, em.high) == wilson(2, 3)
    f1 = token_f1(golds, preds)
    # 1.0, best reference "City of Paris" -> 1.0, "blue" vs "dark red" -> 0.0
    assert f1.value == pytest.approx(2 / 3)
    partial = token_f1(["the cat sat"], ["a cat sat down"])  # P 2/3, R 1 -> 0.8
    assert partial.value == pytest.approx(0.8)
    assert token_f1([""], [""]).value == 1.0
    assert token_f1(["x"], [""]).value == 0.0


# --- dispatch --------------------------------------------------------------------------------


def test_metric_for_dispatches_and_rejects_mismatches():
    assert metric_for("classify", None, GOLDS, PREDS, labels=LABELS) == accuracy(GOLDS, PREDS)
    assert metric_for("classify", "macro_f1", GOLDS, PREDS, labels=LABELS).name == "macro_f1"
    assert metric_for("generate", "exact_match", ["a"], ["a"]).value == 1.0
    assert DEFAULT_METRIC == {"classify": "accuracy", "extract": "field_accuracy", "generate": "token_f1"}
    assert metric_for("extract", None, [{"a": 1}], [{"a": 1}], fields=["a"]).value == 1.0
    with pytest.raises(SizerError, match="does not apply to classify"):
        metric_for("classify", "token_f1", GOLDS, PREDS)
    with pytest.raises(SizerError, match="needs the task's fields"):
        metric_for("extract", None, [{"a": 1}], [{"a": 1}])
    with pytest.raises(SizerError, match="task kind"):
        metric_for("rank", None, [], [])


def test_contains_matches_whole_normalised_answers_only():
    from sizer.core.trials.scoring import contains

    m = contains(["38", "Mira Halvorsen", "12"],
                 ["The daily meal allowance is 38 euros.", "It is mira halvorsen", "It takes 120 days"])
    assert (m.value, m.n, m.name) == (pytest.approx(2 / 3), 3, "contains")
    assert m.low < m.value < m.high
