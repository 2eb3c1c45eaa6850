"""Engines that run local trials: name -> the backend class, imported only when asked for.

Adding an engine is one backend module and one line here. A backend class has
`for_trial(entry, local, device, spec) -> model` returning an object with the interface the
causal LM runners use (see sizer.core.engines.causal_lm).
"""

from __future__ import annotations

import importlib
from typing import Any

from sizer.core.errors import SizerError

ENGINES: dict[str, str] = {
    "transformers": "sizer.core.engines.causal_lm:CausalLM",
    "llama.cpp": "sizer.core.engines.llama_cpp:LlamaCppLM",
}

ALIASES = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "hf": "transformers"}


def engine_name(name: str | None) -> str:
    """The canonical name of a trial engine ("" or None = transformers); unknown -> SizerError."""
    key = (name or "transformers").strip().lower()
    key = ALIASES.get(key, key)
    if key not in ENGINES:
        raise SizerError(f"--engine {name}: unknown engine for trials; use one of {', '.join(ENGINES)}")
    return key


def get_engine(name: str | None) -> Any:
    """The backend class of engine `name`, imported now."""
    module, cls = ENGINES[engine_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)
