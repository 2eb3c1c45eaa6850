"""Faults injected into a `python -m sizer` child process at an exact point, so a fault test is
deterministic instead of racing a timer. The child imports this through a `sitecustomize.py`
that `child_env` writes; the faults themselves are real: a SIGKILL the process sends itself, and
a file-size limit (RLIMIT_FSIZE) the kernel enforces on the report's write.

    FAULT_KILL_AFTER = "T:B"   SIGKILL right after the B-th stored batch of the T-th trial (1-based)
    FAULT_FSIZE_AT = "N"       the N-th report write runs under RLIMIT_FSIZE = FAULT_FSIZE_BYTES
    FAULT_FILL_AT = "N"        before the N-th report write, fill the report's file system (a small
                               tmpfs the test mounted) with a filler file until it is full
    FAULT_DIR = folder         the child copies each report it wrote there (report-1.toml, ...)
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child_env(base: dict[str, str], folder: Path, **faults: str) -> dict[str, str]:
    """`base` plus a sitecustomize in `folder` that installs the faults named in `faults`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text("import fault_hooks\nfault_hooks.install()\n")
    path = os.pathsep.join([str(folder), str(HERE), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**base, "PYTHONPATH": path, **faults}


def install() -> None:
    if os.environ.get("FAULT_KILL_AFTER"):
        _kill_after_batch(*(int(x) for x in os.environ["FAULT_KILL_AFTER"].split(":")))
    if os.environ.get("FAULT_FSIZE_AT") or os.environ.get("FAULT_FILL_AT") or os.environ.get("FAULT_DIR"):
        _wrap_report_writes(int(os.environ.get("FAULT_FSIZE_AT", "0")), int(os.environ.get("FAULT_FSIZE_BYTES", "512")),
                            int(os.environ.get("FAULT_FILL_AT", "0")))


def _kill_after_batch(trial: int, batch: int) -> None:
    from sizer.core.results.store import TrialStore

    original = TrialStore.add_predictions
    keys: list[str] = []
    batches: dict[str, int] = {}

    def add_predictions(self, key, rows):
        stored = original(self, key, rows)  # committed: the kill lands after the transaction
        if key not in keys:
            keys.append(key)
        batches[key] = batches.get(key, 0) + 1
        if len(keys) == trial and key == keys[-1] and batches[key] == batch:
            os.kill(os.getpid(), signal.SIGKILL)
        return stored

    TrialStore.add_predictions = add_predictions


def _fill(folder: Path) -> None:
    """Write zeros into `folder` until its file system says ENOSPC."""
    chunk = bytes(64 * 1024)
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    try:  # the last pages a smaller write can still take
        with open(folder / "filler-tail", "wb", buffering=0) as handle:
            while True:
                handle.write(b"\0")
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise


def _wrap_report_writes(fault_at: int, limit_bytes: int, fill_at: int = 0) -> None:
    from sizer.core.results import report

    original = report.write_report
    calls = [0]
    keep = Path(os.environ["FAULT_DIR"]) if os.environ.get("FAULT_DIR") else None

    def write_report(path, run):
        calls[0] += 1
        if calls[0] == fill_at:
            _fill(Path(path).parent)
        if calls[0] != fault_at:
            original(path, run)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, keep / f"report-{calls[0]}.toml")
            return
        # Ignored, SIGXFSZ no longer kills the process: the write fails with EFBIG instead.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
        try:
            original(path, run)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    report.write_report = write_report
