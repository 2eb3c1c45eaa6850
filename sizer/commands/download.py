"""`sizer download MODEL [--quant Q]` (also `sizer pull`): fetch what a trial needs from the Hub
into the Hugging Face cache. The local path goes to stdout, progress to stderr."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sizer.core.events import stream_sink


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "download", aliases=["pull"],
        help="fetch a catalog model (config, tokenizer, safetensors) or one GGUF file from the Hub",
    )
    parser.add_argument("model", metavar="MODEL", help="catalog id or short name, or any Hub repo id")
    parser.add_argument("--quant", metavar="Q", help="one GGUF file of this quantization, e.g. Q4_K_M")
    parser.add_argument("--revision", metavar="R", help="branch, tag or commit (default: the catalog's revision)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON, progress as JSON lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sizer.core.download.fetch import download
    from sizer.core.catalog.lookup import resolve_model

    entry = resolve_model(args.model)
    path = download(entry, quant=args.quant, revision=args.revision, sink=stream_sink(as_json=args.json))
    if args.json:
        print(json.dumps({"model": entry.id, "quant": args.quant.upper() if args.quant else None, "path": str(path)}))
    else:
        print(path)
    return 0
