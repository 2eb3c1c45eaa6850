"""`python -m sizer.tui [TASK.toml]`: the app without the TTY check (what `sizer serve` runs)."""

import sys

from sizer.tui.entry import run_app

sys.exit(run_app(sys.argv[1] if len(sys.argv) > 1 else None))
