"""A model an OpenAI-compatible server serves, as a `LanguageModel` (sizer.core.engines.protocol):
the runners score and generate with it as with a local model, over HTTP.

`score` gives each label continuation's log-likelihood in one of three ways, chosen once per trial
by `prefix_cache` (the first call with the shared prefix), most exact first:

- **prompt-logprobs** (vLLM's `prompt_logprobs` extension): one completions request per example
  carries every label's full token sequence as a prompt of token ids; each label token's
  log-probability is read from that prompt's `prompt_logprobs` (one entry per prompt token, the
  first null; each a map token id -> {logprob, rank, decoded_token}). Used only after a check: the
  prompt log-probability of a token must equal the next-token log-probability the same server
  reports for it (llama-cpp-python's `echo` prompt logprobs fail this).
- **next-token-logprobs**: each label is scored token by token from the `top_logprobs` of
  one-token completions of the prompt text; labels sharing a start share the requests for it. A
  weak model often ranks a label's token below any top N a server returns: such a token is forced
  with `logit_bias` and the log-probability of the forced token read back, where a check shows the
  server reports it unbiased (llama.cpp, vLLM); elsewhere it gets the lowest top-N
  log-probability, an upper bound, counted in `Score.bounded`.
- **generation**, for servers without log-probabilities: the greedy answer is matched to the
  closest label, which gets log-probability 0 and the others -inf.

Examples are scored concurrently (the client's `concurrency` requests in flight), each reported
through `on_pack` as it finishes. Text prompts are the token ids decoded by the local tokenizer of
the same weights (lossless for byte-level BPE); a server that counts other prompt tokens than
those is named in `warnings`.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

from sizer.core.engines.http import (DEFAULT_CONCURRENCY, OpenAIClient, Rejected, choice, local_tokenizer,
                                     served_model_info, server_slots)
from sizer.core.engines.packing import Request
from sizer.core.engines.protocol import OnPack, Score
from sizer.core.errors import SizerError

DEFAULT_CONTEXT = 2048
# Top-N sizes probed largest first: llama.cpp takes any, vLLM 20 unless --max-logprobs says
# more, OpenAI 5. Requests ask for FIRST_N and re-ask at the largest accepted N only when a
# label token is missing: a weak model ranks label tokens low (SmolLM2-135M: past 20 often).
TOP_LOGPROBS = (1000, 100, 20, 5)
FIRST_N = 20
LOGPROBS = "next-token-logprobs"
PROMPT_LOGPROBS = "prompt-logprobs"
GENERATION = "generation"


class RemoteLM:
    """A served model: its client, the local tokenizer of the same weights (None when there are no
    local files: the runners then use the server's chat template) and its context length."""

    def __init__(self, client: OpenAIClient, tokenizer: Any, max_context: int, server_info: dict[str, Any]) -> None:
        self.client = client
        self.tokenizer = tokenizer
        self._context = max_context
        self.server_info = server_info
        self.method = ""
        self.top_n = 0           # the largest top-N the server accepts
        self.forced = False      # whether logit_bias-forced tokens report unbiased logprobs
        self.settings: dict[str, Any] = {}   # how labels are scored, for the trial's settings
        self.warnings: list[str] = []
        self._token_mismatch = 0

    @classmethod
    def load(cls, candidate: Any, **client_options: Any) -> "RemoteLM":
        """Connect, check that the server serves the model, and load the local tokenizer."""
        client = OpenAIClient(candidate.endpoint, **client_options)
        info = served_model_info(client)
        if candidate.endpoint.concurrency is None:
            client.concurrency = server_slots(client, info) or DEFAULT_CONCURRENCY
        tokenizer = local_tokenizer(candidate.entry)
        contexts = [c for c in (info.get("max_model_len"), getattr(candidate.entry, "max_context", None)) if c]
        return cls(client, tokenizer, int(min(contexts)) if contexts else DEFAULT_CONTEXT, info)

    @property
    def max_context(self) -> int:
        """Tokens one sequence may hold: the server's max_model_len or the model's, the smaller."""
        return self._context

    @property
    def served_model(self) -> str:
        return self.client.endpoint.served_model

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def text(self, ids: Sequence[int]) -> str:
        """`ids` as a text prompt: decoded, less a leading BOS where the tokenizer adds one on its
        own (the server adds its own too). A BOS-valued token a chat template wrote (SmolLM2's
        `<|im_start|>` is its BOS) stays: it is text."""
        ids = list(ids)
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if ids and bos is not None and ids[0] == bos and self._adds_bos():
            ids = ids[1:]
        return self.decode(ids)

    def _adds_bos(self) -> bool:
        plain = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        return bool(plain) and plain[0] == self.tokenizer.bos_token_id

    # --- how labels are scored ---------------------------------------------------------------

    def prefix_cache(self, prefix: list[int]) -> tuple[int, ...]:
        """The server keeps (or recomputes) the prefix itself; the first call chooses how labels
        are scored, with probes that start with `prefix`."""
        if not self.method:
            self._choose_method(list(prefix))
        return tuple(prefix)

    def _choose_method(self, prefix: list[int]) -> None:
        describe = self.client.endpoint.describe()
        if self._prompt_logprobs_agree(prefix):
            self.method = PROMPT_LOGPROBS
            self.settings = {"scoring": self.method, "prompt": "token ids", **describe}
            return
        text = self.text(prefix) or " "
        self.method, self.top_n = self._probe(text)
        self.settings = {"scoring": self.method, "prompt": "text", **describe}
        if self.method == LOGPROBS:
            self.forced = self._forced_agrees(text)
            self.settings["top_logprobs"] = [min(FIRST_N, self.top_n), self.top_n]
            self.settings["tokens_outside_top"] = "forced with logit_bias" if self.forced else "bounded by the lowest top-N"
        else:
            self.warnings.append(f"{self.served_model}: the server gives no log-probabilities; labels were matched "
                                 "to greedy answers (accuracy_norm equals accuracy)")

    def _probe(self, prompt: str) -> tuple[str, int]:
        """Which scoring the server supports: a one-token completion asking for top logprobs."""
        for n in TOP_LOGPROBS:
            try:
                body = {"model": self.served_model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": n}
                tops = top_logprobs(self.client.probe("/completions", body))
            except Rejected:
                continue
            if tops:
                return LOGPROBS, n
        return GENERATION, 0

    def _prompt_logprobs_agree(self, prefix: list[int]) -> bool:
        """Capability check for `prompt_logprobs`: the server's next-token log-probability of its
        greedy token after the prefix must equal that token's prompt log-probability once appended."""
        ids = prefix or self.encode(" ")
        try:
            body = {"model": self.served_model, "prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 1}
            tops = top_logprobs(self.client.probe("/completions", body)) or {}
            text, value = max(tops.items(), key=lambda kv: kv[1]) if tops else (None, None)
            token = self.encode(text) if text else []
            if len(token) != 1 or self.decode(token) != text:
                return False
            answer = self.client.probe("/completions", prompt_logprobs_body(self.served_model, [ids + token]))
            got = prompt_token_logprobs(by_index(answer)[0], ids + token, len(ids))
        except (Rejected, SizerError):
            return False
        return got is not None and abs(got[0] - value) < 0.02

    def _forced_logprob(self, prompt: str, token: int) -> float | None:
        """The log-probability of `token` after `prompt`, by forcing it with logit_bias; None
        when the server generated something else."""
        response = self.client.completion(prompt, max_tokens=1, temperature=0, logprobs=1, logit_bias={str(token): 100})
        logprobs = choice(response).get("logprobs") or {}
        tokens, values = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
        if not tokens or not values or values[0] is None or tokens[0] != self.decode([token]):
            return None
        return float(values[0])

    def _forced_agrees(self, prompt: str) -> bool:
        """A token forced by logit_bias must report the same log-probability the unbiased top list
        gives it (a server reporting the biased distribution fails this)."""
        try:
            tops = top_logprobs(self.client.completion(prompt, max_tokens=1, temperature=0, logprobs=FIRST_N)) or {}
            for text, value in sorted(tops.items(), key=lambda kv: -kv[1])[1:8]:
                ids = self.encode(text)
                if len(ids) == 1 and self.decode(ids) == text:
                    forced = self._forced_logprob(prompt, ids[0])
                    return forced is not None and abs(forced - value) < 0.02
        except Rejected:
            return False
        return False

    # --- the protocol's calls ----------------------------------------------------------------

    def score(self, prefix: list[int], requests: list[Request], max_pack_tokens: int = 2048,
              on_pack: OnPack | None = None, cache: Any = None,
              first_pack_tokens: int | None = None) -> list[list[Score]]:
        """One list of `Score` per request (one per continuation), in the requests' order; each
        request is reported through `on_pack([index], [scores])` as its answer arrives. The
        pack sizes do not apply: a request is one example."""
        self.prefix_cache(prefix)
        way = {LOGPROBS: self._by_next_token, PROMPT_LOGPROBS: self._by_prompt_logprobs,
               GENERATION: self._by_generation}[self.method]
        prefix, prefix_text = list(prefix), self.text(prefix)
        results: list[list[Score]] = [[] for _ in requests]

        def finished(index: int, scores: list[Score]) -> None:
            results[index] = scores
            if on_pack:
                on_pack([index], [scores])

        try:
            self.client.map(lambda i: way(prefix, prefix_text, requests[i]), range(len(requests)), finished)
        finally:
            if self._token_mismatch:
                self.warnings.append(f"the server counted different prompt tokens than the local tokenizer in "
                                     f"{self._token_mismatch} request(s): its tokenization differs, scores may too")
                self._token_mismatch = 0
        return results

    def _by_prompt_logprobs(self, prefix: list[int], prefix_text: str, request: Request) -> list[Score]:
        base = prefix + list(request.prompt)
        prompts = [base + list(c) for c in request.continuations]
        response = self.client.post("/completions", prompt_logprobs_body(self.served_model, prompts))
        scores = []
        for prompt, choice_ in zip(prompts, by_index(response)):
            values = prompt_token_logprobs(choice_, prompt, len(base))
            if values is None:
                raise SizerError(f"{self.served_model}: the server stopped returning prompt log-probabilities mid-trial")
            scores.append(Score(sum(values), len(values), False, bounded=0))
        return scores

    def _by_next_token(self, prefix: list[int], prefix_text: str, request: Request) -> list[Score]:
        context = prefix_text + self.decode(request.prompt)
        expected_base = len(prefix) + len(request.prompt)
        conts = [tuple(c) for c in request.continuations]
        texts = {tok: self.decode([tok]) for c in conts for tok in c}
        tops: dict[tuple[int, ...], dict[str, float]] = {}
        for start in label_prefixes(conts):
            wanted = {texts[c[len(start)]] for c in conts if len(c) > len(start) and c[:len(start)] == start}
            tops[start] = self._top(context + self.decode(start), expected_base + len(start), wanted)
            for text in wanted - tops[start].keys() if self.forced else ():
                token = next(c[len(start)] for c in conts if c[:len(start)] == start and texts[c[len(start)]] == text)
                value = self._forced_logprob(context + self.decode(start), token)
                if value is not None:
                    tops[start] = {**tops[start], text: value}
        scores = []
        for tokens in conts:
            total, bounded, greedy = 0.0, 0, True
            for i, token in enumerate(tokens):
                top = tops[tokens[:i]]
                text = texts[token]
                if text in top:
                    total += top[text]
                else:
                    total += min(top.values())
                    bounded += 1
                greedy = greedy and text == max(top, key=top.__getitem__)
            scores.append(Score(total, len(tokens), greedy, bounded=bounded))
        return scores

    def _top(self, prompt: str, expected_tokens: int, wanted: set[str]) -> dict[str, float]:
        """The next token's top log-probabilities after `prompt`: FIRST_N of them, or the largest
        N the server takes when a wanted token is not among the first."""
        found: dict[str, float] = {}
        sizes = [min(FIRST_N, self.top_n)] if self.forced else sorted({min(FIRST_N, self.top_n), self.top_n})
        for n in sizes:
            response = self.client.completion(prompt, max_tokens=1, temperature=0, logprobs=n)
            self._check_tokens(response, expected_tokens)
            found = top_logprobs(response)
            if found is None:
                raise SizerError(f"{self.served_model}: the server stopped returning log-probabilities mid-trial")
            if wanted <= found.keys():
                break
        return found

    def _check_tokens(self, response: dict, expected: int) -> None:
        counted = (response.get("usage") or {}).get("prompt_tokens")
        # A BOS the server adds on its own is one token more and changes nothing that matters here.
        if counted is not None and counted not in (expected, expected + 1):
            self._token_mismatch += 1

    def _by_generation(self, prefix: list[int], prefix_text: str, request: Request) -> list[Score]:
        longest = max(len(c) for c in request.continuations)
        response = self.client.completion(prefix_text + self.decode(request.prompt), max_tokens=longest + 4,
                                          temperature=0, stop=["\n"])
        labels = [self.decode(c).strip() for c in request.continuations]
        picked = labels.index(closest_label(choice(response).get("text") or "", labels))
        return [Score(0.0 if j == picked else -math.inf, len(c), j == picked) for j, c in enumerate(request.continuations)]

    def generate(self, prompt: list[int], max_new_tokens: int, shared: Any = None) -> tuple[str, int]:
        """Greedy (temperature 0) completion of `prompt`'s text: the text and the tokens the
        server says it generated."""
        response = self.client.completion(self.text(prompt), max_tokens=max_new_tokens, temperature=0)
        return choice(response).get("text") or "", int((response.get("usage") or {}).get("completion_tokens", 0))


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
