"""Fine-tune strategy: LoRA mechanics on a small random-initialised model (answer-only loss, frozen
base weights, budget, early stopping, saved and reloadable adapters), the encoder head and its
learning curve on the real MiniLM, and the learning-curve reading."""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch

from conftest import TINY
from sizer.core.trials import finetune
from sizer.core.engines.causal_lm import CausalLM
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.trials.learning_curve import estimate, learning_curve, nested_subsets
from sizer.core.paths import shipped_examples
from sizer.core.trials.placement import torch_dtype
from sizer.core.catalog.resolve import locate
from sizer.core.engines.protocol import Placement
from sizer.core.trials.runners import make_runner
from sizer.core.trials.runners.lm_finetune import validation_split
from sizer.core.trials.scoring import metric_for
from sizer.core.task.split import split
from sizer.core.task.spec import load_task
from sizer.core.trials.trial import run_trial
from sizer.core.trials.types import TrialSpec
from tiny_models import MINILM, banking_rows, write_task

BANKING = str(shipped_examples() / "banking.toml")


class FakeClock:
    """A clock that moves `tick` seconds each time it is read: budgets without real waiting."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def _tiny_runner(task, spec=None):
    spec = spec or TrialSpec(model=TINY, strategy="fine-tune", limit=8, budget_s=600)
    entry = load_catalog().get(TINY)
    runner = make_runner(entry, task, spec, Placement("cpu", "fp32", locate(entry)), task.seed)
    runner.load()
    return runner


def _samples(runner, task, examples):
    return [runner._sample(task, e) for e in examples]


# ---- loss mask --------------------------------------------------------------------------------


def test_targets_cover_only_the_answer_tokens():
    samples = [finetune.Sample((5, 6, 7), (8, 9)), finetune.Sample((1,), (2, 3, 4))]
    ids, targets = finetune.batch_tensors(samples, pad_id=0)
    assert ids.tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 0]]
    # position t predicts token t + 1: only the positions before each answer token carry a target
    assert targets.tolist() == [[-100, -100, 8, 9, -100], [2, 3, 4, -100, -100]]


def test_runner_answer_is_the_label_after_the_zero_shot_prompt(trial_env):
    task = load_task(BANKING)
    runner = _tiny_runner(task)
    train, test = split(task)
    runner.inner.prepare(task, train, test[:8])
    example = train[0]
    sample = runner._sample(task, example)
    tokenizer = runner.inner.lm.tokenizer
    assert tokenizer.decode(list(sample.answer)) == example.label
    assert example.text in tokenizer.decode(list(sample.prompt))
    assert example.label not in tokenizer.decode(list(sample.prompt))
    # prefix + prompt + answer is what the zero-shot scorer reads for the gold label
    label = task.labels.index(example.label)
    assert sample.answer == runner.inner.plan.continuations[label]
    # the validation pass through the test scorer and the training loss agree on the same examples
    val = train[:5]
    loss, accuracy = runner._val_eval(task, val)()
    plain = finetune.validation_loss(runner.inner.lm.model, runner.inner.plan.prefix, _samples(runner, task, val),
                                     0, 2, torch.device("cpu"))
    assert loss == pytest.approx(plain, rel=1e-4)
    assert 0.0 <= accuracy <= 1.0


# ---- training ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_lm(trial_env):
    entry = load_catalog().get(TINY)
    return CausalLM.load(locate(entry), "cpu", torch_dtype("fp32"))


def _toy_samples(n: int, offset: int = 0) -> list[finetune.Sample]:
    return [finetune.Sample((10 + (i + offset) % 7, 20, 30 + i % 3), (40 + (i + offset) % 5, 41)) for i in range(n)]


def test_training_changes_only_the_adapter(tiny_lm):
    before = {name: p.detach().clone() for name, p in tiny_lm.model.named_parameters()}
    peft_model = finetune.attach_lora(tiny_lm.model, finetune.LoraSettings())
    settings = finetune.LoraSettings(max_epochs=2, lr=1e-2)
    report = finetune.train_lora(peft_model, (1, 2, 3), _toy_samples(16), [], settings, seed=0, pad_id=0)
    assert report.steps == 4 and report.stopped_because == "done"
    changed_lora, checked_base = 0, 0
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad
            changed_lora += int(bool(param.detach().abs().sum() > 0) and "lora_B" in name)
            continue
        assert not param.requires_grad, name
        original = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(param, before[original]), name
        checked_base += 1
    assert checked_base == len(before)
    assert changed_lora > 0  # lora_B starts at zero: non-zero means training moved it


def test_budget_stops_training_and_keeps_the_best_adapter(tiny_lm):
    peft_model = finetune.attach_lora(tiny_lm.model, finetune.LoraSettings())
    settings = finetune.LoraSettings(max_epochs=50, budget_s=10.0)
    report = finetune.train_lora(peft_model, (1, 2), _toy_samples(24), _toy_samples(4, 3), settings, seed=0,
                                 pad_id=0, clock=FakeClock(1.0))
    assert report.stopped_because == "budget"
    assert 0 < report.steps < 50 * 3
    assert report.best_step <= report.steps
    assert report.train_size == 24 and report.val_size == 4


def test_early_stopping_restores_the_best_adapter(tiny_lm):
    peft_model = finetune.attach_lora(tiny_lm.model, finetune.LoraSettings())
    initial = finetune.adapter_state(peft_model)
    scores = itertools.count(start=0, step=-1)  # each evaluation scores worse than the one before
    settings = finetune.LoraSettings(max_epochs=20, patience=2, lr=1e-2, batch_size=4, evals_per_epoch=1)
    report = finetune.train_lora(peft_model, (1, 2), _toy_samples(8), _toy_samples(4, 3), settings, seed=0,
                                 pad_id=0, val_eval=lambda: (1.0, float(next(scores))))
    assert report.stopped_because == "early-stop"
    assert report.steps == 2 * 2          # two epochs of two batches, one evaluation each
    assert report.best_step == 0          # the evaluation before training was the best
    assert len(report.history) == 3
    restored = finetune.adapter_state(peft_model)
    assert all(torch.equal(restored[k], initial[k]) for k in initial)


def test_validation_loss_is_per_answer_token(tiny_lm):
    model = tiny_lm.model
    samples = _toy_samples(3)
    loss = finetune.validation_loss(model, (1, 2), samples, 0, 2, torch.device("cpu"))
    with torch.no_grad():
        total = 0.0
        for s in samples:
            ids = torch.tensor([[1, 2, *s.prompt, *s.answer]])
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            start = 2 + len(s.prompt)
            total -= sum(float(logprobs[p - 1, ids[0, p]]) for p in range(start, start + len(s.answer)))
    assert loss == pytest.approx(total / sum(len(s.answer) for s in samples), rel=1e-4)


# ---- the strategy end to end on the tiny model ----------------------------------------------------


def _small_task(tmp_path):
    rows = banking_rows(("card_arrival", "change_pin", "exchange_rate"), 10)
    labels = {"card_arrival": "a new card has not arrived", "change_pin": "change the PIN",
              "exchange_rate": "questions about exchange rates"}
    return load_task(write_task(tmp_path / "small.toml", rows, name="small", kind="classify", labels=labels))


def test_fine_tune_trial_saves_a_reloadable_adapter_and_resumes(trial_env, tmp_path):
    task = _small_task(tmp_path)
    spec = TrialSpec(model=TINY, strategy="fine-tune", limit=8, budget_s=600)
    first = run_trial(task, spec)
    settings = first.settings
    folder = Path(settings["adapter_path"])
    assert folder.parent == Path(trial_env["SIZER_CACHE_DIR"]) / "adapters"
    assert (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()
    assert settings["lora_rank"] == 8 and settings["lora_alpha"] == 16
    assert settings["lora_targets"] == ["q_proj", "v_proj"]
    assert settings["stopped_because"] in ("done", "early-stop")
    train, _ = split(task)
    assert settings["train_examples"] + settings["val_examples"] == len(train)
    fit, val = validation_split(train, task.kind, task.seed)
    assert settings["val_examples"] == len(val) and {e.label for e in val} == set(task.labels)  # stratified
    assert not {e.id for e in fit} & {e.id for e in val}
    assert first.status == "ok" and first.metric.n == 8
    assert tomllib.loads(tomli_w.dumps(settings)) == settings  # no None, fit for the TOML report

    # reload: the saved adapter on a fresh base model gives the trained weights back
    fresh = CausalLM.load(locate(load_catalog().get(TINY)), "cpu", torch_dtype("fp32"))
    reloaded = finetune.load_saved_adapter(fresh.model, folder)
    from safetensors.torch import load_file
    saved = load_file(folder / "adapter_model.safetensors")
    state = finetune.adapter_state(reloaded)
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)

    # a rerun loads the adapter instead of training: same settings, same trial key, nothing rescored
    again = run_trial(task, spec)
    assert again.key == first.key and again.settings == settings
    assert again.speed["cached"] == 8 and again.speed["scored"] == 0


def test_fine_tune_on_a_generate_task_learns_to_stop(trial_env, tmp_path):
    rows = [{"text": f"Say the number {n}.", "reference": str(n)} for n in range(12)]
    task = load_task(write_task(tmp_path / "numbers.toml", rows, name="numbers", kind="generate"))
    runner = _tiny_runner(task, TrialSpec(model=TINY, strategy="fine-tune", budget_s=600))
    train, test = split(task)
    runner.inner.prepare(task, train, test)
    sample = runner._sample(task, train[0])
    assert sample.answer[-1] == runner.inner.lm.tokenizer.eos_token_id
    assert runner.inner.lm.tokenizer.decode(list(sample.answer[:-1])) == train[0].reference


# ---- learning curve --------------------------------------------------------------------------------


def _metric_at(n: int, value: float):
    hits = round(value * 200)
    return metric_for("classify", "accuracy", ["a"] * 200, ["a"] * hits + ["b"] * (200 - hits), ["a", "b"])


def test_learning_curve_points_grow_and_estimate_more_examples():
    train = [type("E", (), {"id": f"e{i}", "label": "ab"[i % 2]})() for i in range(200)]
    curve = learning_curve(lambda subset: _metric_at(len(subset), 1 - 3 / math.sqrt(len(subset))), train,
                           target=0.9, seed=0, stratum=lambda e: e.label)
    ns = [p["n"] for p in curve["points"]]
    assert ns == sorted(ns) and len(set(ns)) == 3 and ns[-1] == 200
    for p in curve["points"]:
        assert p["low"] <= p["metric"] <= p["high"]
    est = curve["estimate"]
    # error = 3 / sqrt(n): 0.1 needs n = 900, so about 700 more
    assert 500 <= est["more_examples"] <= 900
    assert "more examples" in est["words"] and "0.90" in est["words"]


def test_learning_curve_says_flat_and_already_there():
    flat = [{"n": n, "metric": 0.6} for n in (10, 20, 40)]
    assert estimate(flat, 0.9)["flat"] and "flat" in estimate(flat, 0.9)["words"]
    there = [{"n": n, "metric": v} for n, v in ((10, 0.8), (20, 0.9), (40, 0.95))]
    assert estimate(there, 0.9)["more_examples"] == 0 and "already" in estimate(there, 0.9)["words"]
    far = [{"n": n, "metric": v} for n, v in ((100, 0.50), (200, 0.52), (400, 0.54))]
    assert "not the lever" in estimate(far, 0.95)["words"]
    no_target = [{"n": n, "metric": v} for n, v in ((10, 0.5), (20, 0.6), (40, 0.7))]
    assert "each doubling" in estimate(no_target, None)["words"]


def test_nested_subsets_are_nested_and_stratified():
    items = [type("E", (), {"id": f"x{i}", "label": "abc"[i % 3]})() for i in range(60)]
    small, half, full = nested_subsets(items, (0.25, 0.5, 1.0), seed=3, stratum=lambda e: e.label)
    assert {e.id for e in small} <= {e.id for e in half} <= {e.id for e in full}
    assert len(small) == 15 and len(half) == 30 and len(full) == 60
    assert {e.label for e in small} == {"a", "b", "c"}


# ---- encoders --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_encoder_head_beats_chance_widely_with_a_learning_curve(trial_env):
    task = load_task(BANKING)
    result = run_trial(task, TrialSpec(model=MINILM, strategy="fine-tune", contrastive=False))
    assert result.metric.value >= 0.7  # chance is 1/8
    assert result.settings["head"] == "logistic-regression" and result.settings["contrastive"] is False
    curve = result.settings["learning_curve"]
    ns = [p["n"] for p in curve["points"]]
    assert ns == sorted(ns) and len(set(ns)) == 3 and ns[-1] == result.split["train"]
    assert curve["estimate"]["words"]
    head = json.loads((Path(result.settings["adapter_path"]) / "head.json").read_text())
    assert sorted(head["classes"]) == sorted(task.labels)
    assert tomllib.loads(tomli_w.dumps(result.settings)) == result.settings


@pytest.mark.slow
def test_encoder_contrastive_tuning_stops_on_its_budget(trial_env):
    from sizer.core.engines.encoder import Encoder
    from sizer.core.trials.runners.encoder_head import contrastive_pairs, tune_contrastive

    task = load_task(BANKING)
    train, _ = split(task)
    pairs = contrastive_pairs(train, seed=0, count=160)
    assert {p[2] for p in pairs} == {0.0, 1.0}
    by_text = {e.text: e.label for e in train}
    assert all((by_text[a] == by_text[b]) == (same == 1.0) for a, b, same in pairs)
    encoder = Encoder.load(locate(load_catalog().get(MINILM)), "cpu")
    before = [p.detach().clone() for p in encoder.model.parameters()]
    done = tune_contrastive(encoder.model, pairs, seed=0, budget_s=3.0, clock=FakeClock(1.0))
    assert done["pairs"] == 2 * 16 < done["planned_pairs"]  # two batches fit in the budget
    assert any(not torch.equal(b, p) for b, p in zip(before, encoder.model.parameters()))
