"""`sizer` with no subcommand: the app in a terminal, or one line on how to run headless."""

from __future__ import annotations

import sys
from sizer.core.paths import demo_task

HEADLESS_HINT = "sizer: no terminal here; run headless with `sizer run TASK.toml` (see `sizer run --help`)"


def launch(task_path: str | None) -> int:
    """Open the app on `task_path` (default: the built-in demo); exit 2 without a TTY."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(HEADLESS_HINT, file=sys.stderr)
        return 2
    return run_app(task_path)


def run_app(task_path: str | None) -> int:
    from sizer.tui.app import SizerApp

    SizerApp(task_path or demo_task()).run()
    return 0
