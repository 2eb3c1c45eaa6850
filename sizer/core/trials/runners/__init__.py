"""How one trial's examples are predicted: one runner per (kind of model, task, strategy).

A runner has `warnings: list[str]`, `load()`, `prepare(task, train, test) -> (settings,
prompt_digest, kept_test)` and `predict(task, examples, on_batch)`, which calls `on_batch(rows)`
with one stored record per example (`example_id`, `gold`, `prediction`, `latency_s`, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.catalog.resolve import LocalModel

# (model kind, task kind or "*", strategy or "*") -> "module:factory". First match wins.
# A factory is called as factory(entry, task, spec, local, device, dtype, seed) -> runner.
RUNNERS: list[tuple[tuple[str, str, str], str]] = [
    (("encoder", "classify", "rag"), "sizer.core.trials.runners.encoder_knn:make"),
    (("causal", "*", "rag"), "sizer.core.trials.runners.lm_rag:make"),
    (("encoder", "classify", "fine-tune"), "sizer.core.trials.runners.encoder_head:make"),
    (("causal", "*", "fine-tune"), "sizer.core.trials.runners.lm_finetune:make"),
    (("encoder", "classify", "*"), "sizer.core.trials.runners.encoder_classify:make"),
    (("causal", "classify", "*"), "sizer.core.trials.runners.lm_classify:make"),
    (("causal", "*", "*"), "sizer.core.trials.runners.lm_generate:make"),
    (("remote", "classify", "zero-shot"), "sizer.core.trials.runners.http_classify:make"),
    (("remote", "classify", "few-shot"), "sizer.core.trials.runners.http_classify:make"),
    (("remote", "*", "zero-shot"), "sizer.core.trials.runners.http_generate:make"),
    (("remote", "*", "few-shot"), "sizer.core.trials.runners.http_generate:make"),
]


def _matches(pattern: tuple[str, str, str], key: tuple[str, str, str]) -> bool:
    return all(p in ("*", k) for p, k in zip(pattern, key))


def make_runner(entry: ModelEntry, task: Any, spec: Any, local: LocalModel, device: str, dtype: str, seed: int) -> Any:
    key = (entry.kind, task.kind, spec.strategy)
    for pattern, target in RUNNERS:
        if _matches(pattern, key):
            module, factory = target.split(":")
            return getattr(importlib.import_module(module), factory)(entry, task, spec, local, device, dtype, seed)
    if entry.kind == "encoder" and task.kind != "classify":
        raise SizerError(f"{entry.id} is an encoder: it can run classify tasks only, not {task.kind}")
    raise SizerError(f"{entry.id}: no way to run a {entry.kind} model on a {task.kind} task with {spec.strategy}")


def causal_loader(local: LocalModel, device: str, dtype: str, spec: Any, entry: ModelEntry | None = None):
    """A function that loads the causal LM when the trial is ready to (so loading is measured);
    the model held from the previous trial is reused when it is the same one. The engine is
    `spec.engine` (sizer.core.engines); transformers unless a spec names another."""
    from sizer.core.engines.model_cache import get_or_load

    engine = getattr(spec, "engine", "transformers") or "transformers"
    if engine != "transformers":
        from sizer.core.engines import get_engine

        backend = get_engine(engine)
        key = (engine, str(local.path), local.gguf_file, device)
        return lambda: get_or_load(key, "cpu", lambda: backend.for_trial(entry, local, device, spec))
    from sizer.core.engines.causal_lm import CausalLM
    from sizer.core.trials.placement import torch_dtype

    key = ("causal", str(local.path), local.gguf_file, device, dtype)

    def load() -> Any:
        # "cuda" without an index: several GPUs take the model as the plan places it (accelerate's device_map)
        placement = None
        if device == "cuda":
            from sizer.core.engines.device_map import planned_placement

            placement = planned_placement(spec.model, dtype)
        return CausalLM.load(local, device, torch_dtype(dtype), spec.trust_remote_code, placement=placement)

    return lambda: get_or_load(key, device, load)


def encoder_loader(local: LocalModel, device: str, spec: Any):
    """Like `causal_loader`, for sentence encoders."""
    from sizer.core.engines.encoder import Encoder
    from sizer.core.engines.model_cache import get_or_load

    key = ("encoder", str(local.path), device)
    return lambda: get_or_load(key, device, lambda: Encoder.load(local, device, spec.trust_remote_code))
