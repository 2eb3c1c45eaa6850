"""Causal language models through llama.cpp (llama-cpp-python), at the GGUF file's own quantization.

A `LanguageModel` (sizer.core.engines.protocol), as `sizer.core.engines.causal_lm` is. The KV cache holds one sequence; `_sync` keeps the
tokens already in it that a new input starts with, so the shared prefix (instruction +
demonstrations) is evaluated once and every example, continuation and generation starts from it.

Log-likelihoods are computed here from the logits llama.cpp returns for the positions asked for
(`llama_get_logits_ith`), never from the server's `echo` prompt logprobs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from sizer.core.catalog.resolve import LocalModel
from sizer.core.engines.protocol import Score
from sizer.core.errors import SizerError

EXTRA_HINT = "llama.cpp needs llama-cpp-python: install it with `pip install 'sizer[llamacpp]'`"
DEFAULT_CONTEXT = 4096   # tokens of KV cache a trial allocates (the runners' prefix budget is 2048)
N_BATCH = 2048           # tokens one llama_decode call may take (llama.cpp splits it into ubatches)
N_UBATCH = 256          # tokens per ubatch: the compute buffer holds this many rows of vocabulary logits
N_SEQ = 64               # KV sequences: 0 holds the prefix, the others one (example, label) branch each


def import_llama_cpp() -> Any:
    """The `llama_cpp` module, or a SizerError naming the extra to install."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise SizerError(EXTRA_HINT) from exc
    return llama_cpp


def gguf_path(local: LocalModel) -> str:
    if not local.gguf_file:
        raise SizerError(f"{local.path}: the llama.cpp engine runs GGUF files and this model has none; "
                         "use --engine transformers or give a .gguf file")
    return str(local.path / local.gguf_file)


class GGUFTokenizer:
    """The subset of a transformers tokenizer the runners call, on llama.cpp's own vocabulary."""

    def __init__(self, llm: Any, metadata: dict[str, str]) -> None:
        self._llm = llm
        self._model = llm._model
        self.chat_template: str | None = metadata.get("tokenizer.chat_template")
        self.add_bos = bool(self._model.add_bos_token()) if hasattr(self._model, "add_bos_token") else False
        self.bos_token = self._piece(self._model.token_bos())
        self.eos_token = self._piece(self._model.token_eos())

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return self._model.detokenize([token], special=True).decode("utf-8", errors="replace")

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = self._model.tokenize(text.encode("utf-8"), add_special_tokens and self.add_bos, True)
        return {"input_ids": list(ids)}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._model.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = True) -> str:
        """The GGUF's Jinja chat template rendered the way transformers renders it."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise SizerError(f"the model's chat template refused the prompt: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template or "").render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token, eos_token=self.eos_token)


def log_softmax_at(logits: np.ndarray, token: int) -> tuple[float, bool]:
    """log p(token) from one row of logits (float64 log-sum-exp), and whether it is the argmax."""
    row = logits.astype(np.float64)
    top = float(row.max())
    lse = top + math.log(float(np.exp(row - top).sum()))
    return float(row[token]) - lse, int(row.argmax()) == token


class LlamaCppLM:
    """A GGUF model loaded by llama.cpp, with one KV sequence that keeps the shared prefix."""

    def __init__(self, llm: Any, llama_cpp: Any) -> None:
        from llama_cpp import _internals

        self.llm = llm
        self._lib = llama_cpp
        # Llama's own context holds one sequence; scoring needs a branch per (example, label)
        # over one shared copy of the prefix: a unified KV cache with N_SEQ sequences instead.
        params = llm.context_params
        params.n_seq_max, params.kv_unified = N_SEQ, True
        llm._ctx.close()
        llm._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._ctx = llm._ctx
        self._batch = llm._batch
        self._multi = _internals.LlamaBatch(n_tokens=int(llm.n_batch), embd=0, n_seq_max=N_SEQ, verbose=False)
        self._n_batch = int(llm.n_batch)
        self._n_vocab = int(llm.n_vocab())
        self._kv: list[int] = []                 # tokens in the KV cache, positions 0..len-1
        self._last: np.ndarray | None = None      # logits after the last token in `_kv`
        self.tokenizer = GGUFTokenizer(llm, dict(llm.metadata))

    @classmethod
    def load(cls, local: LocalModel, n_threads: int | None = None, n_gpu_layers: int = 0,
             tensor_split: list[float] | None = None, n_ctx: int = DEFAULT_CONTEXT) -> "LlamaCppLM":
        """Load `local`'s GGUF file at its own quantization. Raises SizerError (one line) when
        llama-cpp-python is missing or the file does not load."""
        llama_cpp = import_llama_cpp()
        path = gguf_path(local)
        try:
            llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=N_BATCH, n_ubatch=N_UBATCH, n_threads=n_threads,
                                  n_gpu_layers=n_gpu_layers, tensor_split=tensor_split,
                                  logits_all=False, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SizerError(f"{path}: llama.cpp cannot load this GGUF file ({first}); "
                             "check the file is complete (re-download it) and is a llama.cpp model") from exc
        return cls(llm, llama_cpp)

    @property
    def max_context(self) -> int:
        return int(self.llm.n_ctx())

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def has_chat_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    # --- the KV cache ----------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int], start: int, want: Sequence[int]) -> dict[int, np.ndarray]:
        """Evaluate `tokens` at positions start.. (sequence 0); return the logits of the token
        indices in `want` (copied out of llama.cpp's buffer)."""
        wanted = set(want)
        out: dict[int, np.ndarray] = {}
        batch = self._batch.batch
        for lo in range(0, len(tokens), self._n_batch):
            chunk = tokens[lo:lo + self._n_batch]
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + lo + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = (lo + i) in wanted
            self._ctx.decode(self._batch)
            for i in range(len(chunk)):
                if (lo + i) in wanted:
                    ptr = self._ctx.get_logits_ith(i)
                    out[lo + i] = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()
        return out

    def _truncate(self, n: int) -> None:
        """Forget KV positions n.. (back to the first n tokens)."""
        if n < len(self._kv):
            self._ctx.kv_cache_seq_rm(-1, n, -1)
            del self._kv[n:]
            self._last = None

    def _sync(self, tokens: Sequence[int]) -> np.ndarray | None:
        """Make the KV cache hold exactly `tokens`, reusing the longest matching start; return the
        logits after the last token (None for no tokens)."""
        tokens = list(tokens)
        same = 0
        for a, b in zip(self._kv, tokens):
            if a != b:
                break
            same += 1
        if same == len(tokens) == len(self._kv) and self._last is not None:
            return self._last
        if same == len(tokens) and same:
            same -= 1  # the last token's logits are not kept: evaluate it again
        self._truncate(same)
        rest = tokens[same:]
        if rest:
            logits = self._decode(rest, same, [len(rest) - 1])
            self._kv.extend(rest)
            self._last = logits[len(rest) - 1]
        return self._last

    def prefix_cache(self, prefix: list[int]) -> tuple[int, ...]:
        """Evaluate the shared prefix once; the handle is the prefix itself (later inputs that
        start with it reuse its KV entries)."""
        self._sync(prefix)
        return tuple(prefix)

    # --- scoring -----------------------------------------------------------------------------

    def score(self, prefix: list[int], requests: list[Any], max_pack_tokens: int = 2048,
              on_pack: Callable[[list[int], list[list[Score]]], None] | None = None,
              cache: Any = None, first_pack_tokens: int | None = None) -> list[list[Score]]:
        """Score every continuation of every request (`.prompt`, `.continuations` token ids) after
        `prefix`. The prefix is evaluated once; each example's prompt once; each continuation
        after it. `on_pack` is called with groups of requests of at most `max_pack_tokens` tokens
        (the first of at most `first_pack_tokens`), as the transformers backend calls it. `cache`
        (a `prefix_cache` handle) needs nothing more here: the KV cache already starts with it."""
        from sizer.core.engines.packing import make_packs

        self._truncate(len(prefix))
        after_prefix = self._sync(prefix)
        budget = max(1, min(max_pack_tokens, self._n_batch, self.max_context - len(prefix)))
        results: list[list[Score]] = [[] for _ in requests]
        for indices in make_packs(requests, budget, first_tokens=first_pack_tokens):
            # One example per llama_decode: its prompt and all its labels. Several examples in
            # one call (disjoint sequences at the same positions) moved a later example's
            # log-likelihoods by up to 0.12 nats against a plain evaluation with llama-cpp-python
            # 0.3.36, so examples are not mixed; the prefix is still evaluated once.
            pack = []
            for index in indices:
                _by_sequences([index], requests)
                pack.append(self._score_group(len(prefix), after_prefix, [requests[index]])[0])
            for index, scores in zip(indices, pack):
                results[index] = scores
            if on_pack:
                on_pack(indices, pack)
        return results

    def _score_group(self, n_prefix: int, after_prefix: np.ndarray | None, requests: list[Any]) -> list[list[Score]]:
        """One llama_decode for several examples: each example's prompt tokens belong to all of
        its label branches (sequences 1..), each label's tokens to its own branch only, so a token
        sees the prefix, its example's prompt and its own label -- never another label or example
        (the layout of sizer.core.engines.packing, expressed with llama.cpp's sequence ids)."""
        tokens: list[tuple[int, int, list[int], bool]] = []   # token, position, sequences, logits
        layout: list[list[tuple[list[int], list[int | None]]]] = []
        seq = 1
        for request in requests:
            branches = list(range(seq, seq + len(request.continuations)))
            seq += len(branches)
            prompt = list(request.prompt)
            for k, token in enumerate(prompt):
                tokens.append((token, n_prefix + k, branches, k == len(prompt) - 1))
            last = len(tokens) - 1 if prompt else None
            conts = []
            for branch, cont in zip(branches, request.continuations):
                rows: list[int | None] = [last]
                for k, token in enumerate(list(cont)[:-1]):
                    tokens.append((token, n_prefix + len(prompt) + k, [branch], True))
                    rows.append(len(tokens) - 1)
                conts.append((list(cont), rows))
            layout.append(conts)
        for branch in range(1, seq):
            self._ctx.kv_cache_seq_cp(0, branch, -1, -1)
        logits = self._decode_multi(tokens)
        for branch in range(1, seq):
            self._ctx.kv_cache_seq_rm(branch, -1, -1)
        out = []
        for conts in layout:
            scores = []
            for cont, rows in conts:
                total, greedy = 0.0, True
                for row, token in zip(rows, cont):
                    lp, top = log_softmax_at(after_prefix if row is None else logits[row], token)
                    total += lp
                    greedy = greedy and top
                scores.append(Score(total, len(cont), greedy))
            out.append(scores)
        return out

    def _decode_multi(self, tokens: list[tuple[int, int, list[int], bool]]) -> dict[int, np.ndarray]:
        batch = self._multi.batch
        batch.n_tokens = len(tokens)
        for i, (token, pos, seqs, want) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = len(seqs)
            for j, s in enumerate(seqs):
                batch.seq_id[i][j] = s
            batch.logits[i] = want
        if tokens:
            self._ctx.decode(self._multi)
        return {i: np.ctypeslib.as_array(self._ctx.get_logits_ith(i), shape=(self._n_vocab,)).copy()
                for i, t in enumerate(tokens) if t[3]}

    # --- generation --------------------------------------------------------------------------

    def generate(self, prompt: list[int], max_new_tokens: int, shared: Any = None) -> tuple[str, int]:
        """Greedy continuation of `prompt` (token ids): the decoded text and the tokens generated.
        `shared` (a `prefix_cache` handle) is reused through the KV cache's matching start."""
        new = self.generate_ids(prompt, max_new_tokens, shared)
        return self.tokenizer.decode(new, skip_special_tokens=True), len(new)

    def generate_ids(self, prompt: list[int], max_new_tokens: int, shared: Any = None) -> list[int]:
        keep = len(shared) if shared and list(prompt[:len(shared)]) == list(shared) else 0
        if keep:
            self._truncate(keep)
        logits = self._sync(prompt)
        new: list[int] = []
        limit = self.max_context
        while logits is not None and len(new) < max_new_tokens and len(self._kv) < limit:
            token = int(np.argmax(logits))
            if self._lib.llama_vocab_is_eog(self.llm._model.vocab, token):
                break
            new.append(token)
            logits = self._decode([token], len(self._kv), [0])[0]
            self._kv.append(token)
            self._last = logits
        self._truncate(keep)
        return new


def _by_sequences(indices: list[int], requests: list[Any]) -> list[list[int]]:
    """Split a pack so no group needs more than N_SEQ - 1 label branches (sequence 0 is the prefix)."""
    groups: list[list[int]] = []
    used = N_SEQ
    for index in indices:
        need = len(requests[index].continuations)
        if need > N_SEQ - 1:
            raise SizerError(f"{need} labels: llama.cpp scoring here takes at most {N_SEQ - 1}")
        if used + need > N_SEQ - 1:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += need
    return groups
