"""Microbenchmarks: measured memory bandwidth and matmul throughput of one torch device.

What each figure measures:
- bandwidth_gbs: `dst.copy_(src)` of one large float32 tensor (256 MiB on CPU, 1 GiB on a GPU,
  at most an eighth of free memory), counting bytes read plus bytes written, best of several
  copies. It is the streaming rate a decode step sees when it reads the weights once.
- flops["fp32"], flops["bf16"]: square `torch.mm` of the first size n = 256 * 2^k whose
  one product takes at least an eighth of a sample (capped), repeated to fill a sample (about 0.2 s), best
  of three samples; 2*n^3 FLOP per product. On CPU it runs with torch's current thread count
  (`torch.get_num_threads()`), which is recorded. On a GPU every sample is synchronised.

torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

_CPU_COPY_BYTES = 256 * 2**20
_GPU_COPY_BYTES = 2**30
_MAX_N = {"cpu": 4096, "mps": 8192}  # others (GPUs): 16384
_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


@dataclass(frozen=True)
class BenchResult:
    device: str  # torch device string: "cpu", "cuda:0", "mps"
    bandwidth_gbs: float
    flops: dict[str, float]  # "fp32"/"bf16" -> FLOP/s
    seconds: float  # wall time of the whole measurement
    details: dict[str, Any] = field(default_factory=dict)  # sizes, threads


def measure(device: str = "cpu", sample_s: float = 0.2, free_bytes: int | None = None) -> BenchResult:
    """Bandwidth and fp32/bf16 matmul FLOP/s of `device`; takes about 8 * sample_s + the copies."""
    import torch

    start = time.perf_counter()
    kind = torch.device(device).type
    copy_bytes = _CPU_COPY_BYTES if kind == "cpu" else _GPU_COPY_BYTES
    if free_bytes:
        copy_bytes = max(16 * 2**20, min(copy_bytes, free_bytes // 8))
    bandwidth = copy_bandwidth(device, copy_bytes)
    flops, sizes = {}, {}
    for name, dtype in _DTYPES.items():
        flops[name], sizes[name] = matmul_flops(device, getattr(torch, dtype), sample_s)
    details = {"copy_bytes": copy_bytes, "matmul_n": sizes, "sample_s": sample_s}
    if kind == "cpu":
        details["threads"] = torch.get_num_threads()
    return BenchResult(device, bandwidth, flops, time.perf_counter() - start, details)


def copy_bandwidth(device: str, nbytes: int, repeats: int = 5) -> float:
    """GB/s of a tensor copy on `device`, bytes read + written, best of `repeats`."""
    import torch

    sync = _synchronizer(device)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults and allocator work are not bandwidth
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        dst.copy_(src)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * 4 / best / 1e9


def matmul_flops(device: str, dtype: Any, sample_s: float = 0.2, samples: int = 3) -> tuple[float, int]:
    """(FLOP/s, n) of square matmuls in `dtype` on `device`, best of `samples` timed samples."""
    import torch

    sync = _synchronizer(device)
    n, one = _calibrate(device, dtype, sample_s / 8, sync)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    reps = max(1, round(sample_s / max(one, 1e-6)))
    best = float("inf")
    for _ in range(samples):
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * reps / best, n


def _calibrate(device: str, dtype: Any, target_s: float, sync: Callable[[], None]) -> tuple[int, float]:
    """Grow n from 256 until one product takes `target_s` (or n hits the cap); return n and its time."""
    import torch

    cap = _MAX_N.get(torch.device(device).type, 16384)
    n, elapsed = 256, 0.0
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        torch.mm(a, a)  # warm-up: kernel selection, library initialisation
        sync()
        t0 = time.perf_counter()
        torch.mm(a, a)
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s or n >= cap:
            return n, elapsed
        n *= 2


def _synchronizer(device: str) -> Callable[[], None]:
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if kind == "mps":
        return torch.mps.synchronize
    return lambda: None
