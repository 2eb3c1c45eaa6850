"""`sizer ...`: the headless command line. Each subcommand lives in `sizer/commands/<name>.py`
and exposes `register(subparsers)`, which adds its parser and sets `func(args) -> int`.

stdout carries results only; diagnostics go to stderr. Exit codes: 0 done, 1 target not met,
2 bad input or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
from typing import Sequence

from sizer import __version__, commands
from sizer.core.environment import check_numeric_settings
from sizer.core.errors import SizerError
from sizer.core.engines.library_output import silence_libraries


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"sizer: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sizer",
        description="Find the smallest language model that does your task well enough on your hardware.",
    )
    parser.add_argument("--version", action="version", version=f"sizer {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks for errors, and the libraries' own progress bars, logging and warnings")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"sizer.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Before any library is imported: sizer reports its own progress; `--debug` shows theirs.
    silence_libraries(debug="--debug" in argv)
    if not argv or (len(argv) == 1 and argv[0].endswith(".toml")):
        from sizer.tui.entry import launch  # `sizer [TASK.toml]`: the app

        return launch(argv[0] if argv else None)
    try:
        check_numeric_settings()
    except SizerError as exc:
        print(f"sizer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except SizerError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"sizer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sizer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sizer catalog list | head`: the reader left, nothing to say
        sys.stderr.close()
        return 0
