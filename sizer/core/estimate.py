"""The estimator: what a model needs, where it fits on a machine, and how fast it would run there.

Fit levels, judged against FREE memory with a headroom rule (a model may use at most
HEADROOM x free bytes of a device, leaving the rest for fragmentation and other processes):
- "fits":     the whole inference peak fits one GPU (or, layer-split, several GPUs together);
- "split":    GPU(s) hold what they can, the remaining weights are offloaded to CPU RAM;
- "fits-cpu": no GPU can take part, but the CPU RAM holds it;
- "no":       none of the above.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from sizer.core.catalog import ModelEntry
from sizer.core.estimate_memory import (
    MemoryEstimate,
    TrainingEstimate,
    inference_memory,
    training_memory,
)
from sizer.core.estimate_experts import active_params, decode_read_bytes, expert_weight_bytes
from sizer.core.estimate_speed import (
    DECODE_EFFICIENCY,
    PCIE_GBS,
    PREFILL_EFFICIENCY,
    SpeedEstimate,
    speed_estimate,
)
from sizer.core.hardware import Device
from sizer.core.quant import Precision

HEADROOM = 0.9
LEVELS = ("fits", "split", "fits-cpu", "no")  # best first
TRAINING_MODES = ("full", "lora", "qlora")


@dataclass(frozen=True)
class DeviceFit:
    device: Device
    need_bytes: int
    usable_bytes: int

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.usable_bytes


@dataclass(frozen=True)
class FitReport:
    entry: ModelEntry
    precision: Precision
    context: int
    batch: int
    memory: dict[str, MemoryEstimate]  # device kind -> estimate
    devices: tuple[DeviceFit, ...]
    level: str
    where: str
    offloaded_bytes: int
    speed: SpeedEstimate | None
    training: tuple[tuple[TrainingEstimate, tuple[str, ...]], ...]  # estimate, devices it fits


def usable_bytes(device: Device) -> int:
    return int(device.free_bytes * HEADROOM)


def device_fits(memory: dict[str, MemoryEstimate], devices: Sequence[Device]) -> tuple[DeviceFit, ...]:
    return tuple(DeviceFit(d, memory[d.kind].total_bytes, usable_bytes(d)) for d in devices)


def _gpu_pool(gpu_fits: Sequence[DeviceFit], est: MemoryEstimate) -> int:
    """Weight bytes the GPUs can hold after each keeps its runtime overhead and the
    non-weight working set (KV cache + activations) is placed once."""
    room = sum(max(f.usable_bytes - est.overhead.bytes, 0) for f in gpu_fits)
    return max(room - est.kv_cache.bytes - est.activations.bytes, 0)


def choose_level(fits: Sequence[DeviceFit], memory: dict[str, MemoryEstimate]) -> tuple[str, str, int]:
    """(level, where, weight bytes offloaded to CPU)."""
    gpus = [f for f in fits if f.device.kind != "cpu"]
    cpus = [f for f in fits if f.device.kind == "cpu"]
    single = [f for f in gpus if f.fits]
    if single:
        best = max(single, key=lambda f: f.usable_bytes)
        return "fits", best.device.name, 0
    if gpus:
        est = memory[gpus[0].device.kind]
        pool = _gpu_pool(gpus, est)
        if len(gpus) > 1 and pool >= est.weights.bytes:
            return "fits", f"{len(gpus)} GPUs, layers split across them", 0
        rest = est.weights.bytes - pool
        if cpus and pool > 0 and rest <= cpus[0].usable_bytes:
            return "split", f"{len(gpus)} GPU(s) + CPU RAM ({rest / 1024**3:.1f} GiB offloaded)", rest
    if cpus and cpus[0].fits:
        return "fits-cpu", cpus[0].device.name, 0
    return "no", "", 0


def _speed(report_level: str, where: str, fits: Sequence[DeviceFit], est: dict[str, MemoryEstimate],
           entry: ModelEntry, precision: Precision, batch: int, offloaded: int) -> SpeedEstimate | None:
    if report_level == "no":
        return None
    kind = "cpu" if report_level == "fits-cpu" else next(f.device.kind for f in fits if f.device.kind != "cpu")
    device = next((f.device for f in fits if f.device.name == where), None) or next(
        f.device for f in fits if f.device.kind == kind
    )
    m = est[kind]
    read = decode_read_bytes(entry, m.weights.bytes, expert_weight_bytes(entry, precision))
    weights = _moe_step_bytes(read, m.weights.bytes, offloaded)
    speed = speed_estimate(device, active_params(entry), precision.compute, weights, m.kv_cache.bytes, batch, offloaded)
    if not entry.is_moe:
        return speed
    active = f" (active: the always-used weights and {entry.experts_per_token} of {entry.experts} experts per layer)"
    return dataclasses.replace(speed, prefill_formula=speed.prefill_formula + active, decode_formula=speed.decode_formula + active)


def _moe_step_bytes(read: int, weights: int, offloaded: int) -> int:
    """The weight figure for `speed_estimate` when a step reads `read` of `weights` bytes: the
    device reads its share of `read`, while offloaded modules cross PCIe whole (accelerate moves
    every expert of an offloaded layer)."""
    if read == weights or not weights:
        return weights
    return int(read * (1 - offloaded / weights)) + offloaded


def fit_report(
    entry: ModelEntry,
    precision: Precision,
    context: int,
    batch: int,
    devices: Sequence[Device],
    overhead_reserved: bool = False,
) -> FitReport:
    """Everything `sizer fit` prints, for one model on one machine.

    `overhead_reserved`: the GPUs' free figures already exclude the CUDA context (simulated profiles).
    """
    kinds = sorted({d.kind for d in devices} | {"cpu"})
    memory = {k: inference_memory(entry, precision, context, batch, k, overhead_reserved=overhead_reserved) for k in kinds}
    fits = device_fits(memory, devices)
    level, where, offloaded = choose_level(fits, memory)
    speed = _speed(level, where, fits, memory, entry, precision, batch, offloaded)
    training = []
    for mode in TRAINING_MODES:
        if mode == "full" and precision.kind != "float":
            continue
        t = training_memory(entry, precision, context, batch, mode)
        where_ok = tuple(f.device.name for f in fits if t.total_bytes + memory[f.device.kind].overhead.bytes <= f.usable_bytes)
        training.append((t, where_ok))
    return FitReport(entry, precision, context, batch, memory, fits, level, where, offloaded, speed, tuple(training))


def assumptions() -> list[str]:
    return [
        f"fit: at most {HEADROOM:.0%} of a device's FREE memory is used",
        f"speed: prefill = FLOP/s x {PREFILL_EFFICIENCY} / (2 x params); decode = bandwidth x "
        f"{DECODE_EFFICIENCY} / bytes read per token; offloaded weights cross PCIe at {PCIE_GBS:.0f} GB/s",
        "activations: one forward pass over the whole context with logits for every position (sdpa attention)",
        "training: AdamW, mixed precision keeps fp32 master weights; gradient checkpointing off; LoRA rank 16 on all linear layers",
    ]


def _term(t: Any) -> dict[str, Any]:
    return {"bytes": t.bytes, "formula": t.formula}


def memory_to_dict(m: MemoryEstimate) -> dict[str, Any]:
    return {
        **{t.name.replace(" ", "_"): _term(t) for t in m.terms},
        "peak_bytes": m.peak_bytes,
        "total_bytes": m.total_bytes,
        "notes": list(m.notes),
    }


def report_to_dict(r: FitReport) -> dict[str, Any]:
    speed = None
    if r.speed:
        speed = {
            "prefill_tokens_per_s": r.speed.prefill_tps,
            "prefill_formula": r.speed.prefill_formula,
            "decode_tokens_per_s": r.speed.decode_tps,
            "decode_formula": r.speed.decode_formula,
        }
    return {
        "model": r.entry.id,
        "params": r.entry.params,
        "dtype": r.precision.name,
        "compute_dtype": r.precision.compute,
        "context": r.context,
        "batch": r.batch,
        "fit": {"level": r.level, "where": r.where, "offloaded_bytes": r.offloaded_bytes},
        "memory": {kind: memory_to_dict(m) for kind, m in r.memory.items()},
        "devices": [
            {"name": f.device.name, "kind": f.device.kind, "free_bytes": f.device.free_bytes,
             "usable_bytes": f.usable_bytes, "need_bytes": f.need_bytes, "fits": f.fits}
            for f in r.devices
        ],
        "speed": speed,
        "training": {
            t.mode: {"total_bytes": t.total_bytes, "fits_on": list(ok), **{x.name.replace(" ", "_"): _term(x) for x in t.terms}}
            for t, ok in r.training
        },
        "assumptions": assumptions(),
    }
