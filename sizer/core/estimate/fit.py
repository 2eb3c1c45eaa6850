"""The estimator: what a model needs, where it fits on a machine, and how fast it would run there,
for the engine that serves it: transformers (here), llama.cpp (`estimate_llamacpp`) or vLLM
(`estimate_vllm`). Callers go through `sizer.core.estimate.planning.plan_estimate`, which picks the engine,
precision and context.

Fit levels, judged against FREE memory with a headroom rule (a model may use at most
HEADROOM x free bytes of a device, leaving the rest for fragmentation and other processes):
- "fits":     the whole inference peak fits one GPU (or, split, several GPUs together);
- "split":    GPU(s) hold what they can, the remaining weights are offloaded to CPU RAM;
- "fits-cpu": no GPU can take part, but the CPU RAM holds it;
- "no":       none of the above.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.estimate.memory import (
    MemoryEstimate,
    TrainingEstimate,
    inference_memory,
    training_memory,
)
from sizer.core.estimate import llamacpp
from sizer.core.estimate import vllm
from sizer.core.errors import SizerError
from sizer.core.estimate.experts import active_params, decode_read_bytes, expert_weight_bytes
from sizer.core.estimate.llamacpp import Placed
from sizer.core.estimate.speed import (
    DECODE_EFFICIENCY,
    PCIE_GBS,
    PREFILL_EFFICIENCY,
    SpeedEstimate,
    placed_speed,
)
from sizer.core.hardware.devices import Device
from sizer.core.quant.precision import Precision, parse_precision

HEADROOM = 0.9
LEVELS = ("fits", "split", "fits-cpu", "no")  # best first
ENGINES = ("transformers", "llama.cpp", "vllm")
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
    memory: dict[str, MemoryEstimate]  # device kind -> estimate of the whole model on one such device
    devices: tuple[DeviceFit, ...]
    level: str
    where: str
    offloaded_bytes: int
    speed: SpeedEstimate | None
    training: tuple[tuple[TrainingEstimate, tuple[str, ...]], ...]  # estimate, devices it fits
    engine: str = "transformers"
    shares: tuple[Placed, ...] = ()   # what each device used holds
    serving: dict[str, Any] | None = None  # vLLM: tensor parallel size, KV pool, concurrency
    kv_cache: str = "f16"
    notes: tuple[str, ...] = ()


def usable_bytes(device: Device) -> int:
    return int(device.free_bytes * HEADROOM)


def device_fits(memory: dict[str, MemoryEstimate], devices: Sequence[Device]) -> tuple[DeviceFit, ...]:
    return tuple(DeviceFit(d, memory[d.kind].total_bytes, usable_bytes(d)) for d in devices)


def _balanced_shares(gpus: Sequence[DeviceFit], est: MemoryEstimate) -> list[int]:
    """Weight bytes per GPU as accelerate's "balanced" device_map deals them: equal shares, a card
    that cannot hold its share keeps what it can and the others take the rest (water-filling).
    Each card also keeps the runtime overhead, one forward pass's activations and the KV cache of
    its layers. The result does not depend on the order the GPUs are named in."""
    w, kv = est.weights.bytes, est.kv_cache.bytes
    caps = [max(f.usable_bytes - est.overhead.bytes - est.activations.bytes, 0) / (1 + kv / max(w, 1)) for f in gpus]
    shares = [0.0] * len(gpus)
    left, open_ = float(w), set(range(len(gpus)))
    while left > 1 and open_:
        each = left / len(open_)
        for j in sorted(open_):
            take = min(each, caps[j] - shares[j])
            shares[j] += take
            left -= take
            if caps[j] - shares[j] <= 1:
                open_.discard(j)
    return [int(x) for x in shares]


def _gpu_share(fit: DeviceFit, weights: int, est: MemoryEstimate, layers: int) -> Placed:
    kv = int(est.kv_cache.bytes * weights / max(est.weights.bytes, 1))
    need = weights + kv + est.activations.bytes + est.overhead.bytes
    return Placed(fit.device, round(layers * weights / max(est.weights.bytes, 1)), False,
                  weights, weights, kv, need, fit.usable_bytes)


def choose_level(fits: Sequence[DeviceFit], memory: dict[str, MemoryEstimate],
                 layers: int = 0) -> tuple[str, str, int, tuple[Placed, ...]]:
    """transformers: (level, where, weight bytes offloaded to CPU, per-device shares).

    Apple unified memory is one pool: the model is on the GPU or on the CPU, never offloaded."""
    gpus = [f for f in fits if f.device.kind != "cpu"]
    cpus = [f for f in fits if f.device.kind == "cpu"]
    unified = any(f.device.kind == "mps" for f in gpus)
    single = [f for f in gpus if f.fits]
    if single:
        best = max(single, key=lambda f: (f.usable_bytes, f.device.name))
        est = memory[best.device.kind]
        return "fits", best.device.name, 0, (_whole(best, est),)
    if gpus and not unified:
        est = memory[gpus[0].device.kind]
        shares = _balanced_shares(gpus, est)
        placed = tuple(_gpu_share(f, w, est, layers) for f, w in zip(gpus, shares) if w > 0)
        rest = est.weights.bytes - sum(shares)
        if len(gpus) > 1 and rest <= 1:
            return "fits", f"{len(gpus)} GPUs, balanced device_map", 0, placed
        if cpus and placed and rest <= cpus[0].usable_bytes:
            return "split", f"{len(placed)} GPU(s) + CPU RAM ({rest / 1024**3:.1f} GiB offloaded)", rest, placed
    if cpus and cpus[0].fits:
        return "fits-cpu", cpus[0].device.name, 0, (_whole(cpus[0], memory["cpu"]),)
    return "no", "", 0, ()


def _whole(fit: DeviceFit, est: MemoryEstimate) -> Placed:
    return Placed(fit.device, 0, True, est.weights.bytes, est.weights.bytes, est.kv_cache.bytes,
                  fit.need_bytes, fit.usable_bytes)


def _speed(entry: ModelEntry, precision: Precision, shares: Sequence[Placed], batch: int, offloaded: int = 0,
           parallel: bool = False, packed_gguf: bool = False) -> SpeedEstimate | None:
    """Speed from each device's share (`packed_gguf`: llama.cpp holds GGUF types packed).

    A mixture-of-experts model's decode step reads the always-used weights and only `experts_per_token` of every MoE layer's experts, so each share's
    bytes read shrink by that ratio and prefill costs 2 FLOPs per active parameter; offloaded
    modules cross PCIe whole (accelerate moves every expert of an offloaded layer)."""
    if not shares:
        return None
    held = sum(s.read_bytes for s in shares) + offloaded
    read = decode_read_bytes(entry, held, expert_weight_bytes(entry, precision, packed_gguf=packed_gguf))
    ratio = read / held if held else 1.0
    parts = [(s.device, int(s.read_bytes * ratio), s.kv_bytes) for s in shares]
    speed = placed_speed(parts, active_params(entry), precision.compute, batch, offloaded, parallel)
    if not entry.is_moe:
        return speed
    active = f" (active: the always-used weights and {entry.experts_per_token} of {entry.experts} experts per layer)"
    return dataclasses.replace(speed, prefill_formula=speed.prefill_formula + active,
                               decode_formula=speed.decode_formula + active)


def fit_report(
    entry: ModelEntry,
    precision: Precision,
    context: int,
    batch: int,
    devices: Sequence[Device],
    overhead_reserved: bool = False,
    engine: str = "transformers",
    kv_cache: str = "f16",
    gpu_layers: int | None = None,
) -> FitReport:
    """Everything `sizer fit` prints, for one model on one machine, served by `engine`.

    `overhead_reserved`: the GPUs' free figures already exclude the CUDA context (simulated profiles).
    """
    if engine == "llama.cpp":
        return _llamacpp_report(entry, precision, context, batch, devices, overhead_reserved, kv_cache, gpu_layers)
    if engine == "vllm":
        return _vllm_report(entry, precision, context, batch, devices, overhead_reserved)
    kinds = sorted({d.kind for d in devices} | {"cpu"})
    memory = {k: inference_memory(entry, precision, context, batch, k, overhead_reserved=overhead_reserved) for k in kinds}
    fits = device_fits(memory, devices)
    level, where, offloaded, shares = choose_level(fits, memory, entry.layers)
    speed = _speed(entry, precision, shares, batch, offloaded)
    return FitReport(entry, precision, context, batch, memory, fits, level, where, offloaded, speed,
                     _training(entry, precision, context, batch, fits, memory), shares=shares)


def _training(entry: ModelEntry, precision: Precision, context: int, batch: int, fits: Sequence[DeviceFit],
              memory: dict[str, MemoryEstimate]) -> tuple[tuple[TrainingEstimate, tuple[str, ...]], ...]:
    training = []
    base = precision if precision.kind in ("float", "bnb") else parse_precision("bf16")
    for mode in TRAINING_MODES:
        if mode == "full" and base.kind != "float":
            continue
        t = training_memory(entry, base, context, batch, mode)
        where_ok = tuple(f.device.name for f in fits
                         if t.total_bytes + memory.get(f.device.kind, memory["cpu"]).overhead.bytes <= f.usable_bytes)
        training.append((t, where_ok))
    return tuple(training)


def _llamacpp_report(entry: ModelEntry, precision: Precision, context: int, batch: int, devices: Sequence[Device],
                     overhead_reserved: bool, kv_cache: str, gpu_layers: int | None) -> FitReport:
    if precision.kind not in ("gguf", "float"):
        raise SizerError(f"--engine llama.cpp runs GGUF files: use --dtype with a llama.cpp file type "
                         f"(Q4_K_M, Q8_0, ...), not {precision.name}")
    parts = llamacpp.llamacpp_parts(entry, precision, context, batch, kv_cache)
    kinds = sorted({d.kind for d in devices} | {"cpu"})
    memory = {k: llamacpp.memory_on(parts, entry, precision, context, batch, k, overhead_reserved) for k in kinds}
    fits = device_fits(memory, devices)
    placed = llamacpp.place(parts, devices, usable_bytes, gpu_layers, overhead_reserved)
    speed = _speed(entry, precision, placed.shares, batch, packed_gguf=True) if placed.level != "no" else None
    notes = []
    if kv_cache != "f16":
        notes.append(f"a {kv_cache} V cache needs flash attention (llama.cpp -fa on)")
    return FitReport(entry, precision, context, batch, memory, fits, placed.level, placed.where, 0, speed,
                     _training(entry, precision, context, batch, fits, memory), engine="llama.cpp",
                     shares=placed.shares, kv_cache=kv_cache, notes=tuple(notes))


def _vllm_report(entry: ModelEntry, precision: Precision, context: int, batch: int, devices: Sequence[Device],
                 overhead_reserved: bool) -> FitReport:
    plan = vllm.plan(entry, precision, context, devices, overhead_reserved)
    cpu_memory = inference_memory(entry, precision, context, batch, "cpu")
    if plan is None:
        fits = device_fits({"cpu": cpu_memory, **{d.kind: cpu_memory for d in devices}}, devices)
        return FitReport(entry, precision, context, batch, {"cpu": cpu_memory}, fits, "no",
                         "vLLM needs CUDA GPUs", 0, None, (), engine="vllm",
                         notes=("vLLM serves from CUDA (or ROCm) GPUs; this machine has none",))
    m = plan.memory
    memory = {m.device_kind: m}
    fits = tuple(DeviceFit(d, plan.budget_bytes, d.free_bytes) for d in plan.gpus[-plan.tp:])
    shares = tuple(Placed(d, entry.layers, True, m.weights.bytes, m.weights.bytes,
                          int(plan.kv_per_token * context), plan.budget_bytes, d.free_bytes) for d in plan.gpus[-plan.tp:])
    level = "fits" if plan.fits else "no"
    where = f"tensor parallel {plan.tp} x {plan.gpus[-1].name}" if plan.fits else plan.reason
    speed = _speed(entry, precision, shares, batch, parallel=True) if plan.fits else None
    serving = {"tensor_parallel_size": plan.tp, "gpu_memory_utilization": vllm.GPU_MEMORY_UTILIZATION,
               "kv_cache_tokens": plan.pool_tokens, "kv_cache_bytes_per_gpu": m.kv_cache.bytes,
               "max_concurrency": plan.concurrency, "max_single_context": plan.max_context}
    return FitReport(entry, precision, context, batch, memory, fits, level, where, 0, speed, (), engine="vllm",
                     shares=shares, serving=serving)


def assumptions(engine: str = "transformers") -> list[str]:
    out = [
        f"fit: at most {HEADROOM:.0%} of a device's FREE memory is used",
        f"speed: prefill = FLOP/s x {PREFILL_EFFICIENCY} / (2 x params); decode = bandwidth x "
        f"{DECODE_EFFICIENCY} / bytes read per token, each device reading its own share at its own bandwidth",
    ]
    if engine == "transformers":
        out += [
            f"transformers: several GPUs share the weights as accelerate's balanced device_map does; "
            f"offloaded weights cross PCIe at {PCIE_GBS:.0f} GB/s",
            "activations: one forward pass over the whole context with logits for every position (sdpa attention)",
        ]
    elif engine == "llama.cpp":
        out.append("llama.cpp: GGUF tensors typed as llama-quantize does; flash attention on; n_ubatch 512; "
                   "layers on one GPU when they fit, else split by free memory, the rest on the CPU")
    else:
        out.append(f"vLLM: gpu_memory_utilization {vllm.GPU_MEMORY_UTILIZATION} of total memory; profiling batch "
                   f"{vllm.MAX_NUM_BATCHED_TOKENS} tokens; KV blocks of {vllm.BLOCK_TOKENS} tokens")
    out.append("training: AdamW, mixed precision keeps fp32 master weights; gradient checkpointing off; "
               "LoRA rank 16 on all linear layers")
    return out


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
        "engine": r.engine,
        "kv_cache": r.kv_cache,
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
        "placement": [
            {"device": p.device.name, "kind": p.device.kind, "layers": p.layers, "output": p.output,
             "weight_bytes": p.weight_bytes, "kv_bytes": p.kv_bytes, "need_bytes": p.need_bytes,
             "usable_bytes": p.usable_bytes}
            for p in r.shares
        ],
        "serving": r.serving,
        "notes": list(r.notes),
        "speed": speed,
        "training": {
            t.mode: {"total_bytes": t.total_bytes, "fits_on": list(ok), **{x.name.replace(" ", "_"): _term(x) for x in t.terms}}
            for t, ok in r.training
        },
        "assumptions": assumptions(r.engine),
    }
