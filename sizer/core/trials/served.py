"""A trial on a managed server (`TrialSpec.serve`): sizer starts vLLM or llama.cpp's server for
the candidate, runs the trial through the OpenAI-compatible backend, and stops the server, on
success, error, cancel and Ctrl-C alike (see `serve_launcher`)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from sizer.core import events
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.catalog.lookup import resolve_model
from sizer.core.paths import cache_dir
from sizer.core.catalog.resolve import locate
from sizer.core.engines.serve_launcher import ManagedServer, parse_serve_engine, recipe_for
from sizer.core.trials.trial import run_trial


def run_trial_spec(task: Any, spec: Any, store: Any = None, sink: events.Sink = events.null_sink,
                   cancel: threading.Event | None = None, catalog: Any = None,
                   position: tuple[int, int] = (1, 1)) -> Any:
    """Run the trial `spec` describes: on a server sizer starts when `spec.serve` names an engine,
    else as `run_trial` does (local files or the endpoint the spec names)."""
    if spec.serve:
        return run_served_trial(task, spec, store, sink, cancel, catalog)
    return run_trial(task, spec, store, sink, cancel, catalog, position)


def run_served_trial(task: Any, spec: Any, store: Any = None, sink: events.Sink = events.null_sink,
                     cancel: threading.Event | None = None, catalog: Any = None) -> Any:
    """Start the server `spec.serve` names for `spec.model`, run the trial on it, stop it."""
    from sizer.core.hardware.profile import detect
    from sizer.core.trials.strategies import check_strategy

    check_strategy(spec.strategy)
    engine = parse_serve_engine(spec.serve)
    catalog = catalog or load_catalog()
    entry = resolve_model(spec.model, catalog)
    local = locate(entry, allow_pickle=spec.allow_pickle)
    recipe = recipe_for(engine, entry, local, detect)
    sink(events.Message(f"starting the {engine} server for {entry.id}: {' '.join(recipe.command[:4])} ..."))
    with ManagedServer(recipe, cache_dir() / "servers", cancel=cancel) as server:
        sink(events.Message(f"{engine} server for {entry.id} healthy at {server.url} (process group {server.pid})"))
        served = dataclasses.replace(spec, serve=None, engine="openai", endpoint=server.url, served_model=recipe.served_name,
                                     managed=recipe.label)
        result = run_trial(task, served, store, sink, cancel, catalog)
    if server.peak_rss_bytes and not result.memory.get("measured_earlier"):
        # the server ran here: its processes' memory is this trial's (GPU memory is not in it)
        result.memory = {**result.memory, "peak_bytes": server.peak_rss_bytes, "device": f"{engine} server",
                         "measured_by": "peak RSS of the server's processes, sampled every 0.2 s"
                                        + (" (GPU memory not included)" if engine == "vllm" else "")}
    return result
