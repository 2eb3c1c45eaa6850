"""`sizer fit MODEL`: memory, fit level and speed of one model on this (or a simulated) machine;
`sizer fit --all`: every catalog model ranked for the machine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sizer.core.errors import SizerError
from sizer.core.estimate.fit import LEVELS, FitReport, assumptions, report_to_dict
from sizer.core.estimate.memory import check_shape, fmt_bytes


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("fit", help="what a model needs, whether it fits here, and how fast it would run")
    parser.add_argument("model", nargs="?", help="catalog id or short name, any Hub repo id, a folder with config.json, or a .gguf file")
    parser.add_argument("--all", action="store_true", help="rank every catalog model for this machine")
    parser.add_argument("--dtype", help="fp32, bf16, fp16, int8, int4 or a llama.cpp file type like Q4_K_M "
                        "(default: the checkpoint's own quantization, else what the engine would run here: "
                        "for transformers bf16 on recent GPUs, fp32 on CPU)")
    add_engine_arguments(parser)
    parser.add_argument("--context", type=int, default=None,
                        help="tokens per sequence (default 4096, at most the model's maximum)")
    parser.add_argument("--batch", type=int, default=1, help="sequences at once (default 1)")
    parser.add_argument("--profile", metavar="NAME|FILE", help='plan for a simulated machine, e.g. "1x RTX 4090"')
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine, --kv-cache and --gpu-layers, shared by `fit` and `catalog list --fits`."""
    parser.add_argument("--engine", help="transformers, llama.cpp or vllm (default: llama.cpp for a llama.cpp "
                        "file type such as Q4_K_M, transformers otherwise)")
    parser.add_argument("--kv-cache", help="llama.cpp KV cache type: f16 (default), q8_0 or q4_0")
    parser.add_argument("--gpu-layers", type=int, help="llama.cpp: layers to put on the GPUs (-ngl); "
                        "default: all when they fit, else as many as fit")


def run(args: argparse.Namespace) -> int:
    if bool(args.model) == bool(args.all):
        raise SizerError("name one MODEL, or pass --all (not both)")
    check_shape(1 if args.context is None else args.context, args.batch)
    from sizer.core.estimate.planning import check_inputs, plan_estimate

    engine, _ = check_inputs(args.engine, args.dtype, args.kv_cache, args.gpu_layers)  # before profiling
    from sizer.core.catalog.model_catalog import load_catalog
    from sizer.core.catalog.lookup import resolve_model

    catalog = load_catalog()
    entries = catalog.entries if args.all else [resolve_model(args.model, catalog)]
    profile = _profile(args.profile)
    reports = [plan_estimate(e, profile, engine, args.dtype, args.context, args.batch, args.kv_cache, args.gpu_layers)
               for e in entries]
    if args.all:
        reports.sort(key=lambda r: (LEVELS.index(r.level), -r.entry.params))
        _print_ranking(reports, profile, args.json)
    else:
        from sizer.core.estimate.planning import usable_contexts

        usable = usable_contexts(reports[0], profile, args.kv_cache)
        if args.json:
            data = report_to_dict(reports[0])
            data["machine"] = {"name": profile.name, "simulated": profile.simulated}
            data["usable_context"] = [u.__dict__ for u in usable]
            print(json.dumps(data, indent=2))
        else:
            print("\n".join(report_lines(reports[0], profile.name) + _usable_lines(usable)))
    return 0


def _profile(spec: str | None) -> Any:
    from sizer.core.hardware.profile import detect, simulated

    if spec is not None:
        return simulated(spec)
    from sizer.commands.hw import stream_sink

    return detect(sink=stream_sink())


def report_lines(r: FitReport, machine: str) -> list[str]:
    """The human-readable report: every figure with the arithmetic behind it."""
    e = r.entry
    lines = [
        f"{e.id}: {e.params:,} params, {engine_text(r)}, context {r.context:,} x batch {r.batch}, on {machine}",
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
    lines.append(f"Fit with {r.engine}: {r.level}" + (f" ({r.where})" if r.where else ""))
    lines += _placement_lines(r)
    lines += [f"  note: {n}" for n in r.notes]
    if r.speed:
        lines.append(f"Prefill: {_tps(r.speed.prefill_tps)}  = {r.speed.prefill_formula}")
        lines.append(f"Decode:  {_tps(r.speed.decode_tps)}  = {r.speed.decode_formula}")
    lines += ["", "Training (one step):"] if r.training else []
    for t, where in r.training:
        lines.append(f"  {t.mode}: {fmt_bytes(t.total_bytes)}" + (f" -> fits {', '.join(where)}" if where else " -> fits no device"))
        lines += [f"    {x.name + ':':<26} {fmt_bytes(x.bytes):>11}  {x.formula}" for x in t.terms]
    lines += ["", "Assumptions:"] + [f"  {a}" for a in assumptions(r.engine)]
    return lines


def engine_text(r: FitReport) -> str:
    """How the model runs, in words: the engine, the weights' format and the compute precision."""
    p = r.precision
    if r.engine == "llama.cpp":
        return f"llama.cpp, {p.name if p.kind == 'gguf' else p.name.upper()} GGUF, KV cache {r.kv_cache}"
    if r.engine == "vllm":
        return f"vLLM, {p.name} weights, computes in {p.compute}"
    if p.kind == "gguf":
        return f"transformers, {p.name} GGUF de-quantized to {p.compute}"
    if p.kind == "prequant":
        return f"transformers, {p.name} checkpoint, computes in {p.compute}"
    return f"transformers, {p.name}" + ("" if p.kind == "float" else f" (computes in {p.compute})")


def _placement_lines(r: FitReport) -> list[str]:
    lines = []
    if len(r.shares) > 1 or any(s.layers for s in r.shares):
        for s in r.shares:
            layers = f"{s.layers} layers" + (" + output" if s.output and s.device.kind != "cpu" else "")
            lines.append(f"  {s.device.name}: {layers}, weights {fmt_bytes(s.weight_bytes)}, KV {fmt_bytes(s.kv_bytes)}"
                         f" -> needs {fmt_bytes(s.need_bytes)} of {fmt_bytes(s.usable_bytes)} usable")
    if r.serving:
        v = r.serving
        lines.append(f"  vLLM: tensor parallel {v['tensor_parallel_size']}, gpu_memory_utilization "
                     f"{v['gpu_memory_utilization']}; KV cache {v['kv_cache_tokens']:,} tokens "
                     f"({fmt_bytes(v['kv_cache_bytes_per_gpu'])} per GPU)")
        lines.append(f"  Maximum concurrency for {r.context:,} tokens per request: {v['max_concurrency']:.2f}x; "
                     f"longest single sequence: {v['max_single_context']:,} tokens")
    return lines


def _usable_lines(usable: list[Any]) -> list[str]:
    if not usable:
        return []
    lines = ["", "Largest context that fits (per engine and devices):"]
    for u in usable:
        tokens = f"{u.tokens:,} tokens" if u.tokens else "does not fit"
        cap = " (the model's maximum)" if u.tokens == u.model_max else ""
        lines.append(f"  {u.engine} {u.precision} on {u.devices}: {tokens}{cap}")
    return lines


def _tps(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.1f} tokens/s"


def _print_ranking(reports: list[FitReport], profile: Any, as_json: bool) -> None:
    if as_json:
        rows = [
            {"model": r.entry.id, "params": r.entry.params, "engine": r.engine, "dtype": r.precision.name,
             "level": r.level, "where": r.where,
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
