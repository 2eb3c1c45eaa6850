"""Loading a transformers model the way the plan places it: over several GPUs with accelerate's
"balanced" device_map, each GPU capped (`max_memory`) at what the plan leaves it for weights,
with CPU RAM only when the plan offloads there. A model the plan cannot place is refused before
any weight is read, never loaded onto one device to run out of memory there.

Source of the kwargs: transformers' `from_pretrained(device_map=..., max_memory=...)`, which hands
both to accelerate's `infer_auto_device_map` (max_memory: device index or "cpu" -> bytes).
"""

from __future__ import annotations

from typing import Any

from sizer.core.errors import SizerError

GIB = 2**30


def device_map_kwargs(report: Any, profile: Any) -> dict[str, Any] | None:
    """`from_pretrained` kwargs for a transformers plan (`FitReport`) on `profile`: None when one
    device holds the whole model (the trial then moves it there as usual).

    Each GPU's cap is its usable bytes (free x HEADROOM) less what the plan keeps on it beside
    the weights (KV cache, activations, runtime overhead), so accelerate never fills a card the
    forward pass still needs; the CPU's cap is its usable RAM, present only when the plan offloads."""
    if report.engine != "transformers":
        raise ValueError(f"device_map_kwargs is for transformers plans, not {report.engine}")
    if report.level == "no":
        raise SizerError(f"{report.entry.id}: {unplaceable_reason(report)}")
    gpu_shares = [s for s in report.shares if s.device.kind not in ("cpu", "mps")]
    if len(gpu_shares) <= 1 and not report.offloaded_bytes:
        return None
    indices = _gpu_indices(report, profile)
    max_memory: dict[Any, int] = {}
    for share in gpu_shares:
        beside = share.need_bytes - share.weight_bytes
        max_memory[indices[id(share.device)]] = max(share.usable_bytes - beside, 0)
    if report.offloaded_bytes:
        cpu = next(f for f in report.devices if f.device.kind == "cpu")
        max_memory["cpu"] = cpu.usable_bytes
    return {"device_map": "balanced", "max_memory": max_memory}


def _gpu_indices(report: Any, profile: Any) -> dict[int, int]:
    """id(Device) -> the GPU's torch index: the report's devices are `profile.devices()`, usable
    GPUs in index order (two identical cards compare equal, so match by identity)."""
    gpus = [g for g in profile.gpus if g.usable]
    devices = [f.device for f in report.devices if f.device.kind != "cpu"]
    return {id(d): g.index for d, g in zip(devices, gpus)}


def unplaceable_reason(report: Any) -> str:
    """Why the plan cannot place the model, with the bytes: needed vs what the devices offer."""
    need = max((m.total_bytes for m in report.memory.values()), default=0)
    gpus = [f for f in report.devices if f.device.kind != "cpu"]
    cpus = [f for f in report.devices if f.device.kind == "cpu"]
    offer = []
    if gpus:
        what = f"{len(gpus)} GPUs" if len(gpus) > 1 else gpus[0].device.name
        offer.append(f"{what} {sum(f.usable_bytes for f in gpus) / GIB:.1f} GiB usable")
    if cpus:
        offer.append(f"RAM {cpus[0].usable_bytes / GIB:.1f} GiB usable")
    return (f"cannot be placed: needs {need / GIB:.1f} GiB ({report.precision.name}, {report.engine}), "
            f"this machine has {' + '.join(offer) or 'no device'}")


def planned_placement(model: str, dtype: str, catalog: Any = None, profile: Any = None) -> dict[str, Any] | None:
    """The device_map kwargs for a trial of `model` in `dtype` on this machine's GPUs: None with
    fewer than two CUDA GPUs or when one holds the model; SizerError when nothing can hold it."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    from sizer.core.catalog.model_catalog import load_catalog
    from sizer.core.hardware.profile import detect
    from sizer.core.catalog.lookup import resolve_model
    from sizer.core.estimate.planning import plan_estimate

    entry = resolve_model(model, catalog or load_catalog())
    profile = profile or detect()
    return device_map_kwargs(plan_estimate(entry, profile, "transformers", dtype), profile)
