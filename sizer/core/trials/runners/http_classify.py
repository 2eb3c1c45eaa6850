"""Classify on a server (the OpenAI-compatible engine): the local classify runner over the served
model (`sizer.core.engines.openai_lm.RemoteLM`, which chooses how the server can score labels),
plus the one case the shared runner cannot drive: no local tokenizer of the served weights, where
the server's chat template shapes the prompt and greedy answers are matched to labels."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from sizer.core.engines.http import choice
from sizer.core.engines.openai_lm import RemoteLM, closest_label
from sizer.core.results.store import content_hash
from sizer.core.trials.prompts import chat_messages
from sizer.core.trials.runners.lm_classify import AUTO_SHOTS, LMClassifyRunner
from sizer.core.trials.strategies import demonstrations

CHAT_GENERATION = "chat-generation"


class HTTPClassifyRunner(LMClassifyRunner):
    def __init__(self, loader: Callable[[], RemoteLM], candidate: Any, strategy: str, shots: int | None, seed: int) -> None:
        super().__init__(loader, candidate.instruct, strategy, shots, seed)
        self.candidate = candidate
        self.chat_only = False

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        if self.lm.tokenizer is None:
            return self._prepare_chat(task, train, test)
        settings, digest, kept = super().prepare(task, train, test)  # the prefix: RemoteLM picks its scoring
        return {**settings, **self.lm.settings}, digest, kept

    def _prepare_chat(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        """No local tokenizer: the server applies its own chat template (/v1/chat/completions)."""
        per_label = 0 if self.strategy == "zero-shot" else (self.shots if self.shots is not None else AUTO_SHOTS)
        demos = demonstrations(train, task.labels, per_label, self.seed) if per_label else []
        self._messages = chat_messages(task, demos)
        self.chat_only = True
        self.warnings.append(f"{self.candidate.id}: no local tokenizer for these weights, so the server's chat template "
                             "shaped the prompt and labels were matched to greedy answers")
        settings = {"shots_per_label": per_label, "demonstrations": len(demos), "scoring": CHAT_GENERATION,
                    "chat_template": "server", **self.candidate.endpoint.describe()}
        return settings, content_hash(self._messages)[:16], list(test)

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        if not self.chat_only:
            try:
                super().predict(task, examples, on_batch)
            finally:
                self.warnings += self.lm.warnings
            return

        def run(example: Any) -> dict:
            began = time.perf_counter()
            response = self.lm.client.chat(self._messages + [{"role": "user", "content": example.text}],
                                           max_tokens=32, temperature=0)
            text = (choice(response).get("message") or {}).get("content") or ""
            label = closest_label(text, task.labels)
            return {"example_id": example.id, "gold": example.label, "prediction": label, "prediction_norm": label,
                    "generated": text, "latency_s": time.perf_counter() - began,
                    "tokens": (response.get("usage") or {}).get("total_tokens", 0)}

        self.lm.client.map(run, examples, lambda _example, row: on_batch([row]))


def make(entry, task, spec, placement, seed) -> HTTPClassifyRunner:
    from sizer.core.engines.openai_engine import OpenAIEngine

    return HTTPClassifyRunner(lambda: OpenAIEngine.for_trial(entry, placement, spec), entry, spec.strategy, spec.shots, seed)
