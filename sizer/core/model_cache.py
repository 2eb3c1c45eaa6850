"""Keep the last loaded model, so a walk that tries several strategies on one model loads it once.

At most one model is held (memory matters more than load time). When a model is reused, the
memory its load took (measured then) is reported, so a trial's peak still counts the weights.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, Hashable

from sizer.core.measure import PeakMemory

_held: dict[str, Any] = {}


def get_or_load(key: Hashable, device: str, load: Callable[[], Any]) -> Any:
    """The held model if it is `key`, else `load()` (which replaces it)."""
    if _held.get("key") == key:
        _held["reused"] = True
        return _held["value"]
    release()
    with PeakMemory(device) as memory:
        value = load()
    _held.update(key=key, value=value, bytes=memory.peak_bytes, reused=False)
    return value


def reused_bytes() -> int:
    """What the held model's load took, if the last `get_or_load` reused it; else 0. A trial adds
    this to its own peak, so a reused model's weights still count."""
    return _held["bytes"] if _held.get("reused") else 0


def release() -> None:
    """Drop the held model (before loading another, or when a run ends)."""
    if _held:
        _held.clear()
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
