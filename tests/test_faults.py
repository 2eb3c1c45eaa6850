"""Faults during a run: kill -9 then --resume, the report's write refused by the disk, out of memory
inside a trial, two runs sharing one trial cache. (A damaged cache file: tests/test_store.py.)

Every run uses the demo task with the tiny random-initialised model and MiniLM (tests/conftest.py),
everything it writes goes to the test's tmp_path, and each child process has a time limit.
Faults are injected at an exact point by tests/fault_hooks.py, so no test races a timer.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fault_hooks import child_env
from conftest import TINY

BANKING = str(Path(__file__).resolve().parents[1] / "examples" / "banking.toml")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# MiniLM is the larger of the two here, so it is the reference and its trials come first; the
# tiny model scores the 96 test examples in several packs, so its trial can be killed half done.
RUN = ["run", BANKING, "--models", f"{MINILM},{TINY}", "--strategies", "zero-shot,few-shot",
       "--limit", "96", "--target", "0.75"]
CHILD_TIMEOUT_S = 300


def _sizer(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sizer", *argv], env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S, stdin=subprocess.DEVNULL)


def _rows(db: Path) -> dict[tuple[str, str], float]:
    """(trial key, example id) -> when the prediction was stored, for every row of the cache."""
    conn = sqlite3.connect(db)
    try:
        return {(k, e): c for k, e, c in conn.execute("SELECT trial_key, example_id, created FROM predictions")}
    finally:
        conn.close()


def _check_cache(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        twice = conn.execute("SELECT trial_key, example_id FROM predictions GROUP BY trial_key, example_id"
                             " HAVING COUNT(*) > 1").fetchall()
        assert twice == []
    finally:
        conn.close()


def _decision(report: dict) -> dict:
    rec = report["recommendation"]
    return {k: rec.get(k) for k in ("met", "model", "strategy", "precision", "metric")}


@pytest.fixture
def env(trial_env, tmp_path) -> dict[str, str]:
    """trial_env with this machine's hardware figures measured once into its cache folder."""
    from sizer.core.hardware.profile import cache_path, detect

    detect()
    assert cache_path().exists()
    return trial_env


def _fresh_cache(env: dict[str, str], folder: Path) -> dict[str, str]:
    """Another, empty trial cache holding the same hardware figures (no second measurement)."""
    folder.mkdir()
    shutil.copy(Path(env["SIZER_CACHE_DIR"]) / "hardware.json", folder / "hardware.json")
    return {**env, "SIZER_CACHE_DIR": str(folder)}


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_scores_nothing_twice_and_decides_the_same(env, tmp_path):
    out = tmp_path / "r.toml"
    db = Path(env["SIZER_CACHE_DIR"]) / "trials.sqlite"
    killed = _sizer([*RUN, "--out", str(out)], child_env(env, tmp_path / "hooks", FAULT_KILL_AFTER="2:1"))
    assert killed.returncode == -9, killed.stderr  # SIGKILL after the second trial's first batch
    partial = tomllib.loads(out.read_text())
    assert partial["finished"] is False and len(partial["trials"]) == 1  # written after trial one
    first = partial["trials"][0]
    before = _rows(db)
    per_key: dict[str, int] = {}
    for key, _ in before:
        per_key[key] = per_key.get(key, 0) + 1
    [killed_key] = [k for k in per_key if k != first["key"]]
    kept = per_key[killed_key]  # the one committed batch of the killed trial
    assert 0 < kept < 96

    resumed = _sizer(["run", "--resume", str(out)], env)
    assert resumed.returncode in (0, 1), resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert f"trial {first['model']} {first['strategy']}: started" not in resumed.stderr  # reused
    final = tomllib.loads(out.read_text())
    assert final["finished"] is True
    after = _rows(db)
    _check_cache(db)
    assert all(after[row] == created for row, created in before.items())  # stored rows untouched
    ran = [t for t in final["trials"] if "speed" in t][1:]  # every trial but the reused first one
    [half] = [t for t in ran if t["key"] == killed_key]
    assert half["speed"]["cached"] == kept and half["speed"]["scored"] == half["metric"]["n"] - kept
    # Nothing scored twice: the resumed run scored exactly the rows that are new in the cache.
    assert sum(t["speed"]["scored"] for t in ran) == len(after) - len(before)

    again = _sizer([*RUN, "--out", str(tmp_path / "whole.toml")], _fresh_cache(env, tmp_path / "cache-2"))
    assert again.returncode == resumed.returncode, again.stderr
    whole = tomllib.loads((tmp_path / "whole.toml").read_text())
    assert _decision(final) == _decision(whole)
    assert [(t["model"], t["strategy"], t["status"]) for t in final["trials"]] == \
           [(t["model"], t["strategy"], t["status"]) for t in whole["trials"]]


@pytest.mark.slow
def test_report_write_refused_by_the_disk_keeps_the_previous_report(env, tmp_path):
    out = tmp_path / "reports" / "r.toml"
    out.parent.mkdir()
    kept = tmp_path / "written"
    # The second write of the report runs under a 512-byte file size limit: the kernel refuses
    # the temp file's write with EFBIG, as a full disk refuses it with ENOSPC.
    hooks = child_env(env, tmp_path / "hooks", FAULT_FSIZE_AT="2", FAULT_FSIZE_BYTES="512", FAULT_DIR=str(kept))
    proc = _sizer([*RUN, "--out", str(out)], hooks)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if "report" in x]
    assert line == (f"sizer: error: {out}: cannot write the report (File too large); the previous report is "
                    "intact; free some space or write it elsewhere; finished trials stay in the trial cache")
    assert out.read_bytes() == (kept / "report-1.toml").read_bytes()  # the first write, as it was
    assert len(tomllib.loads(out.read_text())["trials"]) == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.toml"]  # no temp file left behind


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs inside tmp_path (needs root and mount rights; skipped elsewhere, where the
    RLIMIT_FSIZE test above covers the same code path)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True,
                          timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30)


@pytest.mark.slow
def test_disk_full_while_the_report_is_written_keeps_the_previous_report(env, tmp_path, small_disk):
    out = small_disk / "r.toml"
    kept = tmp_path / "written"
    hooks = child_env(env, tmp_path / "hooks", FAULT_FILL_AT="2", FAULT_DIR=str(kept))
    proc = _sizer([*RUN, "--out", str(out)], hooks)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"sizer: error: {out}: cannot write the report (No space left on device); the previous report is intact; "
        "free some space or write it elsewhere; finished trials stay in the trial cache")
    assert out.read_bytes() == (kept / "report-1.toml").read_bytes()
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "filler-tail", "r.toml"]


@pytest.mark.slow
def test_first_report_write_refused_says_no_report_was_written(env, tmp_path):
    out = tmp_path / "r.toml"
    proc = _sizer([*RUN, "--out", str(out)], child_env(env, tmp_path / "hooks", FAULT_FSIZE_AT="1"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1].endswith(
        "cannot write the report (File too large); no report was written; free some space or write it "
        "elsewhere; finished trials stay in the trial cache")
    assert list(tmp_path.glob("*r.toml*")) == []


def _allocate_too_much() -> None:
    import torch

    torch.empty(1 << 60, dtype=torch.uint8)  # 1 EiB: the CPU allocator refuses it at once


def _cuda_out_of_memory() -> None:
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 23.65 GiB total capacity)")


def _python_memory_error() -> None:
    raise MemoryError()


@pytest.mark.parametrize("allocation", [_allocate_too_much, _cuda_out_of_memory, _python_memory_error],
                         ids=["cpu-allocator", "cuda-oom", "memory-error"])
def test_out_of_memory_in_a_trial_is_a_result_and_the_walk_goes_on(trial_env, tmp_path, monkeypatch, allocation):
    from sizer.core.results import report
    from sizer.core.trials import trial
    from sizer.core.events import TrialFinished
    from sizer.core.hardware.profile import simulated
    from sizer.core.decide.walk import walk
    from sizer.core.decide.types import RunSpec
    from sizer.core.results.store import TrialStore
    from sizer.core.task.spec import load_task

    real_make_runner = trial.make_runner

    def make_runner(entry, *args):
        runner = real_make_runner(entry, *args)
        if entry.id == TINY:  # the tiny model runs out of memory in its first forward pass
            real_predict = runner.predict

            def predict(task, examples, on_batch):
                def out_of_memory(rows):
                    allocation()
                real_predict(task, examples, out_of_memory)
            runner.predict = predict
        return runner

    monkeypatch.setattr(trial, "make_runner", make_runner)
    events = []
    spec = RunSpec(task=load_task(BANKING), models=(TINY, MINILM), strategies=("zero-shot", "few-shot"),
                   limit=96, target=0.75)
    with TrialStore.open(tmp_path / "t.sqlite") as store:
        run = walk(spec, store=store, here=simulated("8 vCPU 32GB"), sink=events.append)
    tiny = [t for t in run.trials if t.model == TINY]
    assert tiny and all(t.status == "oom" and t.reason.startswith("out of memory") for t in tiny)
    assert [(e.model, e.status) for e in events if isinstance(e, TrialFinished) and e.model == TINY] == \
           [(TINY, "oom")] * len(tiny)
    assert any(t.model == MINILM and t.status == "ok" for t in run.trials)  # the walk went on
    assert run.finished and run.recommendation.met and run.recommendation.model == MINILM
    written = report.to_dict(run)
    assert [t["status"] for t in written["trials"] if t["model"] == TINY] == ["oom"] * len(tiny)


@pytest.mark.slow
def test_two_runs_on_one_cache_lose_and_duplicate_nothing(env, tmp_path):
    db = Path(env["SIZER_CACHE_DIR"]) / "trials.sqlite"
    outs = [tmp_path / "one.toml", tmp_path / "two.toml"]
    procs = [subprocess.Popen([sys.executable, "-m", "sizer", *RUN, "--out", str(o)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for o in outs]
    try:
        errors = [p.communicate(timeout=CHILD_TIMEOUT_S)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == procs[1].returncode and procs[0].returncode in (0, 1), errors
    reports = [tomllib.loads(o.read_text()) for o in outs]
    assert _decision(reports[0]) == _decision(reports[1])
    _check_cache(db)
    rows = _rows(db)
    for data in reports:
        for t in data["trials"]:
            if t["status"] != "ok":
                continue
            stored = {e for k, e in rows if k == t["key"]}
            assert len(stored) == t["metric"]["n"] == t["split"]["test"]  # none lost, each once
    conn = sqlite3.connect(db)
    finished = conn.execute("SELECT key FROM trials WHERE status = 'ok'").fetchall()
    conn.close()
    ok_keys = {t["key"] for data in reports for t in data["trials"] if t["status"] == "ok"}
    assert {k for (k,) in finished} == ok_keys
