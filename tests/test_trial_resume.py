"""A trial killed with SIGKILL resumes from the trial cache: nothing stored is scored again, and
the final result equals that of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sizer.cli import main
from sizer.core.task.split import split
from sizer.core.results.store import TrialStore, default_path
from sizer.core.task.spec import load_task
from tiny_models import MINILM, banking_rows, write_task

LABELS = ("card_arrival", "lost_or_stolen_card", "declined_card_payment", "exchange_rate",
          "top_up_failed", "change_pin", "pending_transfer", "request_refund")
TEST_SIZE = 256  # four encoder batches of 64, each stored in its own transaction


def _task(tmp_path: Path) -> Path:
    return write_task(tmp_path / "banking-all.toml", banking_rows(LABELS, 40), name="banking-all",
                      kind="classify", labels=list(LABELS),
                      split={"test_size": TEST_SIZE, "seed": 0})


def _stored(db: Path) -> tuple[int, dict | None]:
    """(predictions stored, the trial row) in the cache at `db`, read while the writer runs."""
    if not db.exists():
        return 0, None
    with TrialStore.open(db) as store:
        trials = store.trials()
    return (trials[0]["predictions"], trials[0]) if trials else (0, None)


def _start_and_kill(argv: list[str], env: dict[str, str], db: Path, log: Path) -> int:
    """Run `sizer trial` in a subprocess, SIGKILL it once a batch is stored; the predictions kept."""
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "sizer", "trial", *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        try:
            while _stored(db)[0] == 0:
                assert proc.poll() is None, f"sizer exited {proc.returncode} first:\n{log.read_text()}"
                assert time.monotonic() < deadline, "no prediction stored in 300 s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept, trial = _stored(db)
    assert trial["finished"] is None, "the trial finished before it was killed"
    return kept


@pytest.mark.slow
def test_killed_trial_resumes_without_rescoring(trial_env, tmp_path, monkeypatch, capsys):
    task_path = _task(tmp_path)
    argv = [str(task_path), "--model", MINILM, "--strategy", "few-shot", "--json"]
    db = default_path()  # in the trial_env's SIZER_CACHE_DIR, shared with the subprocess
    kept = _start_and_kill(argv, trial_env, db, tmp_path / "killed.log")
    assert 0 < kept < TEST_SIZE, kept

    assert main(["trial", *argv]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["speed"]["cached"] == kept
    assert resumed["speed"]["scored"] == TEST_SIZE - kept  # nothing stored was scored again
    with TrialStore.open(db) as store:
        [trial] = store.trials()
        predictions = store.done_examples(trial["key"])
    assert trial["predictions"] == TEST_SIZE and trial["finished"] is not None
    assert trial["revision"] == resumed["revision"] and trial["revision"]  # the snapshot the trial ran on
    _, test = split(load_task(task_path))
    assert sorted(predictions) == sorted(e.id for e in test)

    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "fresh-cache"))
    assert main(["trial", *argv]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert fresh["speed"]["cached"] == 0 and fresh["speed"]["scored"] == TEST_SIZE
    assert resumed["metric"] == fresh["metric"]
    assert resumed["confusion"] == fresh["confusion"]
