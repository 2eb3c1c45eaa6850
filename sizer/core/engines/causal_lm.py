"""Causal language models through transformers, a `LanguageModel` (sizer.core.engines.protocol):
label log-likelihoods with a reused prefix KV cache, and greedy generation."""

from __future__ import annotations

import copy
import inspect
from contextlib import nullcontext
from typing import Any, Callable

import torch

from sizer.core.catalog.resolve import LocalModel
from sizer.core.engines.gguf_parse import gguf_parsed_once
from sizer.core.engines.packing import Request, build_pack, make_packs
from sizer.core.engines.protocol import Score


class CausalLM:
    """A loaded causal LM and its tokenizer on one device."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device

    @classmethod
    def load(cls, local: LocalModel, device: str, dtype: torch.dtype, trust_remote_code: bool = False,
             placement: dict[str, Any] | None = None) -> "CausalLM":
        """Load on `device`, or over several devices with `placement` (`device_map`/`max_memory`
        kwargs from `sizer.core.engines.device_map`); inputs then go to the device of the embeddings."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sizer.core.engines.library_output import hook_transformers_bars

        hook_transformers_bars()
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if local.gguf_file:
            kwargs["gguf_file"] = local.gguf_file
        else:
            kwargs["use_safetensors"] = not local.allow_pickle or None
        with gguf_parsed_once() if local.gguf_file else nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(local.path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(local.path, dtype=dtype, **(placement or {}), **kwargs)
        if placement:
            return cls(model.eval(), tokenizer, model.get_input_embeddings().weight.device)
        model.to(device).eval()
        return cls(model, tokenizer, torch.device(device))

    @property
    def max_context(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _cache_kwarg(self, cache: Any) -> dict[str, Any]:
        # transformers is renaming `past_key_values` to `cache`; pass whichever forward() takes.
        name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        return {name: cache}

    @torch.inference_mode()
    def prefix_cache(self, prefix: list[int]) -> Any:
        """Run the shared prefix once and keep its KV cache."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        if prefix:
            ids = torch.tensor([prefix], device=self.device)
            self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **self._cache_kwarg(cache))
        return cache

    @torch.inference_mode()
    def score(
        self,
        prefix: list[int],
        requests: list[Request],
        max_pack_tokens: int = 2048,
        on_pack: Callable[[list[int], list[list[Score]]], None] | None = None,
        cache: Any = None,
        first_pack_tokens: int | None = None,
    ) -> list[list[Score]]:
        """Score every continuation of every request after `prefix` (one list per request).

        Requests are grouped into packs of at most `max_pack_tokens` tokens in the order given
        (callers sort longest first), the first of at most `first_pack_tokens`; `on_pack(indices,
        scores)` is called after each pack so the caller can store results as they come. `cache`:
        `prefix_cache(prefix)` computed beforehand (it comes back holding the prefix only).
        """
        cache = cache if cache is not None else self.prefix_cache(prefix)
        results: list[list[Score]] = [[] for _ in requests]
        for indices in make_packs(requests, max_pack_tokens, first_pack_tokens):
            pack_scores = self._score_pack(cache, len(prefix), [requests[i] for i in indices])
            for index, scores in zip(indices, pack_scores):
                results[index] = scores
            if on_pack:
                on_pack(indices, pack_scores)
        return results

    def _score_pack(self, cache: Any, prefix_len: int, requests: list[Request]) -> list[list[Score]]:
        pack = build_pack(requests, prefix_len)
        mask = pack.mask.to(self.device)
        if self.model.config._attn_implementation == "eager":
            mask = torch.zeros(mask.shape, dtype=self.model.dtype, device=self.device).masked_fill(
                ~mask, torch.finfo(self.model.dtype).min
            )
        predictors = pack.predictors.to(self.device)
        outputs = self.model(
            input_ids=pack.input_ids.to(self.device),
            position_ids=pack.position_ids.to(self.device),
            attention_mask=mask,
            use_cache=bool(prefix_len),
            logits_to_keep=predictors,
            **self._cache_kwarg(cache if prefix_len else None),
        )
        if prefix_len:
            cache.crop(-pack.input_ids.shape[1])  # drop the pack's tokens, keep the prefix
        logits = outputs.logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = pack.targets.to(self.device)
        token_lp = logprobs.gather(1, targets[:, None])[:, 0].cpu()
        greedy = (logits.argmax(dim=-1) == targets).cpu()
        scores: list[list[Score]] = [[] for _ in requests]
        for owner, start, end in pack.owners:
            scores[owner].append(
                Score(float(token_lp[start:end].sum()), end - start, bool(greedy[start:end].all()))
            )
        return scores

    def generate(self, prompt: list[int], max_new_tokens: int, shared: Any = None) -> tuple[str, int]:
        """Greedy continuation of `prompt` (token ids): the decoded text and the tokens generated."""
        new = self.generate_ids(prompt, max_new_tokens, shared)
        return self.tokenizer.decode(new, skip_special_tokens=True), len(new)

    @torch.inference_mode()
    def generate_ids(self, prompt: list[int], max_new_tokens: int, shared: Any = None) -> list[int]:
        """Greedy continuation of `prompt`: the new token ids.

        `shared`: `prefix_cache(prompt[:n])` for a prefix many prompts start with (instruction,
        demonstrations); each generation then starts from a copy of it and computes only the rest.
        """
        ids = torch.tensor([prompt], device=self.device)
        cache = {}
        if shared is not None and shared.get_seq_length() < len(prompt):
            cache = self._cache_kwarg(copy.deepcopy(shared))
        pad = None if self.tokenizer is None else (self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            **cache,
        )
        return out[0, len(prompt):].tolist()
