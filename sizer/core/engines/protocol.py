"""What an engine is to a trial: the `LanguageModel` a runner scores and generates with, and the
`Engine` that places, loads and sizes it.

The contract follows lm-evaluation-harness's `LM` (loglikelihood and greedy generation over
token ids) with a shared prefix evaluated once, as both local engines do:

- `score(prefix, requests, max_pack_tokens, on_pack, cache, first_pack_tokens)`: the
  log-likelihood of every continuation of every request after `prefix` (lm-eval's
  loglikelihood), reported per pack through `on_pack(indices, scores)` so results are stored as
  they come;
- `generate(prompt, max_new_tokens, shared)`: greedy decoding (lm-eval's generate_until),
  `shared` being a `prefix_cache(prefix)` handle reused across prompts that start with it.

An engine is registered by name in `sizer.core.engines.ENGINES` (or by another package through
the `sizer.engines` entry point group) as "module:Class"; the class implements `Engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from sizer.core.engines.packing import Request


@dataclass(frozen=True)
class Score:
    """Log-likelihood of one continuation: its sum (nats), its token count, and whether greedy
    decoding would have produced every one of its tokens. `bounded`: how many of its tokens got
    an upper bound rather than their own log-probability (None: the engine's are always exact)."""

    logprob: float
    tokens: int
    greedy: bool
    bounded: int | None = None


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do beyond the protocol's calls."""

    prefix_cache: bool = True     # the shared prefix is evaluated once, not per request
    trainable: bool = False       # LoRA fine-tuning runs on it (the fine-tune strategy)
    exact_logprobs: bool = True   # log-likelihoods are the model's own, not approximated
    measured_here: bool = True    # its speed and memory are this process's (False: a server's)


OnPack = Callable[[list[int], list[list[Score]]], None]


@runtime_checkable
class LanguageModel(Protocol):
    """A loaded causal LM as the runners use it. Token ids are lists of ints."""

    tokenizer: Any  # callable: text -> {"input_ids": [...]}; decode(); apply_chat_template()

    @property
    def max_context(self) -> int:
        """Tokens one sequence may hold."""

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens."""

    def has_chat_template(self) -> bool:
        """Whether the tokenizer carries a chat template."""

    def prefix_cache(self, prefix: list[int]) -> Any:
        """Evaluate `prefix` once; the handle `score` and `generate` reuse."""

    def score(self, prefix: list[int], requests: list[Request], max_pack_tokens: int = 2048,
              on_pack: OnPack | None = None, cache: Any = None,
              first_pack_tokens: int | None = None) -> list[list[Score]]:
        """One list of `Score` per request, one per continuation, in the requests' order."""

    def generate(self, prompt: list[int], max_new_tokens: int, shared: Any = None) -> tuple[str, int]:
        """Greedy continuation of `prompt`: the decoded text and the number of tokens generated."""


@dataclass(frozen=True)
class Placement:
    """Where and how a trial's model runs: the device ("cpu", "cuda", "cuda:1", "mps"), the
    precision or file type it runs at ("bf16", "Q4_1", ...), its files (None: the engine needs
    none) and the device whose memory the trial measures."""

    device: str
    dtype: str
    local: Any = None           # sizer.core.catalog.resolve.LocalModel
    measured_on: str = ""       # "" = `device`
    revision: str = ""          # "" = the files' revision

    @property
    def memory_device(self) -> str:
        return self.measured_on or self.device

    @property
    def model_revision(self) -> str:
        """What the trial's cache key names as the model's revision."""
        return self.revision or (self.local.revision if self.local is not None else "")


class Engine(Protocol):
    """A way of running causal LMs in trials. Implementations are classes with these class
    methods; `capabilities` and `strategies` are class attributes."""

    capabilities: Capabilities
    strategies: Sequence[str]  # the strategies its trials run ("zero-shot", "few-shot", ...)
    kinds: Sequence[str]       # the model kinds it runs ("causal", "encoder")
    estimate_as: str           # the engine whose memory model sizes it ("transformers", "llama.cpp")
    needs_files: bool          # whether its trials read the model's files (all real engines do)

    @classmethod
    def device(cls, requested: str | None) -> str:
        """The device its trials run on here: `requested` when it can use it, else its best one.
        Raises SizerError for a device it cannot use."""

    @classmethod
    def place(cls, entry: Any, spec: Any) -> Placement:
        """Device, precision and files for a trial of `entry` (a catalog ModelEntry) as `spec`
        (a TrialSpec) asks. Raises SizerError when the engine cannot run it."""

    @classmethod
    def for_trial(cls, entry: Any, placement: Placement, spec: Any) -> LanguageModel:
        """Load the model (called once the trial is ready to measure loading)."""

    @classmethod
    def key_settings(cls, placement: Placement, spec: Any) -> dict[str, Any]:
        """Settings that make this engine's trial another trial in the cache ({} for transformers)."""

    @classmethod
    def predicted_peak(cls, entry: Any, placement: Placement, settings: dict[str, Any]) -> int | None:
        """The estimator's peak memory for this trial's workload (bytes), as it is measured."""

    @classmethod
    def runs(cls, entry: Any) -> bool:
        """Whether a walk can try `entry` on this engine here (its kind, its files)."""

    # Optional, read with defaults (sizer.core.engines.trial_model, sizer.core.trials.runners):
    # `resolve(spec, catalog)`: the model a trial of `spec` runs (default: the catalog entry
    #     `spec.model` names); `runners`: ((task kind, strategy), "module:factory") pairs tried
    #     before the shared runner table, for an engine whose models the shared runners cannot
    #     drive (the OpenAI-compatible engine's); `title`: how one-line errors name it (default
    #     "--engine NAME").
