"""sizer shows its own work and only its own: a model load is an event with the loader's own
progress, third-party progress bars and warnings stay off stderr (and the JSON stream) unless
--debug, and the first scores of a trial come back at once."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tqdm import tqdm

from sizer.core import events

from sizer.core.engines import model_cache
from sizer.core.engines.packing import Request, make_packs
from sizer.core.engines.library_output import report_bars
from sizer.core.trials.runners.encoder_classify import batches
from tiny_models import MINILM, SMOLLM2

REPO = Path(__file__).resolve().parents[1]
BANKING = str(REPO / "examples" / "banking.toml")

# Every line sizer itself writes to stderr during a trial (events.describe), nothing else.
SIZER_LINE = re.compile(
    r"(loading \S+ \(\d+ of \d+\)(: .+ \d+/\d+)?"
    r"|trial \S+ \S+: (preparing|started on \d+ examples|\d+/\d+( metric .*)?( [\d.e-]+ ex/s)?|ok .*|stopped-early .*)"
    r"|warning: .*)"
)


@pytest.fixture(autouse=True)
def quiet_bars(monkeypatch):
    """As after `silence_libraries()` without --debug (an in-process `main(["--debug", ...])` of an
    earlier test may have left it showing)."""
    from sizer.core.engines import library_output

    monkeypatch.setattr(library_output, "_show_bars", False)


def test_first_pack_is_small_the_rest_full():
    requests = [Request((1,) * 30, ((2,), (3,))) for _ in range(10)]  # 32 tokens each
    assert make_packs(requests, 128) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # 4 x 32 = 128 per pack
    # First pack: one request (32 > 1 token, but a pack always takes one); then 4 per pack again.
    assert make_packs(requests, 128, first_tokens=1) == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert make_packs(requests, 128, first_tokens=64) == [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]


def test_encoder_batches_start_small():
    assert [len(b) for b in batches(list(range(10)), size=4, first=2)] == [2, 4, 4]
    assert [len(b) for b in batches(list(range(3)), size=4, first=4)] == [3]
    assert batches([], size=4, first=2) == []


def test_bars_inside_report_bars_print_nothing_and_report_their_counts():
    seen: list[tuple[int, int, str]] = []
    out = io.StringIO()
    with report_bars(lambda done, total, what: seen.append((done, total, what))):
        for _ in tqdm(range(5), desc="Converting and de-quantizing GGUF tensors...", file=None, mininterval=0):
            pass
    assert seen and seen[-1] == (5, 5, "Converting and de-quantizing GGUF tensors")
    # Outside, and on another thread inside, bars are untouched: they print where told.
    for _ in tqdm(range(3), file=out, mininterval=0, disable=False):
        pass
    other = io.StringIO()
    with report_bars(lambda *a: seen.append(a)):
        count = len(seen)
        worker = threading.Thread(target=lambda: [None for _ in tqdm(range(3), file=other, mininterval=0, disable=False)])
        worker.start()
        worker.join()
        assert len(seen) == count
    assert "3/3" in out.getvalue() and "3/3" in other.getvalue()


def test_report_bars_silences_a_bar_that_would_print(capsys):
    with report_bars(lambda *a: None):
        for _ in tqdm(range(3), disable=False, mininterval=0):
            pass
    assert capsys.readouterr().err == ""


def test_transformers_bars_report_even_while_its_bars_are_off():
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    seen = []
    try:
        with report_bars(lambda done, total, what: seen.append((done, total, what))):
            for _ in hf_logging.tqdm(range(4), desc="Loading weights"):
                pass
        outside = hf_logging.tqdm(range(2))
    finally:
        hf_logging.enable_progress_bar()
    assert seen[-1] == (4, 4, "Loading weights")
    assert type(outside).__name__ == "EmptyTqdm"  # other callers still get transformers' own choice


def test_a_load_is_announced_and_a_reused_model_is_not():
    said = []
    model_cache.release()
    try:
        with model_cache.announcing(lambda: said.append("load")):
            model_cache.get_or_load(("test", 1), "cpu", lambda: object())
            model_cache.get_or_load(("test", 1), "cpu", lambda: object())  # held: reused
            model_cache.fresh(lambda: object())  # a model to be trained is always loaded
        model_cache.get_or_load(("test", 2), "cpu", lambda: object())  # outside: nobody told
    finally:
        model_cache.release()
    assert said == ["load", "load"]


def test_loading_lines():
    assert events.describe(events.ModelLoading("org/m", 2, 3)) == "loading org/m (2 of 3)"
    line = events.describe(events.ModelLoading("org/m", 1, 1, 136, 272, "converting and de-quantizing GGUF tensors"))
    assert line == "loading org/m (1 of 1): converting and de-quantizing GGUF tensors 136/272"
    assert events.describe(events.TrialProgress("m", "zero-shot", 1, 80, 1.0, 0.21, 1.0, 0.25)).endswith(" 0.25 ex/s")
    assert SIZER_LINE.fullmatch(line)


QUIET_SWITCHES = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
                  "TRANSFORMERS_NO_ADVISORY_WARNINGS")


def run_sizer(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sizer", *argv], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)


@pytest.mark.slow
def test_trial_stderr_holds_sizer_lines_only(trial_env):
    """The GGUF load prints transformers' "Converting and de-quantizing GGUF tensors" tqdm bar
    unless sizer silences it; its counts come back as sizer's own loading lines instead."""
    proc = run_sizer(trial_env, "trial", BANKING, "--model", SMOLLM2, "--strategy", "zero-shot", "--limit", "4")
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "%|" not in proc.stderr
    lines = proc.stderr.splitlines()
    strays = [line for line in lines if not SIZER_LINE.fullmatch(line)]
    assert not strays, strays
    assert lines[0] == f"loading {SMOLLM2} (1 of 1)"
    assert any(re.fullmatch(rf"loading {re.escape(SMOLLM2)} \(1 of 1\): converting and de-quantizing GGUF tensors "
                            r"\d+/\d+", line) for line in lines)


@pytest.mark.slow
def test_json_stream_holds_events_only_and_debug_shows_the_libraries(trial_env):
    argv = ("trial", BANKING, "--model", MINILM, "--strategy", "zero-shot", "--limit", "4", "--json")
    quiet = run_sizer(trial_env, *argv)
    assert quiet.returncode == 0, quiet.stderr
    kinds = [json.loads(line)["event"] for line in quiet.stderr.splitlines()]  # each line is one JSON event
    assert kinds[0] == "ModelLoading" and "TrialStarted" in kinds and kinds[-1] == "TrialFinished"
    assert json.loads(quiet.stdout)["model"] == MINILM
    # As a user's shell would have it: without the switches an in-process `main()` of an earlier
    # test may have left in this process's environment.
    shell = {k: v for k, v in trial_env.items() if k not in QUIET_SWITCHES}
    loud = run_sizer(shell, "--debug", *argv)
    assert loud.returncode == 0, loud.stderr
    assert "%|" in loud.stderr  # transformers' "Loading weights" bar: what the quiet run kept off


@pytest.mark.slow
def test_a_walk_announces_each_model_load_once_with_its_place(trial_env, tmp_path):
    """MiniLM (22.7M) is the reference, then the tiny causal LM tops its own ladder: two loads, "1 of
    2" and "2 of 2"; each model's second strategy reuses the held model and announces nothing."""
    from conftest import TINY
    from sizer.core.hardware.profile import simulated
    from sizer.core.decide.walk import walk
    from sizer.core.decide.types import RunSpec
    from sizer.core.results.store import TrialStore
    from sizer.core.task.spec import load_task

    seen: list[events.Event] = []
    spec = RunSpec(task=load_task(BANKING), models=(TINY, MINILM), strategies=("zero-shot", "few-shot"), limit=16)
    model_cache.release()  # nothing held from an earlier test
    with TrialStore.open(tmp_path / "t.sqlite") as store:
        run = walk(spec, store=store, here=simulated("8 vCPU 32GB"), sink=seen.append)
    assert not model_cache.holding()  # the run is over: its weights are freed
    announced = [(e.model, e.index, e.count) for e in seen if isinstance(e, events.ModelLoading) and not e.total]
    assert announced == [(MINILM, 1, 2), (TINY, 2, 2)]
    started = [(e.model, e.strategy) for e in seen if isinstance(e, events.TrialStarted)]
    assert len(started) == len([t for t in run.trials if t.result is not None]) >= 3
    preparing = [(e.model, e.strategy) for e in seen if isinstance(e, events.TrialPreparing)]
    assert preparing == started  # every trial says it prepares before scoring starts
