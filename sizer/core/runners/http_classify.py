"""Classify through an OpenAI-compatible server.

The prompt is the text the local runner builds (same plan, same chat template, applied here).
Each label is scored token by token from next-token `top_logprobs` of one-token completions:
servers' prompt log-probabilities (`echo`) cannot be trusted unchecked (llama-cpp-python's are
wrong), next-token ones match transformers. Labels sharing a start share the requests for it.
A label token outside the top N gets the lowest top-N log-probability, an upper bound, and the
record counts it. Servers without log-probabilities classify by greedy generation matched to
the closest label.
"""

from __future__ import annotations

import difflib
import time
from typing import Any, Callable, Sequence

from sizer.core.backends.http import Rejected, RemoteLM, choice
from sizer.core.errors import SizerError
from sizer.core.store import content_hash
from sizer.core.runners.lm_classify import AUTO_SHOTS, LMClassifyRunner
from sizer.core.strategies import demonstrations

TOP_LOGPROBS = (20, 5)   # asked for in this order: vLLM allows 20 by default, OpenAI 5
LOGPROBS = "next-token-logprobs"
GENERATION = "generation"
CHAT_GENERATION = "chat-generation"


def label_prefixes(continuations: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Every distinct proper prefix of the label continuations: one request each."""
    seen: dict[tuple[int, ...], None] = {}
    for tokens in continuations:
        for i in range(len(tokens)):
            seen.setdefault(tuple(tokens[:i]), None)
    return list(seen)


def closest_label(text: str, labels: Sequence[str]) -> str:
    """The label a generated answer names: exact, else the longest label it starts with, else
    the most similar."""
    answer = text.strip().strip("\"'`.").strip()
    first = (answer.splitlines() or [""])[0].strip().lower()
    lowered = {label.lower(): label for label in labels}
    if first in lowered:
        return lowered[first]
    starts = [label for key, label in lowered.items() if first.startswith(key)]
    if starts:
        return max(starts, key=len)
    return max(labels, key=lambda label: difflib.SequenceMatcher(None, first, label.lower()).ratio())


def top_logprobs(response: dict[str, Any]) -> dict[str, float] | None:
    """The next token's top log-probabilities (token text -> logprob), None when absent."""
    logprobs = choice(response).get("logprobs") or {}
    tops = logprobs.get("top_logprobs") or []
    return tops[0] if tops and isinstance(tops[0], dict) and tops[0] else None


class HTTPClassifyRunner(LMClassifyRunner):
    def __init__(self, candidate: Any, strategy: str, shots: int | None, seed: int) -> None:
        super().__init__(lambda: RemoteLM.load(candidate), candidate.instruct, strategy, shots, seed)
        self.candidate = candidate
        self.method = ""
        self.top_n = 0
        self._token_mismatch = 0

    # --- preparation -----------------------------------------------------------------------

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        if self.lm.tokenizer is None:
            return self._prepare_chat(task, train, test)
        settings, digest, kept = super().prepare(task, train, test)
        self.method, self.top_n = self._probe()
        self._label_texts = {tok: self.lm.decode([tok]) for c in self.plan.continuations for tok in c}
        settings.update(scoring=self.method, prompt="text", **self.candidate.endpoint.describe())
        if self.method == LOGPROBS:
            settings["top_logprobs"] = self.top_n
        else:
            self.warnings.append(f"{self.candidate.id}: the server gives no log-probabilities; labels were matched "
                                 "to greedy answers (accuracy_norm equals accuracy)")
        return settings, digest, kept

    def _probe(self) -> tuple[str, int]:
        """Which scoring the server supports: a one-token completion asking for top logprobs."""
        prompt = self.plan.prefix_text or " "
        for n in TOP_LOGPROBS:
            try:
                body = {"model": self.candidate.endpoint.served_model, "prompt": prompt, "max_tokens": 1,
                        "temperature": 0, "logprobs": n}
                tops = top_logprobs(self.lm.client.probe("/completions", body))
            except Rejected:
                continue
            if tops:
                return LOGPROBS, n
        return GENERATION, 0

    def _prepare_chat(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        """No local tokenizer: the server applies its own chat template (/v1/chat/completions)."""
        per_label = 0 if self.strategy == "zero-shot" else (self.shots if self.shots is not None else AUTO_SHOTS)
        demos = demonstrations(train, task.labels, per_label, self.seed) if per_label else []
        self._messages = chat_messages(task, demos)
        self.method = CHAT_GENERATION
        self.warnings.append(f"{self.candidate.id}: no local tokenizer for these weights, so the server's chat template "
                             "shaped the prompt and labels were matched to greedy answers")
        settings = {"shots_per_label": per_label, "demonstrations": len(demos), "scoring": self.method,
                    "chat_template": "server", **self.candidate.endpoint.describe()}
        return settings, content_hash(self._messages)[:16], list(test)

    # --- prediction ------------------------------------------------------------------------

    def predict(self, task: Any, examples: Sequence, on_batch: Callable[[list[dict]], None]) -> None:
        score = {LOGPROBS: self._score_logprobs, GENERATION: self._score_generation,
                 CHAT_GENERATION: self._score_chat}[self.method]
        started = {}

        def run(example: Any) -> dict:
            started[example.id] = time.perf_counter()
            row = score(task, example)
            return {"example_id": example.id, "gold": example.label,
                    "latency_s": time.perf_counter() - started[example.id], **row}

        self.lm.client.map(run, examples, lambda _example, row: on_batch([row]))
        if self._token_mismatch:
            self.warnings.append(f"the server counted different prompt tokens than the local tokenizer in "
                                 f"{self._token_mismatch} request(s): its tokenization differs, scores may too")

    def _prompt(self, example: Any) -> str:
        return self.plan.prefix_text + self.plan.part_template.replace("{text}", example.text, 1)

    def _score_logprobs(self, task: Any, example: Any) -> dict:
        context = self._prompt(example)
        expected_base = len(self.plan.prefix) + len(self._parts[example.id])
        tops: dict[tuple[int, ...], dict[str, float]] = {}
        for prefix in label_prefixes(self.plan.continuations):
            response = self.lm.client.completion(context + self.lm.decode(prefix), max_tokens=1,
                                                 temperature=0, logprobs=self.top_n)
            self._check_tokens(response, expected_base + len(prefix))
            found = top_logprobs(response)
            if found is None:
                raise SizerError(f"{self.candidate.id}: the server stopped returning log-probabilities mid-trial")
            tops[prefix] = found
        scores, bounded = [], 0
        for tokens in self.plan.continuations:
            total = 0.0
            for i, token in enumerate(tokens):
                top = tops[tuple(tokens[:i])]
                text = self._label_texts[token]
                if text in top:
                    total += top[text]
                else:
                    total += min(top.values())
                    bounded += 1
            scores.append(total)
        norms = [len((self.plan.delimiter + label).encode("utf-8")) for label in task.labels]
        best = max(range(len(scores)), key=scores.__getitem__)
        best_norm = max(range(len(scores)), key=lambda j: scores[j] / norms[j])
        return {"prediction": task.labels[best], "prediction_norm": task.labels[best_norm], "scores": scores,
                "bounded_tokens": bounded, "requests": len(tops),
                "tokens": len(self._parts[example.id]) + sum(len(c) for c in self.plan.continuations)}

    def _check_tokens(self, response: dict, expected: int) -> None:
        counted = (response.get("usage") or {}).get("prompt_tokens")
        # A BOS the server adds on its own is one token more and changes nothing that matters here.
        if counted is not None and counted not in (expected, expected + 1):
            self._token_mismatch += 1

    def _score_generation(self, task: Any, example: Any) -> dict:
        longest = max(len(c) for c in self.plan.continuations)
        response = self.lm.client.completion(self._prompt(example), max_tokens=longest + 4, temperature=0, stop=["\n"])
        text = choice(response).get("text") or ""
        label = closest_label(text, task.labels)
        return {"prediction": label, "prediction_norm": label, "generated": text,
                "tokens": (response.get("usage") or {}).get("total_tokens", 0)}

    def _score_chat(self, task: Any, example: Any) -> dict:
        messages = self._messages + [{"role": "user", "content": example.text}]
        response = self.lm.client.chat(messages, max_tokens=32, temperature=0)
        text = (choice(response).get("message") or {}).get("content") or ""
        label = closest_label(text, task.labels)
        return {"prediction": label, "prediction_norm": label, "generated": text,
                "tokens": (response.get("usage") or {}).get("total_tokens", 0)}


def chat_messages(task: Any, demos: Sequence) -> list[dict[str, str]]:
    """The messages `prompts.render` gives a chat template, up to the example's turn."""
    from sizer.core import prompts

    messages = [{"role": "system", "content": prompts.system_text(task)}]
    for demo in demos:
        messages.append({"role": "user", "content": demo.text})
        messages.append({"role": "assistant", "content": prompts.answer_text(task, demo)})
    return messages


def make(entry, task, spec, local, device, dtype, seed) -> HTTPClassifyRunner:
    return HTTPClassifyRunner(entry, spec.strategy, spec.shots, seed)
