"""Measurements taken during a trial: peak memory and per-example latency."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

import psutil


class PeakMemory:
    """Peak memory of the work inside the block, above what the process held when it began.

    CUDA: `torch.cuda.max_memory_allocated` after a reset. CPU: the process's resident-set
    high-water mark (Linux VmHWM, reset through /proc/self/clear_refs where the kernel allows,
    else the psutil peak), minus the resident set at the start.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_bytes = 0
        self.method = ""

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated"
        else:
            _reset_rss_peak()
            self._start = psutil.Process().memory_info().rss
            self.method = "RSS high-water mark"
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_bytes = max(0, self.current_peak() - self._start)

    def current_peak(self) -> int:
        if self.device.startswith("cuda"):
            import torch

            return int(torch.cuda.max_memory_allocated())
        return _rss_peak()


def _reset_rss_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_peak() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    info = psutil.Process().memory_info()
    return int(getattr(info, "peak_wset", 0) or info.rss)


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) of `values`; (0, 0) when empty."""
    if not values:
        return 0.0, 0.0
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]
