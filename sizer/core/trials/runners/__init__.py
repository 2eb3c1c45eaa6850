"""How one trial's examples are predicted: one runner per (kind of model, task, strategy), an
engine's own runners first.

A runner has `warnings: list[str]`, `load()`, `prepare(task, train, test) -> (settings,
prompt_digest, kept_test)` and `predict(task, examples, on_batch)`, which calls `on_batch(rows)`
with one stored record per example (`example_id`, `gold`, `prediction`, `latency_s`, ...).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.engines.protocol import Placement

# (model kind, task kind or "*", strategy or "*") -> "module:factory". First match wins.
# A factory is called as factory(entry, task, spec, placement, seed) -> runner.
RUNNERS: list[tuple[tuple[str, str, str], str]] = [
    (("encoder", "classify", "rag"), "sizer.core.trials.runners.encoder_knn:make"),
    (("causal", "*", "rag"), "sizer.core.trials.runners.lm_rag:make"),
    (("encoder", "classify", "fine-tune"), "sizer.core.trials.runners.encoder_head:make"),
    (("causal", "*", "fine-tune"), "sizer.core.trials.runners.lm_finetune:make"),
    (("encoder", "classify", "*"), "sizer.core.trials.runners.encoder_classify:make"),
    (("causal", "classify", "*"), "sizer.core.trials.runners.lm_classify:make"),
    (("causal", "*", "*"), "sizer.core.trials.runners.lm_generate:make"),
]


def _matches(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    return all(p in ("*", k) for p, k in zip(pattern, key))


def make_runner(entry: ModelEntry, task: Any, spec: Any, placement: Placement, seed: int, engine: Any = None) -> Any:
    """The runner for this task kind and strategy on `engine` (a registered class): the first of
    the engine's own `runners` ((task kind, strategy) patterns) that matches, else the shared
    table's row for the model's kind; `placement` is the engine's. Raises SizerError when none
    runs the combination."""
    table = [((entry.kind, *pattern), target) for pattern, target in getattr(engine, "runners", ())] + RUNNERS
    key = (entry.kind, task.kind, spec.strategy)
    for pattern, target in table:
        if _matches(pattern, key):
            module, factory = target.split(":")
            return getattr(importlib.import_module(module), factory)(entry, task, spec, placement, seed)
    if entry.kind == "encoder" and task.kind != "classify":
        raise SizerError(f"{entry.id} is an encoder: it can run classify tasks only, not {task.kind}")
    raise SizerError(f"{entry.id}: no way to run a {entry.kind} model on a {task.kind} task with {spec.strategy}")


def causal_loader(placement: Placement, spec: Any, entry: ModelEntry) -> Callable[[], Any]:
    """A function that loads the causal LM on the engine `spec.engine` names (sizer.core.engines)
    when the trial is ready to (so loading is measured); the model held from the previous trial
    is reused when it is the same one."""
    from sizer.core.engines import engine_name, get_engine
    from sizer.core.engines.model_cache import get_or_load

    name = engine_name(getattr(spec, "engine", None))
    engine = get_engine(name)
    local = placement.local
    key = (name, entry.id, str(local.path) if local else "", local.gguf_file if local else "",
           placement.device, placement.dtype)
    return lambda: get_or_load(key, placement.memory_device, lambda: engine.for_trial(entry, placement, spec))


def encoder_loader(placement: Placement, spec: Any) -> Callable[[], Any]:
    """Like `causal_loader`, for sentence encoders (through sentence-transformers)."""
    from sizer.core.engines.encoder import Encoder
    from sizer.core.engines.model_cache import get_or_load

    local, device = placement.local, placement.device
    key = ("encoder", str(local.path), device)
    return lambda: get_or_load(key, device, lambda: Encoder.load(local, device, spec.trust_remote_code))
