"""The hardware profile's data: each device a model can live on (`Device`), the CPU and GPUs as
detected or simulated (`CPUInfo`, `GPUInfo`) with their speed figures (`Figures`), and the whole
machine (`HardwareProfile`), as sizer.core.hardware.profile builds them. Sizes in bytes,
bandwidth in GB/s, compute in FLOP/s."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Device:
    """One place a model can live. kind: "cuda", "mps", "rocm" or "cpu"."""

    name: str
    kind: str
    total_bytes: int
    free_bytes: int
    bandwidth_gbs: float | None = None
    flops: dict[str, float] = field(default_factory=dict)  # "fp32"/"bf16"/"fp16" -> FLOP/s


@dataclass(frozen=True)
class Figures:
    """Speed of one device and where the numbers come from."""

    bandwidth_gbs: float | None = None
    flops: dict[str, float] = field(default_factory=dict)  # dtype -> FLOP/s
    source: str = "none"  # "measured", "datasheet", "given" (profile file), "assumed" or "none"
    what: str = ""  # how it was obtained (benchmark settings, datasheet name, assumption)


@dataclass(frozen=True)
class CPUInfo:
    model: str
    physical_cores: int
    logical_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    threads: int | None = None  # torch threads the figures were measured with
    figures: Figures = Figures()
    ram_source: str = ""  # detected machines: whose RAM figure applies (the host's or a cgroup limit)


@dataclass(frozen=True)
class GPUInfo:
    index: int
    name: str
    kind: str  # "cuda", "rocm" or "mps"
    total_bytes: int
    free_bytes: int
    compute_capability: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None  # CUDA (or HIP) runtime torch was built with
    cuda_driver_version: str | None = None  # highest CUDA version the driver supports (NVML)
    usable: bool = True  # False: the driver sees it but this torch build cannot use it
    uuid: str | None = None  # NVML's; matches torch's device to NVML's; not in to_dict()
    figures: Figures = Figures()
    datasheet: Figures | None = None  # the table's figures for this model, for comparison


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    simulated: bool
    cpu: CPUInfo
    gpus: tuple[GPUInfo, ...] = ()
    disk_path: str | None = None
    disk_free_bytes: int | None = None
    unified_memory: bool = False
    torch_version: str | None = None
    fingerprint: str | None = None
    measured_at: str | None = None
    notes: tuple[str, ...] = ()

    def devices(self) -> list[Device]:
        """Usable GPUs in index order, then the CPU (free = available RAM)."""
        out = [_device(g.name, g.kind, g.total_bytes, g.free_bytes, g.figures) for g in self.gpus if g.usable]
        cpu = self.cpu
        out.append(_device(cpu.model, "cpu", cpu.ram_total_bytes, cpu.ram_available_bytes, cpu.figures))
        return out

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["gpus"], data["notes"] = list(data["gpus"]), list(data["notes"])
        for gpu in data["gpus"]:
            gpu.pop("uuid")  # a hardware serial number: kept out of reports
        data["devices"] = [dataclasses.asdict(d) for d in self.devices()]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareProfile:
        cpu = dict(data["cpu"], figures=Figures(**data["cpu"]["figures"]))
        gpus = tuple(_gpu_from_dict(g) for g in data.get("gpus", ()))
        rest = {k: v for k, v in data.items() if k not in ("cpu", "gpus", "devices")}
        rest["notes"] = tuple(rest.get("notes", ()))
        return cls(cpu=CPUInfo(**cpu), gpus=gpus, **rest)


def _device(name: str, kind: str, total: int, free: int, figures: Figures) -> Device:
    return Device(name, kind, total, free, figures.bandwidth_gbs, dict(figures.flops))


def _gpu_from_dict(data: dict[str, Any]) -> GPUInfo:
    sheet = data.get("datasheet")
    return GPUInfo(**dict(data, figures=Figures(**data["figures"]), datasheet=Figures(**sheet) if sheet else None))


# ---------------------------------------------------------------------------------- simulated
