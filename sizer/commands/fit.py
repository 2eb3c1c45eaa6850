"""`sizer fit MODEL`: memory, fit level and speed of one model on this (or a simulated) machine;
`sizer fit --all`: every catalog model ranked for the machine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sizer.core.errors import SizerError
from sizer.core.estimate import LEVELS, FitReport, assumptions, fit_report, report_to_dict
from sizer.core.estimate_memory import check_shape, fmt_bytes
from sizer.core.quant import parse_precision


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("fit", help="what a model needs, whether it fits here, and how fast it would run")
    parser.add_argument("model", nargs="?", help="catalog id or short name, any Hub repo id, a folder with config.json, or a .gguf file")
    parser.add_argument("--all", action="store_true", help="rank every catalog model for this machine")
    parser.add_argument("--dtype", help="fp32, bf16, fp16, int8, int4 or a GGUF type like Q4_K_M "
                        "(default: what a trial would use on the machine: bf16 on recent GPUs, fp32 on CPU)")
    parser.add_argument("--context", type=int, default=4096, help="tokens per sequence (default 4096)")
    parser.add_argument("--batch", type=int, default=1, help="sequences at once (default 1)")
    parser.add_argument("--profile", metavar="NAME|FILE", help='plan for a simulated machine, e.g. "1x RTX 4090"')
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.model) == bool(args.all):
        raise SizerError("name one MODEL, or pass --all (not both)")
    check_shape(args.context, args.batch)
    fixed = parse_precision(args.dtype) if args.dtype else None  # a bad --dtype fails before profiling
    from sizer.core.catalog import load_catalog
    from sizer.core.model_lookup import resolve_model
    from sizer.core.placement import planned_dtype

    catalog = load_catalog()
    entries = catalog.entries if args.all else [resolve_model(args.model, catalog)]
    profile = _profile(args.profile)
    devices = profile.devices()
    reports = [fit_report(e, fixed or parse_precision(planned_dtype(profile, e.kind)), args.context, args.batch,
                          devices, overhead_reserved=profile.simulated) for e in entries]
    if args.all:
        reports.sort(key=lambda r: (LEVELS.index(r.level), -r.entry.params))
        _print_ranking(reports, profile, args.json)
    elif args.json:
        data = report_to_dict(reports[0])
        data["machine"] = {"name": profile.name, "simulated": profile.simulated}
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(report_lines(reports[0], profile.name)))
    return 0


def _profile(spec: str | None) -> Any:
    from sizer.core.hardware import detect, simulated

    if spec is not None:
        return simulated(spec)
    from sizer.commands.hw import stream_sink

    return detect(sink=stream_sink())


def report_lines(r: FitReport, machine: str) -> list[str]:
    """The human-readable report: every figure with the arithmetic behind it."""
    e = r.entry
    lines = [
        f"{e.id}: {e.params:,} params, {r.precision.name} (computes in {r.precision.compute}), "
        f"context {r.context:,} x batch {r.batch}, on {machine}",
        "",
    ]
    for kind, m in r.memory.items():
        lines.append(f"Inference memory on {kind}: {fmt_bytes(m.total_bytes)}")
        lines += [f"  {t.name + ':':<18} {fmt_bytes(t.bytes):>11}  {t.formula}" for t in m.terms]
        lines.append(f"  {'peak:':<18} {fmt_bytes(m.peak_bytes):>11}  max(weights + load transient, weights + kv cache + activations)")
        lines += [f"  note: {n}" for n in m.notes]
    lines += ["", "Devices (free memory):"]
    for f in r.devices:
        verdict = "fits" if f.fits else "does not fit"
        lines.append(
            f"  {f.device.name} ({f.device.kind}): needs {fmt_bytes(f.need_bytes)} of "
            f"{fmt_bytes(f.usable_bytes)} usable ({fmt_bytes(f.device.free_bytes)} free) -> {verdict}"
        )
    lines.append(f"Fit: {r.level}" + (f" ({r.where})" if r.where else ""))
    if r.speed:
        lines.append(f"Prefill: {_tps(r.speed.prefill_tps)}  = {r.speed.prefill_formula}")
        lines.append(f"Decode:  {_tps(r.speed.decode_tps)}  = {r.speed.decode_formula}")
    lines += ["", "Training (one step):"]
    for t, where in r.training:
        lines.append(f"  {t.mode}: {fmt_bytes(t.total_bytes)}" + (f" -> fits {', '.join(where)}" if where else " -> fits no device"))
        lines += [f"    {x.name + ':':<26} {fmt_bytes(x.bytes):>11}  {x.formula}" for x in t.terms]
    lines += ["", "Assumptions:"] + [f"  {a}" for a in assumptions()]
    return lines


def _tps(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.1f} tokens/s"


def _print_ranking(reports: list[FitReport], profile: Any, as_json: bool) -> None:
    if as_json:
        rows = [
            {"model": r.entry.id, "params": r.entry.params, "level": r.level, "where": r.where,
             "need_bytes": min(f.need_bytes for f in r.devices),
             "decode_tokens_per_s": r.speed.decode_tps if r.speed else None}
            for r in reports
        ]
        print(json.dumps({"machine": profile.name, "models": rows}, indent=2))
        return
    print(f"{'model':<44} {'params':>15} {'need':>11} {'fit':<9} {'decode tok/s':>12}")
    for r in reports:
        need = min(f.need_bytes for f in r.devices)
        decode = f"{r.speed.decode_tps:,.1f}" if r.speed and r.speed.decode_tps else "-"
        print(f"{r.entry.id:<44} {r.entry.params:>15,} {fmt_bytes(need):>11} {r.level:<9} {decode:>12}")
    print(f"({len(reports)} models on {profile.name}; need = the smallest peak over its devices)", file=sys.stderr)
