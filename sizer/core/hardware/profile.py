"""Hardware profile: what this machine (or a simulated one) has, and how fast it is.

INTERFACE (used by the estimator and the front ends; keep these names stable):

    profile = detect()                      # this machine, measured figures from the cache
    profile = simulated("1x H100 80GB")     # a named or file-described machine
    profile.devices() -> list[Device]       # each place a model can live: GPUs, then "cpu"

    Device(name, kind, total_bytes, free_bytes, bandwidth_gbs, flops)  # flops: dtype -> FLOP/s

The data types (`Device`, `CPUInfo`, `GPUInfo`, `Figures`, `HardwareProfile`) live in
sizer.core.hardware.devices.

Also: `profile.name`, `profile.simulated`, `profile.unified_memory` (Apple: the "mps" device and
the "cpu" device share one memory pool, so never add their free bytes), `profile.to_dict()` /
`HardwareProfile.from_dict()`. Device.flops holds "fp32" and "bf16" (and "fp16" for datasheet
GPUs); a dtype a device cannot run natively is absent. Sizes are bytes; "GB" in profile names
and TOML files means GiB (2**30), as GPU and RAM sizes are sold.

Detected figures are measured (sizer.core.hardware.microbench) once per machine and cached in
`cache_dir()/hardware.json`, keyed by a fingerprint of CPU model, core counts, RAM total, GPU
names and torch version. Simulated figures are datasheet values (GPUs) or stated assumptions
(the CPU part); see the constants below.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from sizer.core.hardware import cgroup

from sizer.core.hardware import gpu_specs
from sizer.core.hardware.devices import CPUInfo, Figures, GPUInfo, HardwareProfile
from sizer.core.events import Message, Sink, null_sink
from sizer.core.fileio import atomic_write_text
from sizer.core.paths import cache_dir, hf_cache_dir

GIB = 2**30
CACHE_FORMAT = 1
# Simulated machines: what a runtime leaves free, and the CPU part when none is given.
# Per GPU: driver reservation + CUDA context + cuBLAS workspace. On an H200 (141 GB datasheet)
# torch saw 139.3 GiB free after creating its context: 1.7 GiB, 1.2% below the datasheet size.
GPU_RESERVE_MIN_BYTES = GIB
GPU_RESERVE_FRACTION = 0.015
MPS_USABLE_FRACTION = 0.75  # macOS lets the GPU wire about 3/4 of unified memory by default
RAM_AVAILABLE_FRACTION = 0.9  # the OS and other processes keep the rest
DEFAULT_CPU_CORES = 16
DEFAULT_RAM_GB = 64.0  # or the GPUs' total memory if larger: weights pass through host RAM
ASSUMED_CPU_GFLOPS_PER_CORE = 50.0  # sustained AVX2/AVX-512 FMA matmul, fp32 and bf16 alike
ASSUMED_CPU_GBS_PER_CORE = 6.0  # a DDR4/DDR5 server channel (~30-40 GB/s) per 5-6 cores
ASSUMED_CPU_GBS_MAX = 400.0

WHAT_MEASURED = (
    "measured: bandwidth = float32 tensor copy, bytes read + written, best of 5; "
    "FLOP/s = square torch.mm, 2*n^3 per product, best of 3 samples of ~0.2 s"
)


def simulated(spec: str) -> HardwareProfile:
    """A machine described by a name ("2x RTX 4090", "M2 Max 64GB", "8 vCPU 32GB") or a TOML file.

    The grammar and the file format are in `sizer.core.hardware.gpu_specs`. Bad input -> SizerError.
    """
    machine = gpu_specs.parse_machine(spec)
    gpus: list[GPUInfo] = []
    for choice in machine.gpus:
        for _ in range(choice.count):
            gpus.append(_simulated_gpu(len(gpus), choice))
    apple = bool(gpus) and gpus[0].kind == "mps"
    cpu = _simulated_cpu(machine, gpus, apple)
    notes = [
        f"simulated: GPU free memory = total - max(1 GiB, {GPU_RESERVE_FRACTION:.1%}) runtime reserve"
        if not apple else f"simulated: GPU may use {MPS_USABLE_FRACTION:.0%} of unified memory (macOS default)",
        f"simulated: available RAM = {RAM_AVAILABLE_FRACTION:.0%} of total",
    ]
    return HardwareProfile(name=machine.name, simulated=True, cpu=cpu, gpus=tuple(gpus), unified_memory=apple, notes=tuple(notes))


def _simulated_gpu(index: int, choice: gpu_specs.GpuChoice) -> GPUInfo:
    spec = choice.spec
    total = int(choice.memory_gb * GIB)
    free = int(total * MPS_USABLE_FRACTION) if spec.kind == "mps" else total - gpu_reserve_bytes(total)
    figures = _datasheet_figures(choice)
    return GPUInfo(index, choice.label, spec.kind, total, free, figures=figures, datasheet=figures)


def gpu_reserve_bytes(total_bytes: int) -> int:
    """What the driver and a torch CUDA context take from a simulated GPU's memory."""
    return max(GPU_RESERVE_MIN_BYTES, int(total_bytes * GPU_RESERVE_FRACTION))


def _datasheet_figures(choice: gpu_specs.GpuChoice) -> Figures:
    flops = {dtype: tflops * 1e12 for dtype, tflops in choice.spec.tflops.items()}
    return Figures(choice.spec.bandwidth_gbs, flops, "datasheet", choice.spec.source)


def _simulated_cpu(machine: gpu_specs.MachineSpec, gpus: list[GPUInfo], apple: bool) -> CPUInfo:
    if apple:
        cores = machine.cpu_cores or _apple_cores(machine)
        ram_gb = gpus[0].total_bytes / GIB
    else:
        cores = machine.cpu_cores or DEFAULT_CPU_CORES
        ram_gb = machine.ram_gb or max(DEFAULT_RAM_GB, sum(g.total_bytes for g in gpus) / GIB)
    given = machine.cpu_figures
    fp32 = given.get("fp32_gflops", cores * ASSUMED_CPU_GFLOPS_PER_CORE) * 1e9
    bf16 = given.get("bf16_gflops", fp32 / 1e9) * 1e9
    bandwidth = given.get("bandwidth_gbs", min(cores * ASSUMED_CPU_GBS_PER_CORE, ASSUMED_CPU_GBS_MAX))
    source = "given" if len(given) == 3 else "assumed"
    what = (
        "given in the profile file" if source == "given" else
        f"{ASSUMED_CPU_GFLOPS_PER_CORE:g} GFLOP/s (fp32 and bf16) and {ASSUMED_CPU_GBS_PER_CORE:g} GB/s per core"
        + (" (some figures given in the profile file)" if given else "")
    )
    total = int(ram_gb * GIB)
    return CPUInfo(
        model=f"{cores}-core CPU", physical_cores=cores, logical_cores=cores, ram_total_bytes=total,
        ram_available_bytes=int(total * RAM_AVAILABLE_FRACTION), threads=cores,
        figures=Figures(bandwidth, {"fp32": fp32, "bf16": bf16}, source, what),
    )


def _apple_cores(machine: gpu_specs.MachineSpec) -> int:
    return machine.gpus[0].spec.cpu_cores or DEFAULT_CPU_CORES


# ---------------------------------------------------------------------------------- this machine


def detect(remeasure: bool = False, sink: Sink = null_sink) -> HardwareProfile:
    """This machine. Speed figures come from the cache unless missing, stale or `remeasure`."""
    cpu = _detect_cpu()
    gpus = _detect_gpus()
    torch_version = _torch_version()
    machine = {
        "cpu": cpu.model, "physical_cores": cpu.physical_cores, "logical_cores": cpu.logical_cores,
        "ram_total_bytes": cpu.ram_total_bytes, "gpus": [g.name for g in gpus], "torch": torch_version,
    }
    fingerprint = hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:16]
    entry = None if remeasure else _cache_read().get(fingerprint)
    if entry is None:
        sink(Message("measuring memory bandwidth and FLOP/s (about 3 s)..."))
        entry = _measure_all(cpu, gpus, sink)
        entry["machine"] = machine
        _cache_write(fingerprint, entry)
    cpu, gpus = _apply_figures(cpu, gpus, entry["figures"])
    disk_path, disk_free = _disk_free(hf_cache_dir())
    return HardwareProfile(
        name="this machine", simulated=False, cpu=cpu, gpus=tuple(gpus), disk_path=disk_path,
        disk_free_bytes=disk_free, unified_memory=any(g.kind == "mps" for g in gpus),
        torch_version=torch_version, fingerprint=fingerprint, measured_at=entry["measured_at"],
        notes=(WHAT_MEASURED,),
    )


def _detect_cpu() -> CPUInfo:
    memory = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True) or 1
    total, available, source = ram_under_limit(memory.total, memory.available, cgroup.memory_limit())
    return CPUInfo(
        model=_cpu_model(), physical_cores=psutil.cpu_count(logical=False) or logical,
        logical_cores=logical, ram_total_bytes=total, ram_available_bytes=available, ram_source=source,
    )


def ram_under_limit(host_total: int, host_available: int, limit: cgroup.MemoryLimit | None) -> tuple[int, int, str]:
    """(total, available, which applies): a container's cgroup limit when lower than the host's RAM."""
    if limit is None or limit.limit_bytes >= host_total:
        return host_total, host_available, "the host's RAM (no lower cgroup limit)"
    available = min(host_available, limit.available_bytes)
    return limit.limit_bytes, available, f"container limit: {limit.describe()}, below the host's {host_total / GIB:.1f} GiB"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def _disk_free(path: Path) -> tuple[str | None, int | None]:
    """Free bytes on the file system of `path`, or of its nearest existing parent."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return str(candidate), psutil.disk_usage(str(candidate)).free
    return None, None


# GPUs: NVML (nvidia-ml-py) sees NVIDIA GPUs without importing torch; torch says which it can use.


def _detect_gpus() -> list[GPUInfo]:
    nvml = _nvml_gpus()
    maybe_other = Path("/dev/kfd").exists() or (platform.system() == "Darwin" and platform.machine() == "arm64")
    if not nvml and not maybe_other:
        return []  # nothing to find: do not pay for importing torch
    import torch

    if torch.cuda.is_available():
        return [_torch_cuda_gpu(torch, i, nvml) for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        return [_mps_gpu(torch)]
    return [_with_datasheet(dataclasses.replace(g, usable=False)) for g in nvml]


def _nvml_gpus() -> list[GPUInfo]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no NVIDIA driver
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        return [_nvml_gpu(pynvml, i, driver, f"{cuda // 1000}.{cuda % 1000 // 10}") for i in range(pynvml.nvmlDeviceGetCount())]
    except pynvml.NVMLError:
        return []
    finally:
        pynvml.nvmlShutdown()


def _nvml_gpu(pynvml: Any, index: int, driver: str, cuda: str) -> GPUInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    return GPUInfo(
        index=index, name=_text(pynvml.nvmlDeviceGetName(handle)), kind="cuda", total_bytes=memory.total,
        free_bytes=memory.free, compute_capability=f"{major}.{minor}", driver_version=driver,
        cuda_driver_version=cuda, uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _torch_cuda_gpu(torch: Any, index: int, nvml: list[GPUInfo]) -> GPUInfo:
    props = torch.cuda.get_device_properties(index)
    free, total = torch.cuda.mem_get_info(index)
    uuid = str(getattr(props, "uuid", ""))
    match = next((g for g in nvml if uuid and (g.uuid or "").removeprefix("GPU-") == uuid), None)
    match = match or (nvml[index] if index < len(nvml) else None)
    gpu = GPUInfo(
        index=index, name=props.name, kind="rocm" if torch.version.hip else "cuda", total_bytes=total,
        free_bytes=free, compute_capability=f"{props.major}.{props.minor}",
        driver_version=match.driver_version if match else None,
        cuda_version=torch.version.cuda or torch.version.hip,
        cuda_driver_version=match.cuda_driver_version if match else None,
        uuid=match.uuid if match else None,
    )
    return _with_datasheet(gpu)


def _mps_gpu(torch: Any) -> GPUInfo:
    total = psutil.virtual_memory().total
    free = int(torch.mps.recommended_max_memory()) - int(torch.mps.driver_allocated_memory())
    gpu = GPUInfo(0, _cpu_model(), "mps", total, free, driver_version=platform.mac_ver()[0] or None)
    return _with_datasheet(gpu)


def _with_datasheet(gpu: GPUInfo) -> GPUInfo:
    choice = gpu_specs.match_device_name(gpu.name, gpu.total_bytes / GIB)
    sheet = _datasheet_figures(choice) if choice else None
    figures = sheet if (sheet and not gpu.usable) else Figures()
    return dataclasses.replace(gpu, datasheet=sheet, figures=figures)


# Measurement and its cache.


def _measure_all(cpu: CPUInfo, gpus: list[GPUInfo], sink: Sink) -> dict[str, Any]:
    from sizer.core.hardware import microbench

    usable = [g for g in gpus if g.usable]
    sample_s = 0.2 if not usable else 0.1  # keep the whole run near 3 s
    figures = {"cpu": _bench_dict(microbench.measure("cpu", sample_s, cpu.ram_available_bytes))}
    for gpu in usable:
        if gpu.name in figures:
            continue  # identical models: measure the first one only
        device = "mps" if gpu.kind == "mps" else f"cuda:{gpu.index}"
        try:
            figures[gpu.name] = _bench_dict(microbench.measure(device, sample_s, gpu.free_bytes))
        except RuntimeError as exc:  # e.g. out of memory on a busy GPU: keep the CPU figures
            sink(Message(f"could not measure {gpu.name}: {str(exc).splitlines()[0]}", level="warning"))
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"measured_at": now, "figures": figures}


def _bench_dict(result: Any) -> dict[str, Any]:
    return dataclasses.asdict(result)


def _apply_figures(cpu: CPUInfo, gpus: list[GPUInfo], figures: dict[str, Any]) -> tuple[CPUInfo, list[GPUInfo]]:
    def as_figures(bench: dict[str, Any]) -> Figures:
        details = bench["details"]
        sizes = ", ".join(f"{dtype} n={n}" for dtype, n in details["matmul_n"].items())
        threads = f", {details['threads']} torch threads" if "threads" in details else ""
        what = (f"{bench['device']}{threads}: copy of {details['copy_bytes'] / 2**20:.0f} MiB, "
                f"matmul {sizes}, {bench['seconds']:.1f} s in all")
        return Figures(bench["bandwidth_gbs"], dict(bench["flops"]), "measured", what)

    bench = figures["cpu"]
    cpu = dataclasses.replace(cpu, threads=bench["details"].get("threads"), figures=as_figures(bench))
    gpus = [dataclasses.replace(g, figures=as_figures(figures[g.name])) if g.usable and g.name in figures else g for g in gpus]
    return cpu, gpus


def cache_path() -> Path:
    return cache_dir() / "hardware.json"


def _cache_read() -> dict[str, Any]:
    """fingerprint -> entry; an unreadable or foreign cache counts as empty (it is remeasured)."""
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return {}
    machines = data.get("machines")
    return machines if isinstance(machines, dict) else {}


def _cache_write(fingerprint: str, entry: dict[str, Any]) -> None:
    machines = _cache_read()
    machines[fingerprint] = entry
    atomic_write_text(cache_path(), json.dumps({"format": CACHE_FORMAT, "machines": machines}, indent=1))
