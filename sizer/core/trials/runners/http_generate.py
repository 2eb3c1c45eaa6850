"""Extract and generate tasks through an OpenAI-compatible server: greedy (temperature 0)
completions of the prompt the local runner builds, or, with `api = "chat"` or when no local
tokenizer exists, chat completions of the same messages under the server's own template."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from sizer.core.engines.http import choice
from sizer.core.engines.openai_lm import RemoteLM
from sizer.core.trials.prompts import chat_messages
from sizer.core.trials.runners.lm_generate import AUTO_SHOTS, LMGenerateRunner
from sizer.core.results.store import content_hash
from sizer.core.trials.strategies import demonstrations

CHAT_MAX_TOKENS = 512    # without a tokenizer the answer length cannot be measured in tokens


class HTTPGenerateRunner(LMGenerateRunner):
    def __init__(self, loader: Callable[[], RemoteLM], candidate: Any, strategy: str, shots: int | None, seed: int) -> None:
        super().__init__(loader, candidate.instruct, strategy, shots, seed)
        self.candidate = candidate
        self.use_chat = candidate.endpoint.api == "chat"

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        if self.lm.tokenizer is None:
            self.use_chat = True
            kept, settings = list(test), {"max_new_tokens": CHAT_MAX_TOKENS, "decoding": "greedy"}
            self.max_new_tokens = CHAT_MAX_TOKENS
            self.warnings.append(f"{self.candidate.id}: no local tokenizer for these weights: the server's chat template "
                                 "shaped the prompt and the context length was not checked here")
        else:
            settings, _, kept = super().prepare(task, train, test)
        k = 0 if self.strategy == "zero-shot" else (self.shots if self.shots is not None else AUTO_SHOTS)
        demos = demonstrations(train, (), k, self.seed) if k else []
        self._messages = chat_messages(task, demos)
        settings.update(shots=len(demos), **self.candidate.endpoint.describe())
        settings["api"] = "chat" if self.use_chat else "completions"
        shape = self._messages if self.use_chat else [self.plan.prefix_text, self.plan.part_template]
        return settings, content_hash(shape)[:16], kept

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        def run(example: Any) -> dict:
            began = time.perf_counter()
            if self.use_chat:
                response = self.lm.client.chat(self._messages + [{"role": "user", "content": example.text}],
                                               max_tokens=self.max_new_tokens, temperature=0)
                text = (choice(response).get("message") or {}).get("content") or ""
            else:
                prompt = self.plan.prefix_text + self.plan.part_template.replace("{text}", example.text, 1)
                response = self.lm.client.completion(prompt, max_tokens=self.max_new_tokens, temperature=0)
                text = choice(response).get("text") or ""
            generated = (response.get("usage") or {}).get("completion_tokens", 0)
            return {"example_id": example.id, "gold": example.reference, "prediction": text,
                    "latency_s": time.perf_counter() - began, "tokens": generated}

        self.lm.client.map(run, examples, lambda _example, row: on_batch([row]))


def make(entry, task, spec, placement, seed) -> HTTPGenerateRunner:
    from sizer.core.engines.openai_engine import OpenAIEngine

    return HTTPGenerateRunner(lambda: OpenAIEngine.for_trial(entry, placement, spec), entry, spec.strategy, spec.shots, seed)
