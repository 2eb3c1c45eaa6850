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

from sizer.core.hardware import Device

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
