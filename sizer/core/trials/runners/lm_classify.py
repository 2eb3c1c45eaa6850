"""Classify with a causal LM: the log-likelihood of each label after the prompt."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from sizer.core.trials import prompts
from sizer.core.engines.packing import Request
from sizer.core.engines.protocol import LanguageModel
from sizer.core.trials.strategies import demonstrations


AUTO_SHOTS = 4           # demonstrations per label when the user does not say
PREFIX_BUDGET = 2048     # tokens the shared prefix may take, at most
FIRST_PACK_TOKENS = 1    # the first pack holds one example: the running metric shows at once


class LMClassifyRunner:
    def __init__(self, loader: Callable[[], LanguageModel], instruct: bool, strategy: str,
                 shots: int | None, seed: int, pack_tokens: int = 2048) -> None:
        self._loader = loader
        self.instruct = instruct
        self.strategy = strategy
        self.shots = shots
        self.seed = seed
        self.pack_tokens = pack_tokens
        self.lm: LanguageModel | None = None
        self.plan: prompts.PromptPlan | None = None
        self.warnings: list[str] = []
        # The shared prefix's KV cache is computed in prepare(), before scoring starts, unless the
        # weights change between the two (fine-tuning turns this off).
        self.prefix_in_prepare = True
        self._prefix_cache = None

    def load(self) -> None:
        self.lm = self._loader()

    def _apply_chat(self):
        tokenizer = self.lm.tokenizer
        if not (self.instruct and self.lm.has_chat_template()):
            return None
        return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _plan(self, task: Any, demos: Sequence, test: Sequence) -> prompts.PromptPlan:
        apply_chat = self._apply_chat()
        encode_prefix = (lambda t: self.lm.tokenizer(t, add_special_tokens=apply_chat is None)["input_ids"])
        return prompts.plan(task, demos, test, self.lm.encode, encode_prefix, apply_chat)

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        per_label = 0 if self.strategy == "zero-shot" else (self.shots if self.shots is not None else AUTO_SHOTS)
        plan = self._plan(task, [], test)
        self._parts = {e.id: part for e, part in zip(test, plan.parts)}
        kept = self._drop_too_long(test, plan)  # against the bare prompt: no example shrinks the demos
        longest = max((len(self._parts[e.id]) for e in kept), default=0) + max(len(c) for c in plan.continuations)
        budget = min(PREFIX_BUDGET, self.lm.max_context - longest)
        while True:
            demos = demonstrations(train, task.labels, per_label, self.seed) if per_label else []
            plan = self._plan(task, demos, kept)
            if len(plan.prefix) <= budget or per_label == 0 or self.shots is not None:
                break
            per_label -= 1
        if self.strategy == "few-shot" and per_label == 0:
            self.warnings.append("no demonstration fits the model's context: few-shot ran as zero-shot")
        self.plan = plan
        if self.prefix_in_prepare:
            self._prefix_cache = self.lm.prefix_cache(list(plan.prefix))
        kept = self._drop_too_long(kept, plan)  # only when --shots forced a prefix over the budget
        settings = {"shots_per_label": per_label, "demonstrations": len(demos),
                    "prefix_tokens": len(plan.prefix), "scoring": "loglik", "chat_template": self._apply_chat() is not None}
        return settings, plan.digest(), kept

    def _drop_too_long(self, test: Sequence, plan: prompts.PromptPlan) -> list:
        longest_label = max(len(c) for c in plan.continuations)
        limit = self.lm.max_context
        kept, dropped = [], []
        for example in test:
            fits = len(plan.prefix) + len(self._parts[example.id]) + longest_label <= limit
            (kept if fits else dropped).append(example)
        if dropped:
            sources = ", ".join(e.source for e in dropped[:3])
            self.warnings.append(f"dropped {len(dropped)} example(s) longer than the model's {limit}-token context ({sources})")
        return kept

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        plan = self.plan
        # Packs are bounded in tokens, so memory peaks with the longest example: it goes into the
        # first full pack so trouble shows at once, after the shortest, scored alone so the running
        # metric shows at once; the rest keep the split's seeded order, so a running metric (and
        # stopping early on it) is judged on an unbiased sample rather than on the longest texts.
        shortest = min(examples, key=lambda e: len(self._parts[e.id]))
        longest = max(examples, key=lambda e: len(self._parts[e.id]))
        first = [shortest] + ([longest] if longest is not shortest else [])
        order = first + [e for e in examples if all(e is not f for f in first)]
        requests = [Request(tuple(self._parts[e.id]), plan.continuations) for e in order]
        norms = [len((plan.delimiter + label).encode("utf-8")) for label in task.labels]
        started = [time.perf_counter()]

        def on_pack(indices: list[int], scores: list) -> None:
            now = time.perf_counter()
            each = (now - started[0]) / len(indices)
            started[0] = now
            rows = []
            for index, per_label in zip(indices, scores):
                example = order[index]
                lps = [s.logprob for s in per_label]
                best = max(range(len(lps)), key=lps.__getitem__)
                best_norm = max(range(len(lps)), key=lambda j: lps[j] / norms[j])
                row = {
                    "example_id": example.id, "gold": example.label, "prediction": task.labels[best],
                    "prediction_norm": task.labels[best_norm], "scores": lps, "latency_s": each,
                    "tokens": requests[index].size,
                }
                if per_label and per_label[0].bounded is not None:
                    row["bounded_tokens"] = sum(s.bounded for s in per_label)
                rows.append(row)
            on_batch(rows)

        self.lm.score(list(plan.prefix), requests, self.pack_tokens, on_pack, cache=self._prefix_cache,
                      first_pack_tokens=FIRST_PACK_TOKENS)


def make(entry, task, spec, placement, seed) -> LMClassifyRunner:
    from sizer.core.trials.runners import causal_loader

    return LMClassifyRunner(causal_loader(placement, spec, entry), entry.instruct, spec.strategy, spec.shots, seed)
