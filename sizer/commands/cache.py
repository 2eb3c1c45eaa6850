"""`sizer cache info|clear`: look at or empty the trial cache."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sizer.core.errors import SizerError
from sizer.core.events import stream_sink
from sizer.core.results.store import TrialStore, default_path, read_info


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cache", help="show or clear the trial cache")
    actions = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    info = actions.add_parser("info", help="where the trial cache is, its size, trials per model")
    info.add_argument("--json", action="store_true", help="print the figures as JSON")
    info.set_defaults(func=run_info)

    clear = actions.add_parser("clear", help="delete cached trials and predictions")
    clear.add_argument("--model", metavar="ID", help="delete only this model's trials")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(func=run_clear)


def run_info(args: argparse.Namespace) -> int:
    info = read_info(sink=stream_sink())
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"path: {info['path']}")
    print(f"size: {_human_bytes(info['size_bytes'])}")
    print(f"trials: {info['trials']}")
    print(f"predictions: {info['predictions']}")
    width = max((len(m) for m in info["models"]), default=0)
    for model, counts in info["models"].items():
        print(f"  {model:<{width}}  {counts['trials']} trials  {counts['predictions']} predictions")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    info = read_info(sink=stream_sink())
    counts = _counts(info, args.model)
    if counts["trials"] == 0:
        cached = ", ".join(info["models"]) or "none"
        what = f"for model {args.model!r} " if args.model else ""
        print(f"sizer: nothing to clear {what}in {info['path']} (cached models: {cached})", file=sys.stderr)
        return 0
    scope = f"{counts['trials']} trials ({counts['predictions']} predictions)"
    if args.model:
        scope += f" of model {args.model}"
    if not args.yes and not _confirm(f"Delete {scope} from {info['path']}? [y/N] "):
        print("sizer: cancelled; nothing deleted", file=sys.stderr)
        return 0
    with TrialStore.open(default_path()) as store:
        removed = store.clear(args.model)
    print(f"removed {removed} trials from {info['path']}")
    return 0


def _counts(info: dict[str, Any], model: str | None) -> dict[str, int]:
    if model is None:
        return {"trials": info["trials"], "predictions": info["predictions"]}
    return info["models"].get(model, {"trials": 0, "predictions": 0})


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise SizerError("cache clear asks for confirmation but no terminal is attached; pass --yes to delete")
    print(question, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
