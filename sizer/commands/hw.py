"""`sizer hw`: the hardware profile of this machine, or of a simulated one (`--profile`)."""

from __future__ import annotations

import argparse
import json

from sizer.core.hardware import gpu_specs
from sizer.core.errors import SizerError
from sizer.core.events import stream_sink
from sizer.core.hardware.profile import GIB, detect, simulated
from sizer.core.hardware.devices import Figures, HardwareProfile


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hw", help="show this machine's (or a simulated machine's) hardware profile")
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    parser.add_argument("--remeasure", action="store_true", help="redo the bandwidth and FLOP/s measurement")
    parser.add_argument(
        "--profile", metavar="NAME|FILE",
        help='a simulated machine: e.g. "1x H100 80GB", "2x RTX 4090", "M2 Max 64GB", "8 vCPU 32GB", or a TOML file',
    )
    parser.add_argument("--list", action="store_true", help="list the GPU names --profile knows, with datasheet figures")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        _print_table()
        return 0
    if args.profile is not None and args.remeasure:
        raise SizerError("--remeasure measures this machine; it does not apply with --profile")
    profile = simulated(args.profile) if args.profile is not None else detect(args.remeasure, sink=stream_sink())
    if args.json:
        print(json.dumps(profile.to_dict(), indent=2))
    else:
        print("\n".join(summary_lines(profile)))
    return 0


def summary_lines(profile: HardwareProfile) -> list[str]:
    """The plain-text summary: inventory, then one speed line per device."""
    cpu = profile.cpu
    title = f"{profile.name} (simulated)" if profile.simulated else profile.name
    lines = [
        title,
        f"CPU      {cpu.model}: {cpu.physical_cores} physical / {cpu.logical_cores} logical cores"
        + (f", torch threads {cpu.threads}" if cpu.threads else ""),
        f"RAM      {_gib(cpu.ram_total_bytes)} total, {_gib(cpu.ram_available_bytes)} available"
        + (" (shared with the GPU)" if profile.unified_memory else "")
        + (f"; {cpu.ram_source}" if cpu.ram_source else ""),
    ]
    for gpu in profile.gpus:
        facts = [f"{_gib(gpu.total_bytes)} total", f"{_gib(gpu.free_bytes)} free"]
        facts += [f"compute {gpu.compute_capability}"] if gpu.compute_capability else []
        facts += [f"driver {gpu.driver_version}"] if gpu.driver_version else []
        facts += [f"CUDA {gpu.cuda_version} (torch)"] if gpu.cuda_version else []
        facts += [f"CUDA {gpu.cuda_driver_version} (driver)"] if gpu.cuda_driver_version else []
        unusable = "" if gpu.usable else "  [not usable by this torch build]"
        lines.append(f"GPU {gpu.index:<4} {gpu.name} ({gpu.kind}): {', '.join(facts)}{unusable}")
    if profile.disk_free_bytes is not None:
        lines.append(f"Disk     {_gib(profile.disk_free_bytes)} free at {profile.disk_path} (Hugging Face cache)")
    lines += ["", f"{'speed':<28} {'bandwidth':>12} {'fp32':>14} {'bf16':>14} {'fp16':>14}"]
    lines.append(_speed_line(f"cpu ({cpu.figures.source})", cpu.figures))
    for gpu in profile.gpus:
        lines.append(_speed_line(f"gpu {gpu.index} ({gpu.figures.source})", gpu.figures))
        if gpu.datasheet and gpu.figures.source == "measured":
            lines.append(_speed_line(f"gpu {gpu.index} (datasheet)", gpu.datasheet))
    lines += [""] + _explanations(profile)
    return lines


def _speed_line(label: str, figures: Figures) -> str:
    bandwidth = f"{figures.bandwidth_gbs:,.0f} GB/s" if figures.bandwidth_gbs else "-"
    flops = [_flops(figures.flops.get(dtype)) for dtype in ("fp32", "bf16", "fp16")]
    return f"{label:<28} {bandwidth:>12} {flops[0]:>14} {flops[1]:>14} {flops[2]:>14}"


def _flops(value: float | None) -> str:
    if not value:
        return "-"
    return f"{value / 1e12:,.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:,.0f} GFLOP/s"


def _explanations(profile: HardwareProfile) -> list[str]:
    lines = list(profile.notes)
    sources = [profile.cpu.figures] + [g.figures for g in profile.gpus] + [g.datasheet for g in profile.gpus if g.datasheet]
    for figures in sources:
        if figures.what and figures.source != "none":
            line = f"{figures.source}: {figures.what}"
            if line not in lines:
                lines.append(line)
    if profile.measured_at:
        lines.append(f"measured at {profile.measured_at} (cached; --remeasure to redo)")
    return lines


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def _print_table() -> None:
    print(f"{'name':<22} {'memory':>8} {'bandwidth':>11} {'bf16':>13} {'fp32':>13}")
    for spec in gpu_specs.load_table():
        for memory in spec.memory_gb:
            bf16 = spec.tflops.get("bf16") or spec.tflops.get("fp16")
            label = "" if "bf16" in spec.tflops else " (fp16)"
            print(
                f"{spec.model:<22} {memory:>6g}GB {spec.bandwidth_gbs:>6,.0f} GB/s"
                f" {bf16:>7,.1f} TFLOP/s{label} {spec.tflops.get('fp32', 0):>6,.1f} TFLOP/s"
            )
