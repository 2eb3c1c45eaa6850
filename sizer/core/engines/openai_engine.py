"""The OpenAI-compatible engine: a trial of a model some server already serves (vLLM, TGI,
llama.cpp's server, Ollama, or one sizer starts: sizer.core.trials.served), reached at its
endpoint ("…/v1") through `sizer.core.engines.http`.

Nothing is loaded here and nothing of the model's is measured here: the trial's speed is the
server's as this client sees it, its memory is the server's and is not reported. The model is a
`RemoteCandidate` (the endpoint, plus the catalog entry of the same weights when the catalog has
them, for the local tokenizer and the size). The server decides how a label can be scored
(`prompt_logprobs`, next-token logprobs, or greedy generation), so its trials run on runners of
their own (`runners` below), named here rather than in the shared table.
"""

from __future__ import annotations

from typing import Any

from sizer.core.engines.protocol import Capabilities, Placement
from sizer.core.errors import SizerError

NAME = "openai"


class OpenAIEngine:
    capabilities = Capabilities(prefix_cache=False, trainable=False, exact_logprobs=False, measured_here=False)
    strategies = ("zero-shot", "few-shot")
    kinds = ("causal",)
    estimate_as = "transformers"
    needs_files = False  # the server holds the weights; a local tokenizer is used when present
    title = "a server at --endpoint (--engine openai)"  # how errors name it: users give --endpoint, not --engine
    # (task kind or "*", strategy or "*") -> "module:factory", before the shared table
    runners = (
        (("classify", "*"), "sizer.core.trials.runners.http_classify:make"),
        (("*", "*"), "sizer.core.trials.runners.http_generate:make"),
    )

    @classmethod
    def resolve(cls, spec: Any, catalog: Any) -> Any:
        """The served model of `spec` (its `endpoint`, `served_model` and endpoint options): a
        RemoteCandidate. Raises SizerError without an endpoint or for a malformed one."""
        from sizer.core.engines.endpoints import remote_candidate

        if not spec.endpoint:
            raise SizerError(f"--engine {NAME} runs a model a server already serves: give its URL with --endpoint "
                             "(e.g. http://127.0.0.1:8000/v1), or --serve to start one")
        return remote_candidate(spec, catalog)

    @classmethod
    def device(cls, requested: str | None) -> str:
        return "remote"

    @classmethod
    def place(cls, entry: Any, spec: Any) -> Placement:
        """"remote" at "server" precision (whatever the server runs): the trial key's device and
        dtype; the revision names the server, so the same weights elsewhere are another trial."""
        return Placement("remote", "server", None, measured_on=entry.endpoint.url, revision=entry.revision)

    @classmethod
    def for_trial(cls, entry: Any, placement: Placement, spec: Any) -> Any:
        from sizer.core.engines.openai_lm import RemoteLM

        return RemoteLM.load(entry)

    @classmethod
    def key_settings(cls, placement: Placement, spec: Any) -> dict[str, Any]:
        return {}  # the runners record the endpoint and how labels were scored

    @classmethod
    def predicted_peak(cls, entry: Any, placement: Placement, settings: dict[str, Any]) -> int | None:
        return None

    @classmethod
    def runs(cls, entry: Any) -> bool:
        """A walk reaches a server only through a candidate that names it (`RunSpec.remote`)."""
        return False
