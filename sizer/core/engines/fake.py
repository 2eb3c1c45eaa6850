"""A fake engine: a `LanguageModel` with no weights and no torch, for testing the machinery (the
walk, the decision, reports, the app) in milliseconds, as inspect_ai's mock model does.

It is deterministic and not a language model: a label's log-likelihood after an example is the
number of word stems (first four letters) the two share, plus seeded noise whose spread shrinks
as the catalog's parameter count grows, so larger fake models score better, as real ones tend to.
Its trials measure nothing worth reporting: memory is not predicted and speed is the machinery's.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Sequence

from sizer.core.engines.packing import Request, make_packs
from sizer.core.engines.protocol import Capabilities, OnPack, Placement, Score

WORD = re.compile(r"\w+|[^\w\s]")
MAX_CONTEXT = 4096


class FakeTokenizer:
    """Words and punctuation as tokens; ids from a table that grows as text is seen."""

    chat_template = None

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.words: list[str] = []

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [self._id(w) for w in WORD.findall(text)]}

    def _id(self, word: str) -> int:
        if word not in self.ids:
            self.ids[word] = len(self.words)
            self.words.append(word)
        return self.ids[word]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return " ".join(self.words[i] for i in ids)


class FakeLM:
    """Scores labels by shared word stems plus noise of spread `noise` (nats)."""

    def __init__(self, seed: str, noise: float) -> None:
        self.tokenizer = FakeTokenizer()
        self.seed, self.noise = seed, noise

    @property
    def max_context(self) -> int:
        return MAX_CONTEXT

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def has_chat_template(self) -> bool:
        return False

    def prefix_cache(self, prefix: list[int]) -> tuple[int, ...]:
        return tuple(prefix)

    def score(self, prefix: list[int], requests: list[Request], max_pack_tokens: int = 2048,
              on_pack: OnPack | None = None, cache: Any = None,
              first_pack_tokens: int | None = None) -> list[list[Score]]:
        results: list[list[Score]] = [[] for _ in requests]
        for indices in make_packs(requests, max_pack_tokens, first_pack_tokens):
            pack = [[self._score(requests[i].prompt, c) for c in requests[i].continuations] for i in indices]
            for index, scores in zip(indices, pack):
                results[index] = scores
            if on_pack:
                on_pack(indices, pack)
        return results

    def _score(self, prompt: Sequence[int], continuation: Sequence[int]) -> Score:
        stems = {w[:4].lower() for w in self.tokenizer.decode(prompt).split()}
        label = [w[:4].lower() for w in re.split(r"[\W_]+", self.tokenizer.decode(continuation)) if w]
        shared = sum(1 for w in label if w in stems)
        digest = hashlib.sha256(f"{self.seed}|{list(prompt)}|{list(continuation)}".encode()).digest()
        uniform = int.from_bytes(digest[:8], "big") / 2**64
        logprob = shared - 0.1 * len(continuation) + self.noise * (2 * uniform - 1)
        return Score(logprob, len(continuation), shared > 0)

    def generate(self, prompt: list[int], max_new_tokens: int, shared: Any = None) -> tuple[str, int]:
        """The prompt's last line, up to `max_new_tokens` words."""
        words = self.tokenizer.decode(prompt).split()[-max_new_tokens:]
        return " ".join(words), len(words)


class FakeEngine:
    capabilities = Capabilities(prefix_cache=True, trainable=False, exact_logprobs=True)
    strategies = ("zero-shot", "few-shot")
    kinds = ("causal",)
    estimate_as = "transformers"
    needs_files = False  # its trials need no weights

    @classmethod
    def device(cls, requested: str | None) -> str:
        return "cpu"

    @classmethod
    def place(cls, entry: Any, spec: Any) -> Placement:
        return Placement("cpu", "fake", None, revision=f"fake:{entry.id}")

    @classmethod
    def for_trial(cls, entry: Any, placement: Placement, spec: Any) -> FakeLM:
        # noise 3.5 - 0.9 x (log10(params) - 7.5) nats: 135M -> 2.9, 7B -> 1.4, 70B -> 0.5
        noise = max(0.2, 3.5 - 0.9 * (math.log10(max(entry.params, 1)) - 7.5))
        return FakeLM(entry.id, noise)

    @classmethod
    def key_settings(cls, placement: Placement, spec: Any) -> dict[str, Any]:
        return {"engine": "fake"}

    @classmethod
    def predicted_peak(cls, entry: Any, placement: Placement, settings: dict[str, Any]) -> int | None:
        return None

    @classmethod
    def runs(cls, entry: Any) -> bool:
        return entry.kind in cls.kinds
