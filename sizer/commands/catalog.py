"""`sizer catalog list|show|add|refresh`: the models sizer knows, adding any Hub repo or local model
to the user catalog, and refreshing entries from the Hub."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sizer.core.catalog.model_catalog import Catalog, ModelEntry, load_catalog
from sizer.core.catalog.family_file import entry_to_dict
from sizer.core.errors import SizerError
from sizer.core.estimate.experts import active_params


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("catalog", help="list, show and refresh catalog models")
    sub = parser.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="list catalog models")
    ls.add_argument("--family", help="only this family (e.g. qwen2.5)")
    ls.add_argument("--fits", action="store_true", help="only models that fit this machine (or --profile)")
    ls.add_argument("--profile", metavar="NAME|FILE", help="with --fits: a simulated machine (see `sizer hw --profile`)")
    ls.add_argument("--dtype", help="with --fits: precision or llama.cpp file type (default: the checkpoint's "
                    "quantization, else what the engine would run here)")
    from sizer.commands.fit import add_engine_arguments

    add_engine_arguments(ls)
    ls.add_argument("--context", type=int, default=None,
                    help="with --fits: context tokens, capped at each model's maximum (default 4096)")
    ls.add_argument("--batch", type=int, default=1, help="with --fits: batch size (default 1)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_list)

    show = sub.add_parser("show", help="every field of one model")
    show.add_argument("id", metavar="ID", help="Hub repo id or short name, e.g. Qwen2.5-7B-Instruct")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)

    add = sub.add_parser("add", help="size a Hub repo, a model folder or a GGUF file and keep it in the user catalog")
    add.add_argument("targets", nargs="+", metavar="REPO|PATH",
                     help="Hub repo ids, folders with config.json, or .gguf files")
    add.add_argument("--family", help="family to file them under (default: hub, or local for paths)")
    add.add_argument("--json", action="store_true", help="machine-readable output")
    add.set_defaults(func=_add)

    refresh = sub.add_parser("refresh", help="rebuild entries from the Hugging Face Hub into the user catalog")
    refresh.add_argument("targets", nargs="+", metavar="FAMILY|REPO", help="family names or Hub repo ids")
    refresh.add_argument("--family", help="family file for repos not yet in the catalog")
    refresh.set_defaults(func=_refresh)


def human_params(count: int | float) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.2f}B"
    return f"{count / 1e6:.1f}M"


def _row(entry: ModelEntry, cached: bool) -> dict[str, str]:
    return {
        "MODEL": entry.id,
        "FAMILY": entry.family,
        "KIND": entry.kind + (" (instruct)" if entry.instruct else ""),
        "PARAMS": human_params(entry.params) + (f" ({human_params(active_params(entry))} active)" if entry.is_moe else ""),
        "CONTEXT": f"{entry.max_context:,}",
        "DTYPE": entry.torch_dtype,
        "FORMATS": ",".join(entry.formats),
        "LICENSE": entry.license + (" (gated)" if entry.gated else ""),
        "CACHED": "yes" if cached else "-",
    }


def table(rows: list[dict[str, str]]) -> str:
    """Left-aligned columns sized to their widest cell, headers from the first row's keys."""
    if not rows:
        return ""
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(r[h].ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _selected(catalog: Catalog, family: str | None) -> list[ModelEntry]:
    entries = catalog.family(family) if family else catalog.entries
    return sorted(entries, key=lambda e: (e.family, e.kind != "causal", e.params, e.id))


def _list(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    entries = _selected(catalog, args.family)
    fits: dict[str, dict[str, Any]] = {}
    if args.fits:
        fits = _fits(entries, args)
        entries = [e for e in entries if e.id in fits]
    elif args.profile is not None:
        raise SizerError("--profile only applies with --fits")
    cached = {e.id: catalog.is_cached(e) for e in entries}
    if args.json:
        print(json.dumps([{**entry_to_dict(e), "cached": cached[e.id], **fits.get(e.id, {})} for e in entries], indent=2))
    else:
        rows = [{**_row(e, cached[e.id]), **_fit_cells(fits.get(e.id))} for e in entries]
        print(table(rows))
    return 0


def _fits(entries: list[ModelEntry], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Model id -> its fit on this machine (or --profile), for the models that fit somewhere."""
    from sizer.core.events import stream_sink
    from sizer.core.hardware.profile import detect, simulated
    from sizer.core.estimate.planning import check_inputs, plan_estimate

    if (args.context is not None and args.context <= 0) or args.batch <= 0:
        raise SizerError("--context and --batch must be positive")
    engine, _ = check_inputs(args.engine, args.dtype, args.kv_cache, args.gpu_layers)  # before profiling
    profile = simulated(args.profile) if args.profile is not None else detect(sink=stream_sink())
    found = {}
    for entry in entries:
        report = plan_estimate(entry, profile, engine, args.dtype, args.context, args.batch, args.kv_cache,
                               args.gpu_layers)
        if report.level == "no":
            continue
        need = max((s.need_bytes for s in report.shares), default=0)
        found[entry.id] = {
            "fit": {"level": report.level, "where": report.where, "engine": report.engine,
                    "dtype": report.precision.name, "context": report.context, "batch": args.batch, "need_bytes": need,
                    "decode_tokens_per_s": report.speed.decode_tps if report.speed and entry.kind == "causal" else None},
        }
    return found


def _fit_cells(fit: dict[str, Any] | None) -> dict[str, str]:
    if fit is None:
        return {}
    f = fit["fit"]
    tps = f["decode_tokens_per_s"]
    return {"FIT": f["level"], "ENGINE": f"{f['engine']} {f['dtype']}", "NEEDS": f"{f['need_bytes'] / 1024**3:.1f} GiB",
            "DECODE": f"{tps:.0f} tok/s" if tps else "-"}


def _show(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    entry = catalog.get(args.id)
    data = {**entry_to_dict(entry), "cached": catalog.is_cached(entry)}
    if entry.is_moe:
        data["active_params"] = active_params(entry)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        if key == "gguf":
            value = "; ".join(f"{g['repo']} ({', '.join(_quant_label(q, g) for q in g['files'])})" for g in value)
        elif key in ("params", "published_params", "active_params"):
            value = f"{int(value):,} ({human_params(value)})"
        elif isinstance(value, list):
            value = ", ".join(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        print(f"{key.ljust(width)}  {value}")
    return 0


def _quant_label(quant: str, gguf: dict) -> str:
    """The quant name, with the file size the repo's listing gives when known ("Q4_K_M 4.68 GB")."""
    size = gguf.get("sizes_gb", {}).get(quant)
    return f"{quant} {size:g} GB" if size is not None else quant


def _add(args: argparse.Namespace) -> int:
    """Each target resolved (and built where needed) through the one path `fit` and `run` use."""
    from sizer.core.catalog.lookup import looks_like_path, resolve_model
    from sizer.core.paths import user_catalog_dir

    catalog = load_catalog()
    entries = []
    for target in args.targets:
        known = None if looks_like_path(target) else catalog.find(target)
        if known is not None:
            print(f"{target}: already in the catalog as {known.id} "
                  f"(`sizer catalog refresh {known.id}` re-reads it from the Hub)", file=sys.stderr)
        entries.append(known or resolve_model(target, catalog, family=args.family))
    if args.json:
        print(json.dumps([entry_to_dict(e) for e in entries], indent=2))
    else:
        for entry in entries:
            print(f"{entry.id}: {entry.params:,} params ({entry.family})")
    print(f"user catalog: {user_catalog_dir()}", file=sys.stderr)
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from sizer.core.events import stream_sink
    from sizer.core.catalog.hub import refresh

    entries = refresh(args.targets, family=args.family, sink=stream_sink())
    for entry in entries:
        print(f"{entry.id}: {entry.params:,} params, revision {entry.revision or 'main'}")
    return 0
