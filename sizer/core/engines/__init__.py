"""Engines: the ways sizer runs a model in a trial, and what it needs to reach one.

The registry below maps an engine's name to its class ("module:Class", imported only when asked
for, as lm-evaluation-harness registers its models). A class implements
`sizer.core.engines.protocol.Engine` (place, load, key settings, predicted memory) and loads a
`LanguageModel` the runners score and generate with. Adding an engine is one module and one line
here, or, from another package, one entry point in the `sizer.engines` group:

    [project.entry-points."sizer.engines"]
    toy = "toy_engine:ToyEngine"

Beside the registry: the transformers and llama.cpp models (`causal_lm`, `encoder`,
`llama_cpp`), packed scoring requests (`packing`), the OpenAI-compatible engine
(`openai_engine`: its client `http`, the endpoints of serving engines `endpoints`), managed servers (`serve_launcher`, `serve_guard`,
`serve_command`), multi-GPU placement (`device_map`) and the model held between trials
(`model_cache`).
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from sizer.core.errors import SizerError

ENGINES: dict[str, str] = {
    "transformers": "sizer.core.engines.transformers_engine:TransformersEngine",
    "llama.cpp": "sizer.core.engines.llama_cpp_engine:LlamaCppEngine",
    "fake": "sizer.core.engines.fake:FakeEngine",
    "openai": "sizer.core.engines.openai_engine:OpenAIEngine",
}
ENTRY_POINT_GROUP = "sizer.engines"

ALIASES = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "hf": "transformers",
           "endpoint": "openai", "openai-compatible": "openai"}


@functools.cache
def registered() -> dict[str, str]:
    """Every engine: the built-in ones, then those other installed packages register (read once
    per process: scanning the installed distributions takes milliseconds)."""
    found = dict(ENGINES)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point.value)
    return found


def engine_name(name: str | None) -> str:
    """The canonical name of a trial engine ("" or None = transformers); unknown -> SizerError."""
    key = (name or "transformers").strip().lower()
    key = ALIASES.get(key, key)
    engines = registered()
    if key not in engines:
        raise SizerError(f"--engine {name}: unknown engine for trials; use one of {', '.join(engines)}")
    return key


def get_engine(name: str | None) -> Any:
    """The engine class `name` registers, imported now."""
    module, cls = registered()[engine_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)


def trial_engine(entry: Any, strategy: str, engine: str | None) -> str:
    """The engine a walk's local trial of `entry` with `strategy` runs on: the run's engine when it
    is a trial engine that runs this model here and this strategy; transformers otherwise (the
    size estimate still assumes the run's engine; vLLM, for one, runs trials through --serve)."""
    try:
        name = engine_name(engine)
    except SizerError:
        return "transformers"
    cls = get_engine(name)
    return name if strategy in cls.strategies and cls.runs(entry) else "transformers"


def run_device(engine: str | None, requested: str | None) -> str:
    """The device the run's trials use here: the run's trial engine's choice (transformers for an
    engine that only sizes, such as vLLM, or runs nothing here, such as a server's)."""
    try:
        cls = get_engine(engine_name(engine))
    except SizerError:
        cls = get_engine("transformers")
    return (cls if cls.capabilities.measured_here else get_engine("transformers")).device(requested)


def trial_model(engine: Any, spec: Any, catalog: Any) -> Any:
    """The model a trial of `spec` runs on `engine` (a registered class): what its optional
    `resolve(spec, catalog)` gives, else the catalog entry `spec.model` names (SizerError when
    none does)."""
    resolve = getattr(engine, "resolve", None)
    if resolve is not None:
        return resolve(spec, catalog)
    from sizer.core.catalog.lookup import resolve_model

    return resolve_model(spec.model, catalog)


def needs_files(entry: Any, engine: str | None) -> bool:
    """Whether the run's trials of `entry` need its files on this machine (the fake engine does not)."""
    return getattr(get_engine(trial_engine(entry, "zero-shot", engine)), "needs_files", True)


def estimate_engine(engine: str | None) -> str | None:
    """The engine a size estimate assumes for the run's `engine`: transformers, llama.cpp and vLLM
    are estimated as themselves; another trial engine as its class's `estimate_as`."""
    from sizer.core.estimate.fit import ENGINES as ESTIMATED

    if engine is None or engine in ESTIMATED:
        return engine
    return getattr(get_engine(engine), "estimate_as", "transformers")
