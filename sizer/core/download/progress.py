"""Download progress: bytes received, reported as Progress events with speed and ETA, and the
caller's cancel event checked as each chunk arrives."""

from __future__ import annotations

import threading
import time
from typing import Any

from sizer.core.events import Progress, Sink

STAGE = "download"


class DownloadCancelled(Exception):
    """The caller's cancel event was set; the file being fetched was discarded."""


def human_bytes(count: float) -> str:
    """Decimal units, as the Hub shows file sizes: "1.5 GB"."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class DownloadMeter:
    """Bytes of the whole download, reported as Progress events with speed and ETA at most once a second."""

    def __init__(self, total: int, sink: Sink, cancel: threading.Event | None, interval: float = 1.0):
        self.total, self.sink, self.cancel, self.interval = total, sink, cancel, interval
        self.done, self.started, self.last = 0, time.monotonic(), 0.0
        self.current = ""
        self.lock = threading.Lock()

    def add(self, count: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(self.current)
        with self.lock:
            self.done += count
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                self.emit(now)

    def emit(self, now: float | None = None) -> None:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left is not None else "?"
        detail = (f"{human_bytes(self.done)} of {human_bytes(self.total)}, {human_bytes(rate)}/s, "
                  f"ETA {eta} ({self.current})")
        self.sink(Progress(STAGE, self.done, self.total, detail))

    def bar_class(self) -> type:
        """A tqdm class for huggingface_hub that feeds this meter and prints nothing."""
        from huggingface_hub.utils import tqdm as hf_tqdm

        meter = self

        class _Bar(hf_tqdm):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                meter.add(int(n or 0))
                return None

        return _Bar
