"""The process that holds a managed server's process group: `python -m sizer.core.engines.serve_guard CMD...`.

sizer starts this guard as the leader of a new process group (its own session), and the guard
starts the server command in that group. The guard asks Linux to send it SIGTERM when its parent
(sizer) dies for any reason, kill -9 included (PR_SET_PDEATHSIG, prctl(2)); on SIGTERM or SIGINT it
terminates the whole group, so servers that fork workers (vLLM's tensor parallel workers) go
too. Elsewhere than Linux the guard still forwards signals; sizer's own `finally`/atexit stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
GRACE_S = 10.0        # how long the server may take to exit after SIGTERM before SIGKILL
PARENT_ENV = "SIZER_GUARD_PARENT"


def death_signal_setter(sig: int = signal.SIGTERM):
    """A function that asks the kernel to send `sig` to the calling process when its parent dies
    (Linux prctl); None elsewhere. Resolved here, so that calling it in a `preexec_fn` (between
    fork and exec) imports nothing."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux); False elsewhere."""
    setter = death_signal_setter(sig)
    return bool(setter and setter())


def _stop_group(child: subprocess.Popen) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    group = os.getpgrp()
    try:
        os.killpg(group, signal.SIGTERM)
        child.wait(timeout=GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    os.killpg(group, signal.SIGKILL)  # leftovers, and the guard itself


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m sizer.core.engines.serve_guard COMMAND...", file=sys.stderr)
        return 2
    die_with_parent(signal.SIGTERM)
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        return 1  # sizer died before the death signal was armed
    held: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:
        if held:
            _stop_group(held[0])
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    child = subprocess.Popen(argv)
    held.append(child)
    while child.poll() is None:
        time.sleep(0.2)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
