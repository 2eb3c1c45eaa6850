"""Extract and generate tasks with a causal LM: greedy generation after the prompt."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from sizer.core.engines.protocol import LanguageModel
from sizer.core.trials import prompts
from sizer.core.trials.strategies import demonstrations


AUTO_SHOTS = 3


class LMGenerateRunner:
    def __init__(self, loader: Callable[[], LanguageModel], instruct: bool, strategy: str,
                 shots: int | None, seed: int) -> None:
        self._loader = loader
        self.instruct = instruct
        self.strategy = strategy
        self.shots = shots
        self.seed = seed
        self.warnings: list[str] = []

    def load(self) -> None:
        self.lm = self._loader()

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        k = 0 if self.strategy == "zero-shot" else (self.shots if self.shots is not None else AUTO_SHOTS)
        demos = demonstrations(train, (), k, self.seed) if k else []
        tokenizer = self.lm.tokenizer
        chat = self.instruct and self.lm.has_chat_template()
        apply_chat = (lambda m: tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)) if chat else None
        encode_prefix = lambda t: tokenizer(t, add_special_tokens=not chat)["input_ids"]
        self.plan = prompts.plan(task, demos, test, self.lm.encode, encode_prefix, apply_chat)
        self._parts = {e.id: p for e, p in zip(test, self.plan.parts)}
        answers = [len(self.lm.encode(prompts.answer_text(task, e))) for e in train] or [64]
        self.max_new_tokens = min(512, int(max(answers) * 1.5) + 16)
        settings = {"shots": len(demos), "prefix_tokens": len(self.plan.prefix),
                    "max_new_tokens": self.max_new_tokens, "decoding": "greedy"}
        limit = self.lm.max_context - self.max_new_tokens
        kept = [e for e in test if len(self.plan.prefix) + len(self._parts[e.id]) <= limit]
        if len(kept) < len(test):
            self.warnings.append(f"dropped {len(test) - len(kept)} example(s) longer than the model's context")
        return settings, self.plan.digest(), kept

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        prefix = list(self.plan.prefix)
        shared = self.lm.prefix_cache(prefix) if prefix else None  # run once, copied into each generation
        for example in examples:
            began = time.perf_counter()
            text, generated = self.lm.generate(prefix + list(self._parts[example.id]), self.max_new_tokens, shared)
            on_batch([{"example_id": example.id, "gold": example.reference, "prediction": text,
                       "latency_s": time.perf_counter() - began, "tokens": generated}])


def make(entry, task, spec, placement, seed) -> LMGenerateRunner:
    from sizer.core.trials.runners import causal_loader

    return LMGenerateRunner(causal_loader(placement, spec, entry), entry.instruct, spec.strategy, spec.shots, seed)
