"""Hardware profile: what this machine (or a simulated one) has, and how fast it is.

INTERFACE (used by the estimator and the front ends; keep these names stable):

    profile = detect()                      # this machine, measured figures from the cache
    profile = simulated("1x H100 80GB")     # a named or file-described machine
    profile.devices() -> list[Device]       # each place a model can live: GPUs, then "cpu"

    Device(name, kind, total_bytes, free_bytes, bandwidth_gbs, flops)  # flops: dtype -> FLOP/s
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Device:
    """One place a model can live. kind: "cuda", "mps", "rocm" or "cpu"."""

    name: str
    kind: str
    total_bytes: int
    free_bytes: int
    bandwidth_gbs: float | None = None
    flops: dict[str, float] = field(default_factory=dict)  # "fp32"/"bf16"/"fp16" -> FLOP/s
