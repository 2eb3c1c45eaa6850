"""Classify through an OpenAI-compatible server.

The prompt is the text the local runner builds (same plan, same chat template, applied here).
Each label is scored token by token from next-token `top_logprobs` of one-token completions:
servers' prompt log-probabilities (`echo`) cannot be trusted unchecked (llama-cpp-python's are
wrong), next-token ones match transformers. Labels sharing a start share the requests for it.
A weak model often ranks a label's token below any top N a server returns; such a token is
forced with `logit_bias` and the log-probability of the forced token read back, where a startup
check shows the server reports it unbiased (llama.cpp, vLLM). Elsewhere it gets the lowest top-N
log-probability, an upper bound, and the record counts it. Servers without log-probabilities
classify by greedy generation matched to the closest label.

Servers with vLLM's `prompt_logprobs` extension score labels exactly instead: one completions
request per example carries every label's full token sequence as a prompt of token ids, and the
log-probability of each label token is read from that prompt's `prompt_logprobs` (one entry per
prompt token, the first null; each a map token id -> {logprob, rank, decoded_token}). It is used
only after a startup check: the prompt log-probability of a token must equal the next-token
log-probability the same server reports for it (the check llama-cpp-python's `echo` fails).
"""

from __future__ import annotations

import difflib
import time
from typing import Any, Callable, Sequence

from sizer.core.engines.http import Rejected, RemoteLM, choice
from sizer.core.errors import SizerError
from sizer.core.results.store import content_hash
from sizer.core.trials.runners.lm_classify import AUTO_SHOTS, LMClassifyRunner
from sizer.core.trials.strategies import demonstrations

# Top-N sizes probed largest first: llama.cpp takes any, vLLM 20 unless --max-logprobs says
# more, OpenAI 5. Requests ask for FIRST_N and re-ask at the largest accepted N only when a
# label token is missing: a weak model ranks label tokens low (SmolLM2-135M: past 20 often).
TOP_LOGPROBS = (1000, 100, 20, 5)
FIRST_N = 20
LOGPROBS = "next-token-logprobs"
PROMPT_LOGPROBS = "prompt-logprobs"
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


def prompt_logprobs_body(served_model: str, prompts: Sequence[Sequence[int]]) -> dict[str, Any]:
    """A completions request scoring every prompt's tokens (vLLM's `prompt_logprobs`): token-id
    prompts, so the server scores exactly the tokens the local tokenizer made; one generated token
    (the least vLLM accepts), greedy."""
    return {"model": served_model, "prompt": [list(p) for p in prompts], "max_tokens": 1, "temperature": 0,
            "prompt_logprobs": 1}


def prompt_token_logprobs(choice_: dict[str, Any], ids: Sequence[int], start: int) -> list[float] | None:
    """The log-probabilities of `ids[start:]` from one choice's `prompt_logprobs`; None when the
    answer lacks them (a server without the extension ignores the field)."""
    entries = choice_.get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) != len(ids) or start < 1:
        return None
    out = []
    for position in range(start, len(ids)):
        entry = entries[position]
        value = entry.get(str(ids[position])) if isinstance(entry, dict) else None
        if value is None:
            return None
        out.append(float(value["logprob"] if isinstance(value, dict) else value))
    return out


def by_index(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A batched completion's choices in prompt order."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices:
        choice(response)  # raises the one-line error
    return sorted(choices, key=lambda c: c.get("index", 0))


class HTTPClassifyRunner(LMClassifyRunner):
    def __init__(self, candidate: Any, strategy: str, shots: int | None, seed: int) -> None:
        super().__init__(lambda: RemoteLM.load(candidate), candidate.instruct, strategy, shots, seed)
        self.candidate = candidate
        self.prefix_in_prepare = False  # the server keeps (or recomputes) the shared prefix itself
        self.method = ""
        self.top_n = 0          # the largest top-N the server accepts
        self.forced = False     # whether logit_bias-forced tokens report unbiased logprobs
        self._token_mismatch = 0

    # --- preparation -----------------------------------------------------------------------

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        if self.lm.tokenizer is None:
            return self._prepare_chat(task, train, test)
        settings, digest, kept = super().prepare(task, train, test)
        if self._prompt_logprobs_agree():
            self.method = PROMPT_LOGPROBS
            settings.update(scoring=self.method, prompt="token ids", **self.candidate.endpoint.describe())
            return settings, digest, kept
        self.method, self.top_n = self._probe()
        self._label_texts = {tok: self.lm.decode([tok]) for c in self.plan.continuations for tok in c}
        settings.update(scoring=self.method, prompt="text", **self.candidate.endpoint.describe())
        if self.method == LOGPROBS:
            settings["top_logprobs"] = [min(FIRST_N, self.top_n), self.top_n]
            self.forced = self._forced_agrees()
            settings["tokens_outside_top"] = "forced with logit_bias" if self.forced else "bounded by the lowest top-N"
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

    def _prompt_logprobs_agree(self) -> bool:
        """Capability check for `prompt_logprobs`: the server's next-token log-probability of its
        greedy token after the prefix must equal that token's prompt log-probability once appended."""
        ids = list(self.plan.prefix) or self.lm.encode(" ")
        served = self.candidate.endpoint.served_model
        try:
            body = {"model": served, "prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 1}
            tops = top_logprobs(self.lm.client.probe("/completions", body)) or {}
            text, value = max(tops.items(), key=lambda kv: kv[1]) if tops else (None, None)
            token = self.lm.encode(text) if text else []
            if len(token) != 1 or self.lm.decode(token) != text:
                return False
            answer = self.lm.client.probe("/completions", prompt_logprobs_body(served, [ids + token]))
            got = prompt_token_logprobs(by_index(answer)[0], ids + token, len(ids))
        except (Rejected, SizerError):
            return False
        return got is not None and abs(got[0] - value) < 0.02

    def _forced_logprob(self, prompt: str, token: int) -> float | None:
        """The log-probability of `token` after `prompt`, by forcing it with logit_bias; None
        when the server generated something else."""
        response = self.lm.client.completion(prompt, max_tokens=1, temperature=0, logprobs=1,
                                             logit_bias={str(token): 100})
        logprobs = choice(response).get("logprobs") or {}
        tokens, values = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
        if not tokens or not values or values[0] is None or tokens[0] != self.lm.decode([token]):
            return None
        return float(values[0])

    def _forced_agrees(self) -> bool:
        """Startup check: a token forced by logit_bias must report the same log-probability the
        unbiased top list gives it (a server reporting the biased distribution fails this)."""
        prompt = self.plan.prefix_text or " "
        try:
            tops = top_logprobs(self.lm.client.completion(prompt, max_tokens=1, temperature=0, logprobs=FIRST_N)) or {}
            for text, value in sorted(tops.items(), key=lambda kv: -kv[1])[1:8]:
                ids = self.lm.encode(text)
                if len(ids) == 1 and self.lm.decode(ids) == text:
                    forced = self._forced_logprob(prompt, ids[0])
                    return forced is not None and abs(forced - value) < 0.02
        except Rejected:
            return False
        return False

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
        score = {LOGPROBS: self._score_logprobs, PROMPT_LOGPROBS: self._score_prompt_logprobs,
                 GENERATION: self._score_generation,
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
        requests = 0
        for prefix in label_prefixes(self.plan.continuations):
            wanted = {self._label_texts[c[len(prefix)]] for c in self.plan.continuations
                      if len(c) > len(prefix) and tuple(c[:len(prefix)]) == prefix}
            for n in sorted({min(FIRST_N, self.top_n), self.top_n}) if not self.forced else [min(FIRST_N, self.top_n)]:
                response = self.lm.client.completion(context + self.lm.decode(prefix), max_tokens=1,
                                                     temperature=0, logprobs=n)
                requests += 1
                self._check_tokens(response, expected_base + len(prefix))
                found = top_logprobs(response)
                if found is None:
                    raise SizerError(f"{self.candidate.id}: the server stopped returning log-probabilities mid-trial")
                tops[prefix] = found
                if wanted <= found.keys():
                    break
            for text in wanted - tops[prefix].keys() if self.forced else ():
                token = next(c[len(prefix)] for c in self.plan.continuations
                             if tuple(c[:len(prefix)]) == prefix and self._label_texts[c[len(prefix)]] == text)
                value = self._forced_logprob(context + self.lm.decode(prefix), token)
                requests += 1
                if value is not None:
                    tops[prefix] = {**tops[prefix], text: value}
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
                "bounded_tokens": bounded, "requests": requests,
                "tokens": len(self._parts[example.id]) + sum(len(c) for c in self.plan.continuations)}

    def _score_prompt_logprobs(self, task: Any, example: Any) -> dict:
        base = list(self.plan.prefix) + list(self._parts[example.id])
        prompts = [base + list(c) for c in self.plan.continuations]
        response = self.lm.client.post("/completions", prompt_logprobs_body(self.candidate.endpoint.served_model, prompts))
        choices = by_index(response)
        scores = []
        for prompt, choice_ in zip(prompts, choices):
            values = prompt_token_logprobs(choice_, prompt, len(base))
            if values is None:
                raise SizerError(f"{self.candidate.id}: the server stopped returning prompt log-probabilities mid-trial")
            scores.append(sum(values))
        norms = [len((self.plan.delimiter + label).encode("utf-8")) for label in task.labels]
        best = max(range(len(scores)), key=scores.__getitem__)
        best_norm = max(range(len(scores)), key=lambda j: scores[j] / norms[j])
        return {"prediction": task.labels[best], "prediction_norm": task.labels[best_norm], "scores": scores,
                "requests": 1, "tokens": len(self._parts[example.id]) + sum(len(c) for c in self.plan.continuations)}

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
    from sizer.core.trials import prompts

    messages = [{"role": "system", "content": prompts.system_text(task)}]
    for demo in demos:
        messages.append({"role": "user", "content": demo.text})
        messages.append({"role": "assistant", "content": prompts.answer_text(task, demo)})
    return messages


def make(entry, task, spec, placement, seed) -> HTTPClassifyRunner:
    return HTTPClassifyRunner(entry, spec.strategy, spec.shots, seed)
