"""Keep the last loaded model, so a walk that tries several strategies on one model loads it once.

At most one model is held (memory matters more than load time). When a model is reused, the
memory its load took (measured then) is reported, so a trial's peak still counts the weights.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from typing import Any, Callable, Hashable, Iterator

from sizer.core.trials.measure import PeakMemory

_held: dict[str, Any] = {}
_local = threading.local()


@contextlib.contextmanager
def announcing(before_load: Callable[[], None]) -> Iterator[None]:
    """Call `before_load()` when a `get_or_load` on this thread, inside, really loads (not when it
    reuses the held model): a trial says "loading MODEL" only when it does."""
    previous = getattr(_local, "before_load", None)
    _local.before_load = before_load
    try:
        yield
    finally:
        _local.before_load = previous


def get_or_load(key: Hashable, device: str, load: Callable[[], Any]) -> Any:
    """The held model if it is `key`, else `load()` (which replaces it)."""
    if _held.get("key") == key:
        _held["reused"] = True
        return _held["value"]
    release()
    _announce()
    with PeakMemory(device) as memory:
        value = load()
    _held.update(key=key, value=value, bytes=memory.peak_bytes, reused=False)
    return value


def fresh(load: Callable[[], Any]) -> Any:
    """`load()` a model that is not to be shared (it will be trained), announced like any load."""
    _announce()
    return load()


def _announce() -> None:
    announce = getattr(_local, "before_load", None)
    if announce is not None:
        announce()


def reused_bytes() -> int:
    """What the held model's load took, if the last `get_or_load` reused it; else 0. A trial adds
    this to its own peak, so a reused model's weights still count."""
    return _held["bytes"] if _held.get("reused") else 0


def holding() -> bool:
    """Whether a model is held now."""
    return bool(_held)


def release() -> None:
    """Drop the held model (before loading another, or when a run ends)."""
    if _held:
        _held.clear()
        gc.collect()
        torch = sys.modules.get("torch")  # a model that never imported torch left no CUDA cache
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
