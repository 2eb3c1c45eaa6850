"""Speed: prefill is compute bound, decode is memory-bandwidth bound.

prefill tokens/s ~ FLOP/s x PREFILL_EFFICIENCY / (2 x params)
decode tokens/s  ~ batch x bandwidth x DECODE_EFFICIENCY / (weight bytes + KV bytes read per step)

The efficiencies are the share of the measured (or datasheet) peak that a transformers forward pass
reaches in practice: large matmuls reach well over half of peak, but attention, norms and kernel
launches do not; a decode step streams every weight once and reaches most, not all, of the copy
bandwidth. Attention FLOPs (which grow with context) are left out of prefill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sizer.core.hardware.devices import Device

PREFILL_EFFICIENCY = 0.5
DECODE_EFFICIENCY = 0.7
PCIE_GBS = 25.0  # PCIe 4.0 x16, usable: offloaded layers are streamed to the GPU at this rate


@dataclass(frozen=True)
class SpeedEstimate:
    prefill_tps: float | None
    decode_tps: float | None
    prefill_formula: str
    decode_formula: str


def device_flops(device: Device, compute: str) -> float | None:
    """The device's FLOP/s for `compute` ("fp32", "bf16", "fp16"); fp16 falls back to bf16."""
    for key in (compute, "bf16" if compute == "fp16" else compute, "fp32"):
        if device.flops.get(key):
            return float(device.flops[key])
    return None


def prefill_speed(params: int, flops: float | None) -> tuple[float | None, str]:
    if not flops:
        return None, "unknown: no FLOP/s figure for this device (run `sizer hw`)"
    tps = flops * PREFILL_EFFICIENCY / (2 * params)
    return tps, f"{flops / 1e12:.2f} TFLOP/s x {PREFILL_EFFICIENCY} / (2 x {params:,} params)"


def decode_speed(
    read_bytes: int, bandwidth_gbs: float | None, batch: int = 1, offloaded_bytes: int = 0
) -> tuple[float | None, str]:
    """Tokens/s when each step reads `read_bytes` from the device (and `offloaded_bytes` over PCIe)."""
    if not bandwidth_gbs:
        return None, "unknown: no bandwidth figure for this device (run `sizer hw`)"
    seconds = read_bytes / (bandwidth_gbs * 1e9 * DECODE_EFFICIENCY)
    how = f"{batch} x {bandwidth_gbs:.0f} GB/s x {DECODE_EFFICIENCY} / {read_bytes / 1e9:.2f} GB per step"
    if offloaded_bytes:
        seconds += offloaded_bytes / (PCIE_GBS * 1e9)
        how += f" + {offloaded_bytes / 1e9:.2f} GB offloaded over PCIe at {PCIE_GBS:.0f} GB/s"
    return batch / seconds, how


def speed_estimate(
    device: Device,
    params: int,
    compute: str,
    weight_bytes: int,
    kv_bytes: int,
    batch: int = 1,
    offloaded_bytes: int = 0,
) -> SpeedEstimate:
    """Prefill and decode tokens/s of a model whose weights (minus `offloaded_bytes`) sit on `device`."""
    prefill, prefill_how = prefill_speed(params, device_flops(device, compute))
    on_device = max(weight_bytes - offloaded_bytes, 0) + kv_bytes
    decode, decode_how = decode_speed(on_device, device.bandwidth_gbs, batch, offloaded_bytes)
    return SpeedEstimate(prefill, decode, prefill_how, decode_how)


def placed_speed(
    parts: Sequence[tuple[Device, int, int]],
    params: int,
    compute: str,
    batch: int = 1,
    offloaded_bytes: int = 0,
    parallel: bool = False,
) -> SpeedEstimate:
    """Speed of a model spread over devices: `parts` = (device, weight bytes it reads per token,
    KV bytes it reads per token). Layer splits run the devices one after another, so their times
    add up (`parallel=False`); tensor-parallel ranks run at once, so the slowest rank sets the pace.
    Each device reads its own share at its own bandwidth; prefill splits the parameters the same way.
    """
    parts = [p for p in parts if p[1] + p[2] > 0]
    total_w = sum(p[1] for p in parts) or 1
    decode_t, prefill_t, decode_how, prefill_how = [], [], [], []
    for device, w, kv in parts:
        bw, flops = device.bandwidth_gbs, device_flops(device, compute)
        decode_t.append((w + kv) / (bw * 1e9 * DECODE_EFFICIENCY) if bw else None)
        decode_how.append(f"{(w + kv) / 1e9:.2f} GB / ({bw or 0:.0f} GB/s x {DECODE_EFFICIENCY}) on {device.name}")
        share = params * w / total_w
        prefill_t.append(2 * share / (flops * PREFILL_EFFICIENCY) if flops else None)
        prefill_how.append(f"2 x {share / 1e9:.2f}B params / ({(flops or 0) / 1e12:.1f} TFLOP/s x {PREFILL_EFFICIENCY}) on {device.name}")
    join = " max " if parallel else " + "

    def combine(times: list[float | None], how: list[str], extra: float = 0.0, extra_how: str = "") -> tuple[float | None, str]:
        if not times or any(t is None for t in times):
            return None, "unknown: a device has no bandwidth or FLOP/s figure (run `sizer hw`)"
        seconds = (max(times) if parallel else sum(times)) + extra
        return seconds, join.join(how) + extra_how

    extra = offloaded_bytes / (PCIE_GBS * 1e9) if offloaded_bytes else 0.0
    extra_how = f" + {offloaded_bytes / 1e9:.2f} GB offloaded over PCIe at {PCIE_GBS:.0f} GB/s" if offloaded_bytes else ""
    d_s, d_how = combine(decode_t, decode_how, extra, extra_how)
    p_s, p_how = combine(prefill_t, prefill_how)
    decode = batch / d_s if d_s else None
    prefill = 1 / p_s if p_s else None
    return SpeedEstimate(prefill, decode, f"1 token / ({p_how})" if prefill else p_how,
                         f"{batch} x 1 token / ({d_how})" if decode else d_how)
