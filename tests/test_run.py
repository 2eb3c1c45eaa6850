"""`sizer run`: the ladder walk end to end on the demo task, the TOML report read back with tomllib,
`sizer show`, exit codes, interrupt and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from sizer.cli import main
from sizer.core.results import report
from sizer.core.decide import verdict
from sizer.core.hardware.profile import simulated
from sizer.core.decide.walk import _ladder_order, walk
from sizer.core.decide.types import RunSpec
from sizer.core.results.store import TrialStore
from sizer.core.task.spec import load_task

from conftest import TINY, interruptible

BANKING = "examples/banking.toml"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MODELS = f"{MINILM},{TINY}"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_walk_recommends_the_encoder_and_the_report_round_trips(trial_env, tmp_path):
    spec = RunSpec(task=load_task(BANKING), models=(TINY, MINILM), strategies=("zero-shot", "few-shot"), profile=simulated("1x RTX 4090"))
    with TrialStore.open(tmp_path / "t.sqlite") as store:
        run = walk(spec, store=store, here=simulated("8 vCPU 32GB"))
    rec = run.recommendation
    assert rec.met and rec.model == MINILM, rec.reasons
    assert rec.metric["low"] >= 0.85 and rec.on_profile["fit"] == "fits"
    assert any("random" in r or "below" in r or "stopped early" in r for r in rec.reasons if TINY.split("/")[-1] in r)
    path = tmp_path / "rec.toml"
    report.write_report(path, run)
    data = tomllib.loads(path.read_text())
    expected = report.to_dict(run)
    data.pop("created"), expected.pop("created")
    assert data == expected
    assert data["schema"] == report.SCHEMA and data["recommendation"]["model"] == MINILM
    statuses = {(t["model"], t["strategy"]): t["status"] for t in data["trials"]}
    assert statuses[(TINY, "zero-shot")] in ("ok", "stopped-early")


def test_run_cli_exit_codes_and_show(trial_env, tmp_path, capsys):
    out = tmp_path / "rec.toml"
    code = main(["run", BANKING, "--models", MODELS, "--strategies", "zero-shot", "--limit", "48",
                 "--target", "0.75", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "recommendation" in stdout and MINILM in stdout
    assert "trial " in stderr and "recommendation" not in stderr  # progress on stderr, results on stdout
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert MINILM in shown and "next steps" in shown
    # an unreachable absolute target: nothing meets it, exit 1, with levers named
    code = main(["run", BANKING, "--models", MINILM, "--strategies", "zero-shot", "--limit", "24",
                 "--target", "0.999", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["recommendation"]["met"] is False and data["recommendation"]["next_steps"]


@pytest.mark.parametrize("argv, needle", [
    (["--budget", "soon"], "--budget"),
    (["--strategies", "zero-shot,magic"], "magic"),
    (["--models", MINILM, "--family", "encoders"], "not both"),
    (["--target", "3"], "--target"),
    (["--limit", "0"], "--limit"),
])
def test_bad_run_input_is_one_line_exit_2(trial_env, capsys, argv, needle):
    code = main(["run", BANKING, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0] and err[0].startswith("sizer: error:")


def test_show_rejects_a_file_that_is_not_a_report(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = 99\n")
    assert main(["show", str(bad)]) == 2
    assert "schema" in capsys.readouterr().err


def test_ladder_binary_search_finds_the_smallest_meeting_size():
    probes = []

    def meets(i):
        probes.append(i)
        return i <= 5

    assert _ladder_order(9)(meets) == 5
    assert len(probes) <= 4  # log2(8) + 1, not 8


def test_paired_bound_detects_inferiority():
    ref = {str(i): 1.0 for i in range(100)}
    same = dict(ref)
    worse = {str(i): (1.0 if i % 5 else 0.0) for i in range(100)}  # 20 points lower
    assert verdict.paired_lower_bound(same, ref) == 0.0
    assert verdict.paired_lower_bound(worse, ref) < -0.1


@pytest.mark.slow
def test_interrupt_writes_a_partial_report_and_resume_finishes(trial_env, tmp_path):
    out = tmp_path / "rec.toml"
    # SmolLM2 first (the largest): its trials take long enough for the interrupt to land mid-run
    argv = [sys.executable, "-m", "sizer", "run", BANKING, "--models", f"{MINILM},{SMOLLM2}", "--strategies", "zero-shot,few-shot",
            "--limit", "24", "--target", "0.75", "--out", str(out)]
    proc = subprocess.Popen(argv, env=trial_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    deadline = time.time() + 300
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert out.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130, err
    partial = tomllib.loads(out.read_text())
    assert partial["finished"] is False and partial["trials"]
    done_before = [(t["model"], t["strategy"]) for t in partial["trials"] if t["status"] == "ok"]
    resumed = subprocess.run([sys.executable, "-m", "sizer", "run", "--resume", str(out)], env=trial_env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    final = tomllib.loads(out.read_text())
    assert final["finished"] is True and final["recommendation"]["model"] == MINILM
    for model, strategy in done_before:  # finished trials were reused, not run again
        assert f"trial {model} {strategy}: started" not in resumed.stderr


def test_skip_stops_one_trial_and_the_walk_goes_on(trial_env, tmp_path):
    import threading

    skip = threading.Event()
    skip.set()  # lands on the first trial's first batch
    spec = RunSpec(task=load_task(BANKING), models=(TINY, MINILM), strategies=("zero-shot", "few-shot"), target=0.75)
    with TrialStore.open(tmp_path / "t.sqlite") as store:
        run = walk(spec, store=store, here=simulated("8 vCPU 32GB"), skip=skip)
    first, second, *_ = run.trials  # MiniLM is the largest here, so the reference
    assert (first.model, first.strategy, first.status) == (MINILM, "zero-shot", "skipped") and "user" in first.reason
    assert (second.model, second.strategy, second.status) == (MINILM, "few-shot", "ok") and not skip.is_set()
    assert run.recommendation.met and (run.recommendation.model, run.recommendation.strategy) == (MINILM, "few-shot")
