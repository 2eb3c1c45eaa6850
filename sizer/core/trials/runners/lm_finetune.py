"""Fine-tune strategy for causal LMs: train a LoRA adapter on the training split (the zero-shot
prompt + the answer), then score the test split exactly as zero-shot does, with the adapted model.

The scoring runner (label log-likelihood for classify, greedy generation otherwise) is wrapped, not
copied: it builds the zero-shot prompt plan, this runner trains on that same plan, and the wrapped
runner's `predict` scores with the adapter injected into its model. The adapter is saved under
`cache_dir()/adapters/<key>/`; a rerun with the same model, data and settings loads it instead of
training again, so an interrupted trial resumes with the same trial key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from sizer.core.engines import model_cache

from sizer.core.trials import finetune

from sizer.core.trials import prompts
from sizer.core.engines.packing import Request
from sizer.core.trials.learning_curve import learning_curve
from sizer.core.trials.scoring import Metric, score_records
from sizer.core.task.split import holdout_count, stratified_split
from sizer.core.results.store import content_hash

VAL_FRACTION = 0.15


def validation_split(train: Sequence, kind: str, seed: int, fraction: float = VAL_FRACTION) -> tuple[list, list]:
    """(fit, validation): a seeded slice of the training split, stratified by label for classify."""
    stratum = (lambda e: e.label) if kind == "classify" else (lambda e: "")
    return stratified_split(train, holdout_count(len(train), fraction), seed + 1, stratum)


def drop_none(value: Any) -> Any:
    """TOML has no null: leave out keys whose value is None, at any depth."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


class LMFinetuneRunner:
    def __init__(self, inner: Any, model_id: str, revision: str | None, lora: finetune.LoraSettings,
                 seed: int, curve: bool = False) -> None:
        self.inner = inner            # a zero-shot LMClassifyRunner or LMGenerateRunner
        self.model_id = model_id
        self.revision = revision
        self.lora = lora
        self.seed = seed
        self.curve = curve
        self.warnings: list[str] = inner.warnings

    def load(self) -> None:
        self.inner.load()

    # -- training data --------------------------------------------------------------------------

    def _part(self, text: str) -> tuple[int, ...]:
        return tuple(self.inner.lm.encode(self.inner.plan.part_template.replace("{text}", text, 1)))

    def _sample(self, task: Any, example: Any) -> finetune.Sample:
        lm, plan = self.inner.lm, self.inner.plan
        answer = lm.encode(plan.delimiter + prompts.answer_text(task, example))
        eos = lm.tokenizer.eos_token_id
        if task.kind != "classify" and eos is not None:
            answer.append(eos)  # generation must learn to stop
        return finetune.Sample(self._part(example.text), tuple(answer))

    def _val_eval(self, task: Any, val: Sequence) -> Callable[[], tuple[float, float]] | None:
        """(loss per gold-label token, label accuracy) on the validation slice from one pass scored
        like the test split (classify only): the gold label's tokens are the training answer."""
        if task.kind != "classify" or not val:
            return None
        plan = self.inner.plan
        requests = [Request(self._part(e.text), plan.continuations) for e in val]

        gold = [task.labels.index(e.label) for e in val]

        def evaluate() -> tuple[float, float]:
            results = self.inner.lm.score(list(plan.prefix), requests, self.inner.pack_tokens)
            hits = sum(max(range(len(r)), key=lambda j: r[j].logprob) == g for r, g in zip(results, gold))
            loss = -sum(r[g].logprob for r, g in zip(results, gold)) / sum(r[g].tokens for r, g in zip(results, gold))
            return loss, hits / len(val)

        return evaluate

    # -- training -------------------------------------------------------------------------------

    def _train(self, peft_model: Any, task: Any, fit: Sequence, val: Sequence) -> finetune.TrainReport:
        lm = self.inner.lm
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
        return finetune.train_lora(
            peft_model, self.inner.plan.prefix, [self._sample(task, e) for e in fit],
            [self._sample(task, e) for e in val], self.lora, self.seed, pad or 0, self._val_eval(task, val),
        )

    def _score_test(self, task: Any, test: Sequence) -> Metric:
        rows: list[dict] = []
        self.inner.predict(task, test, rows.extend)
        return score_records(task, rows)[0]

    def _train_all(self, peft_model: Any, task: Any, fit: Sequence, val: Sequence, test: Sequence) -> dict:
        if not self.curve:
            return {"training": self._train(peft_model, task, fit, val).as_dict()}
        initial = finetune.adapter_state(peft_model)
        reports: list[finetune.TrainReport] = []

        def fit_and_score(subset: list) -> Metric:
            finetune.load_adapter_state(peft_model, initial)
            reports.append(self._train(peft_model, task, subset, val))
            return self._score_test(task, test)

        stratum = (lambda e: e.label) if task.kind == "classify" else (lambda e: "")
        curve = learning_curve(fit_and_score, fit, task.target.absolute, self.seed, stratum)
        return {"training": reports[-1].as_dict(), "learning_curve": curve}

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        base_settings, digest, kept = self.inner.prepare(task, train, test)
        fit, val = validation_split(train, task.kind, self.seed)
        key = content_hash({
            "model": self.model_id, "revision": self.revision, "prompt": digest, "seed": self.seed,
            "fit": [e.id for e in fit], "val": [e.id for e in val], "lora": dataclasses.asdict(self.lora),
            "curve": self.curve, "test": [e.id for e in kept] if self.curve else None,
        })[:20]
        folder = finetune.adapter_dir(key)
        saved = finetune.saved_report(folder)
        model = self.inner.lm.model
        model_cache.release()  # adapters go into this model in place: no later trial may reuse it
        if saved is None:
            peft_model = finetune.attach_lora(model, self.lora)
            saved = self._train_all(peft_model, task, fit, val, kept)
            finetune.save_adapter(peft_model, folder, saved)
            targets = sorted(peft_model.peft_config["default"].target_modules)
        else:
            peft_model = finetune.load_saved_adapter(model, folder)
            targets = sorted(peft_model.peft_config["default"].target_modules)
        model.eval()
        settings = {**base_settings, **self._settings(saved, targets), "adapter_path": str(folder)}
        return drop_none(settings), content_hash([digest, key])[:16], kept

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        self.inner.predict(task, examples, on_batch)

    def _settings(self, saved: dict, targets: list[str]) -> dict[str, Any]:
        report = saved["training"]
        settings = {
            "adapter": "lora", "lora_rank": self.lora.rank, "lora_alpha": self.lora.alpha,
            "lora_dropout": self.lora.dropout, "lora_targets": targets, "lr": self.lora.lr,
            "batch_size": self.lora.batch_size, "max_epochs": self.lora.max_epochs, "budget_s": self.lora.budget_s,
            "steps": report["steps"], "epochs": report["epochs"], "stopped_because": report["stopped_because"],
            "best_step": report["best_step"],
            "best_val_loss": round(report["best_val_loss"], 5) if report["val_size"] else None,
            "val_accuracy": report["best_val_score"], "train_examples": report["train_size"],
            "val_examples": report["val_size"], "train_seconds": report["train_seconds"],
            "peak_train_bytes": report["peak_train_bytes"],
        }
        if "learning_curve" in saved:
            settings["learning_curve"] = saved["learning_curve"]
        return settings


def make(entry, task, spec, placement, seed) -> LMFinetuneRunner:
    from sizer.core.trials.runners import lm_classify, lm_generate

    local, device = placement.local, placement.device
    scoring = dataclasses.replace(spec, strategy="zero-shot")
    inner = (lm_classify if task.kind == "classify" else lm_generate).make(entry, task, scoring, placement, seed)
    inner.prefix_in_prepare = False  # training changes the weights the prefix would be computed with
    budget = getattr(spec, "budget_s", None) or finetune.default_budget_s(device)
    curve = bool(getattr(spec, "learning_curve", None))
    return LMFinetuneRunner(inner, entry.id, local.revision, finetune.LoraSettings(budget_s=budget), seed, curve)
