"""`sizer trial` end to end on the offline models, the scoring mechanics on a small
random-initialised model in a private Hugging Face cache, and bad input through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import NOT_DOWNLOADED, TINY, TINY_PICKLE, TINY_REMOTE, TINY_SHORT
from sizer.cli import main
from oracles import brute_force_loglik
from sizer.core.engines.causal_lm import CausalLM
from sizer.core.catalog.model_catalog import family_files, load_catalog
from sizer.core.errors import SizerError
from sizer.core.paths import shipped_catalogs, shipped_examples
from sizer.core.catalog.resolve import locate
from sizer.core.trials.runners.lm_classify import LMClassifyRunner
from sizer.core.task.split import split
from sizer.core.results.store import TrialStore
from sizer.core.task.spec import load_task
from sizer.core.trials.trial import limit_examples, run_trial
from sizer.core.trials.types import TrialSpec
from tiny_models import MINILM, SMOLLM2, banking_rows, write_task

BANKING = str(shipped_examples() / "banking.toml")
BANKING_LABELS = 8


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["trial", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def trial_json(capsys, *argv: str) -> tuple[dict, str]:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out), err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("sizer: error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def assert_sane_result(result: dict, limit: int) -> None:
    metric = result["metric"]
    assert metric["low"] <= metric["value"] <= metric["high"]
    assert 0.0 <= metric["low"] and metric["high"] <= 1.0
    assert metric["n"] == result["split"]["test"] == limit
    assert result["split"]["train"] > 0
    assert result["speed"]["examples_per_s"] > 0
    assert result["speed"]["scored"] + result["speed"]["cached"] == limit
    memory = result["memory"]
    # In this long-lived test process a small model can fit in memory an earlier test's model
    # freed; the trial then says so instead of reporting a number (a fresh process measures it:
    # test_a_fresh_process_measures_peak_memory).
    assert (memory["peak_bytes"] or 0) > 0 or memory["measured_by"].startswith("not measurable here")
    assert memory["predicted_bytes"] > 0


# ---- 1. end to end on the offline models ------------------------------------------------------


@pytest.mark.slow
def test_minilm_few_shot_json_is_well_above_chance(trial_env, capsys):
    result, _ = trial_json(capsys, BANKING, "--model", MINILM, "--strategy", "few-shot", "--limit", "16")
    assert_sane_result(result, 16)
    assert result["settings"]["shots_per_label"] == 8
    assert result["metric"]["name"] == "accuracy"
    assert result["metric"]["value"] >= 0.6  # chance is 1/8; it measured 0.95 on all 160
    assert sum(sum(row.values()) for row in result["confusion"].values()) == 16


@pytest.mark.slow
def test_minilm_zero_shot_prints_metric_interval_speed_and_memory(trial_env, capsys):
    code, out, err = run_cli(capsys, BANKING, "--model", "all-MiniLM-L6-v2", "--strategy", "zero-shot", "--limit", "16")
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "95% CI" in lines["accuracy"] and "n=16" in lines["accuracy"]
    assert "examples/s" in lines["speed"]
    assert "peak" in lines["memory"] and "GiB" in lines["memory"]
    assert "shots_per_label=0" in lines["strategy"]
    assert "trial " in err and "trial " not in out  # progress on stderr, results on stdout


@pytest.mark.slow
def test_smollm2_gguf_few_shot(trial_env, capsys):
    result, _ = trial_json(capsys, BANKING, "--model", SMOLLM2, "--strategy", "few-shot",
                           "--limit", "8", "--shots", "1")
    assert_sane_result(result, 8)
    assert result["settings"]["demonstrations"] == BANKING_LABELS
    assert result["settings"]["chat_template"] is True
    assert result["settings"]["prefix_tokens"] > 0


def test_shipped_catalog_locates_the_offline_models():
    if not family_files(shipped_catalogs()):
        pytest.skip("catalogs/*.toml not generated yet (python -m sizer.core.catalog.build)")
    catalog = load_catalog()
    for model_id in (SMOLLM2, MINILM):
        assert locate(catalog.get(model_id)).path.exists()


# ---- 2. mechanics on a tiny random-initialised model from the Hugging Face cache -------------


def _prepared_runner(task, spec: TrialSpec, entry):
    """The runner the trial used, prepared again on the same split, to read its prompt plan:
    (runner, settings, the scored test examples in plan order, the whole test split)."""
    runner = LMClassifyRunner(lambda: CausalLM.load(locate(entry), "cpu", torch.float32),
                              entry.instruct, spec.strategy, spec.shots, task.seed)
    runner.load()
    train, test = split(task)
    scored = limit_examples(test, spec.limit, task.seed, task.kind)
    settings, _, _ = runner.prepare(task, train, scored)
    return runner, settings, scored, test


@pytest.mark.parametrize("strategy", ["zero-shot", "few-shot"])
def test_tiny_model_scores_match_brute_force_without_prefix_reuse(trial_env, tmp_path, strategy):
    task = load_task(BANKING)
    # one demonstration per label keeps the brute-force passes short
    spec = TrialSpec(model=TINY, strategy=strategy, limit=16, shots=1 if strategy == "few-shot" else None)
    with TrialStore.open(tmp_path / "trials.sqlite") as store:
        result = run_trial(task, spec, store=store)
        stored = store.done_examples(result.key)
    assert result.revision == "0123456789abcdef0123456789abcdef01234567"  # the HF cache snapshot
    assert result.split["test"] == len(stored) == 16
    assert result.settings["prefix_tokens"] > 0
    assert result.settings["demonstrations"] == (BANKING_LABELS if strategy == "few-shot" else 0)

    runner, settings, scored, _ = _prepared_runner(task, spec, load_catalog().get(TINY))
    plan = runner.plan
    assert settings["prefix_tokens"] == result.settings["prefix_tokens"]
    parts = {e.id: list(part) for e, part in zip(scored, plan.parts)}
    by_id = {e.id: e for e in task.examples}
    checked = 0
    for example_id, record in list(stored.items())[:3]:
        part = parts[example_id]
        assert len(record["scores"]) == BANKING_LABELS
        for score, continuation in zip(record["scores"], plan.continuations):
            ids = list(plan.prefix) + part + list(continuation)
            assert score == pytest.approx(brute_force_loglik(runner.lm.model, ids, len(continuation)), abs=1e-4)
            checked += 1
        assert record["gold"] == by_id[example_id].label
    assert checked == 3 * BANKING_LABELS


def test_demonstrations_come_from_the_train_split_only(trial_env):
    task = load_task(BANKING)
    spec = TrialSpec(model=TINY, strategy="few-shot", limit=16)
    runner, settings, _, full_test = _prepared_runner(task, spec, load_catalog().get(TINY))
    prefix = runner.plan.prefix_text
    train, _ = split(task)
    shown = [e for e in train if e.text in prefix]
    assert len(shown) == settings["demonstrations"] > 0
    assert not [e.source for e in full_test if e.text in prefix]


# ---- 4, 5. bad input through the CLI ----------------------------------------------------------


def _generate_task(tmp_path: Path) -> str:
    rows = [{"text": f"Say the number {n}.", "reference": str(n)} for n in range(6)]
    return str(write_task(tmp_path / "numbers.toml", rows, name="numbers", kind="generate"))


def test_unknown_model_names_the_closest(trial_env, capsys):
    code, _, err = run_cli(capsys, BANKING, "--model", "SmolLM2-135M-Instrct")
    assert_one_line_error(code, err, "SmolLM2-135M-Instrct", SMOLLM2)


def test_unknown_strategy(trial_env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["trial", BANKING, "--model", TINY, "--strategy", "many-shot"])
    err = capsys.readouterr().err
    assert_one_line_error(exit_.value.code, err, "many-shot", "zero-shot")


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_must_be_positive(trial_env, capsys, limit):
    code, _, err = run_cli(capsys, BANKING, "--model", TINY, f"--limit={limit}")
    assert_one_line_error(code, err, "--limit")


def test_model_not_downloaded(trial_env, capsys):
    code, _, err = run_cli(capsys, BANKING, "--model", NOT_DOWNLOADED)
    assert_one_line_error(code, err, NOT_DOWNLOADED, "not downloaded", f"hf download {NOT_DOWNLOADED}")


def test_encoder_on_a_generate_task(trial_env, tmp_path, capsys):
    code, _, err = run_cli(capsys, _generate_task(tmp_path), "--model", MINILM)
    assert_one_line_error(code, err, MINILM, "encoder", "generate")


def test_pickled_weights_are_refused_without_allow_pickle(trial_env, capsys):
    code, _, err = run_cli(capsys, BANKING, "--model", TINY_PICKLE, "--limit", "8")
    assert_one_line_error(code, err, TINY_PICKLE, "--allow-pickle")


def test_allow_pickle_loads_pickled_weights(trial_env, capsys):
    result, _ = trial_json(capsys, BANKING, "--model", TINY_PICKLE, "--limit", "8", "--strategy", "zero-shot",
                           "--allow-pickle")
    assert_sane_result(result, 8)


def test_a_fresh_process_measures_peak_memory(trial_env):
    proc = subprocess.run(
        [sys.executable, "-m", "sizer", "trial", BANKING, "--model", TINY, "--limit", "8", "--json"],
        capture_output=True, text=True, env={**os.environ, **trial_env}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    memory = json.loads(proc.stdout)["memory"]
    assert memory["peak_bytes"] > 2**20 and memory["measured_by"] == "RSS high-water mark"


def test_remote_code_is_not_run_without_trust_remote_code(trial_env, tiny_hub, capsys):
    code, _, err = run_cli(capsys, BANKING, "--model", TINY_REMOTE, "--limit", "8")
    assert not tiny_hub.remote_marker.exists()
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"sizer: error: {TINY_REMOTE}")
    assert "--trust-remote-code" in err


def test_remote_code_never_runs_by_default(trial_env, tiny_hub):
    task = load_task(BANKING)
    with pytest.raises((ValueError, SizerError)):
        run_trial(task, TrialSpec(model=TINY_REMOTE, limit=8))
    assert not tiny_hub.remote_marker.exists()


def _task_with_one_long_example(tmp_path: Path) -> tuple[str, str]:
    """Two BANKING77 intents and one example far longer than TINY_SHORT's 256-token context,
    placed in the test split."""
    rows = banking_rows(("card_arrival", "change_pin"), 12)
    for n in range(50):
        long = {"text": f"My card ({n}) has not arrived. " + " ".join(f"detail{i}" for i in range(300)),
                "label": "card_arrival"}
        path = write_task(tmp_path / "short.toml", rows + [long], name="short", kind="classify",
                          labels={"card_arrival": "a new card has not arrived", "change_pin": "change the PIN"})
        task = load_task(path)
        _, test = split(task)
        found = [e for e in test if e.text == long["text"]]
        if found:
            return str(path), found[0].source
    raise AssertionError("the long example never landed in the test split")


def test_example_longer_than_the_context_is_dropped_with_a_warning(trial_env, tmp_path, capsys):
    path, source = _task_with_one_long_example(tmp_path)
    test_count = len(split(load_task(path))[1])
    result, _ = trial_json(capsys, path, "--model", TINY_SHORT, "--strategy", "zero-shot")
    assert result["split"]["test"] == result["metric"]["n"] == test_count - 1
    dropped = [w for w in result["warnings"] if "longer than" in w]
    assert len(dropped) == 1 and source in dropped[0] and "256" in dropped[0]


def test_one_long_example_does_not_turn_few_shot_into_zero_shot(trial_env, tmp_path, capsys):
    path, _ = _task_with_one_long_example(tmp_path)
    result, _ = trial_json(capsys, path, "--model", TINY_SHORT, "--strategy", "few-shot")
    assert result["settings"]["demonstrations"] > 0
    assert not [w for w in result["warnings"] if "few-shot ran as zero-shot" in w]
