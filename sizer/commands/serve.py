"""`sizer serve`: the same app in a browser, through textual-serve, bound to loopback by default."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
import sys

from sizer.core.errors import SizerError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve the app to a web browser (textual-serve)")
    parser.add_argument("task", nargs="?", help="task TOML file (default: the built-in demo)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.set_defaults(func=run)


def command(task: str | None) -> str:
    """The shell command textual-serve starts for each browser session."""
    words = [sys.executable, "-m", "sizer.tui"] + ([str(Path(task).resolve())] if task else [])
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise SizerError(f"--port {args.port}: give a port from 1 to 65535")
    try:
        from textual_serve.server import Server
    except ImportError:
        raise SizerError("sizer serve needs the textual-serve package: pip install textual-serve") from None
    print(f"serving sizer at http://{args.host}:{args.port} (Ctrl+C stops)", file=sys.stderr)
    Server(command(args.task), host=args.host, port=args.port, title="sizer").serve()
    return 0
