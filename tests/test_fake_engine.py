"""The fake engine (sizer.core.engines.fake) drives the walk, the decision and the report with no
weights and no torch model; and the engine registry, which another package extends with one entry
point and no edit to sizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib

import pytest

from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.decide.walk import walk
from sizer.core.decide.types import RunSpec
from sizer.core.engines import engine_name, get_engine, registered
from sizer.core.engines.fake import FakeLM
from sizer.core.engines.protocol import LanguageModel
from sizer.core.errors import SizerError
from sizer.core.hardware.profile import simulated
from sizer.core.paths import shipped_examples
from sizer.core.results.report import read_report, write_report
from sizer.core.results.store import TrialStore
from sizer.core.task.spec import load_task

BANKING = shipped_examples() / "banking.toml"
# 7.6B, 3.1B, 1.5B, 0.5B: the walk starts at the largest (the reference), then bisects the rest
QWEN = ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-3B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct")
H100 = "1x H100 80GB"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture
def fake_walk(tmp_path, catalog):
    def run(target: float):
        spec = RunSpec(task=load_task(BANKING), models=QWEN, strategies=("zero-shot", "few-shot"), engine="fake",
                       target=target, limit=64)
        with TrialStore.open(tmp_path / "trials.sqlite") as store:
            return walk(spec, store=store, here=simulated(H100), catalog=catalog)

    return run


def test_the_walk_on_the_fake_engine_picks_the_smallest_model_that_meets_the_target(fake_walk):
    run = fake_walk(0.3)
    tried = [t for t in run.trials if t.result is not None]
    assert tried[0].model == QWEN[0]  # the largest that fits comes first
    assert {t.result.settings["engine"] for t in tried} == {"fake"}
    rec = run.recommendation
    assert rec.met and rec.metric["low"] >= 0.3
    # every smaller model that was tried missed the target with confidence
    smaller = [t for t in tried if t.params < rec.params]
    assert smaller and all(t.result.metric.low < 0.3 or t.status != "ok" for t in smaller)


def test_a_second_walk_on_the_same_cache_scores_nothing_again_and_decides_the_same(fake_walk):
    first = fake_walk(0.3)
    again = fake_walk(0.3)
    assert [t.result.speed["scored"] for t in again.trials if t.result] == [0] * len(
        [t for t in again.trials if t.result])
    assert (again.recommendation.model, again.recommendation.strategy) == (
        first.recommendation.model, first.recommendation.strategy)


def test_a_target_no_fake_model_meets_says_so_and_names_levers(fake_walk):
    run = fake_walk(0.95)
    assert not run.recommendation.met and run.recommendation.next_steps
    assert all(t.status in ("ok", "stopped-early") for t in run.trials)


def test_the_report_of_a_fake_walk_reads_back_with_its_engine(fake_walk, tmp_path):
    run = fake_walk(0.3)
    path = tmp_path / "report.toml"
    write_report(path, run)
    data = tomllib.loads(path.read_text())
    assert data["run"]["engine"] == "fake"
    assert {t["engine"] for t in data["trials"]} == {"fake"}  # each trial names the engine it ran on
    assert data["recommendation"]["model"] == run.recommendation.model
    assert read_report(path)["recommendation"]["strategy"] == run.recommendation.strategy


def test_language_models_follow_the_protocol():
    from sizer.core.engines.causal_lm import CausalLM
    from sizer.core.engines.llama_cpp import LlamaCppLM
    from sizer.core.engines.openai_lm import RemoteLM

    assert isinstance(FakeLM("m", 1.0), LanguageModel)
    for cls in (CausalLM, LlamaCppLM, RemoteLM):
        missing = [name for name in ("max_context", "encode", "has_chat_template", "prefix_cache", "score", "generate")
                   if not hasattr(cls, name)]
        assert not missing, (cls.__name__, missing)
    for name in registered():
        engine = get_engine(name)
        assert {"place", "for_trial", "key_settings", "predicted_peak", "runs"} <= set(dir(engine)), name
        assert engine.strategies and engine.kinds and engine.estimate_as in ("transformers", "llama.cpp", "vllm")


def test_an_unknown_trial_engine_is_one_line_naming_the_registered_ones():
    with pytest.raises(SizerError, match=r"--engine toy: unknown engine for trials; use one of transformers, llama.cpp, fake"):
        engine_name("toy")


TOY = '''
"""A third-party engine: one module, registered by one entry point."""
from sizer.core.engines.fake import FakeEngine, FakeLM


class ToyEngine(FakeEngine):
    @classmethod
    def for_trial(cls, entry, placement, spec):
        return FakeLM("toy", 0.5)

    @classmethod
    def key_settings(cls, placement, spec):
        return {"engine": "toy"}
'''


@pytest.fixture
def toy_package(tmp_path) -> dict[str, str]:
    """An installed distribution (a module and its .dist-info with an entry point), found through
    PYTHONPATH as pip would leave it in site-packages."""
    site = tmp_path / "site"
    (site / "toy_engine-0.1.dist-info").mkdir(parents=True)
    (site / "toy_engine.py").write_text(TOY)
    (site / "toy_engine-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-engine\nVersion: 0.1\n")
    (site / "toy_engine-0.1.dist-info" / "entry_points.txt").write_text(
        textwrap.dedent("""
        [sizer.engines]
        toy = toy_engine:ToyEngine
        """))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
            "SIZER_CACHE_DIR": str(tmp_path / "cache")}


def test_an_engine_from_another_package_runs_trials_and_walks(toy_package, tmp_path):
    trial = subprocess.run([sys.executable, "-m", "sizer", "trial", str(BANKING), "--model", QWEN[2],
                            "--engine", "toy", "--limit", "24", "--json"],
                           env=toy_package, capture_output=True, text=True, timeout=300)
    assert trial.returncode == 0, trial.stderr[-2000:]
    assert json.loads(trial.stdout)["settings"]["engine"] == "toy"
    out = tmp_path / "run.toml"
    run = subprocess.run([sys.executable, "-m", "sizer", "run", str(BANKING), "--models", ",".join(QWEN[1:3]),
                          "--strategies", "zero-shot", "--engine", "toy", "--limit", "24", "--target", "0.3",
                          "--no-download", "--out", str(out)],
                         env=toy_package, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = tomllib.loads(out.read_text())
    assert report["run"]["engine"] == "toy"
    assert {t["settings"]["engine"] for t in report["trials"] if "settings" in t} == {"toy"}
    assert {t["engine"] for t in report["trials"]} == {"toy"}


def test_a_walk_on_the_fake_engine_never_imports_torch(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from sizer.core.decide.walk import walk
        from sizer.core.decide.types import RunSpec
        from sizer.core.hardware.profile import simulated
        from sizer.core.results.store import TrialStore
        from sizer.core.task.spec import load_task
        spec = RunSpec(task=load_task({str(BANKING)!r}), models={QWEN[:2]!r}, strategies=("zero-shot",),
                       engine="fake", target=0.3, limit=32)
        with TrialStore.open({str(tmp_path / 'trials.sqlite')!r}) as store:
            run = walk(spec, store=store, here=simulated({H100!r}))
        print(run.recommendation.model, "torch" in sys.modules)
    """)
    env = {**os.environ, "SIZER_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    model, torch_loaded = out.stdout.split()
    assert model in QWEN and torch_loaded == "False"


def test_every_trial_of_a_walk_ends_with_an_event_skips_included_then_the_run(tmp_path, catalog):
    """A run opens with RunStarted (its candidates, largest first); with the budget spent before
    the first trial every trial is skipped and still says so, each is followed by a RunUpdated,
    and the last RunUpdated carries the decided run."""
    from sizer.core import events

    seen: list[events.Event] = []
    spec = RunSpec(task=load_task(BANKING), models=QWEN, strategies=("zero-shot", "few-shot"), engine="fake",
                   target=0.3, limit=32, budget_minutes=1e-9)
    with TrialStore.open(tmp_path / "trials.sqlite") as store:
        run = walk(spec, store=store, here=simulated(H100), catalog=catalog, sink=seen.append)
    assert seen[0] == events.RunStarted("banking-intents", QWEN, ("zero-shot", "few-shot"))
    assert events.describe(seen[0]).startswith("run banking-intents: 4 candidate(s), largest first: Qwen/Qwen2.5-7B")
    finished = [(e.model, e.strategy, e.status) for e in seen if isinstance(e, events.TrialFinished)]
    assert finished == [(t.model, t.strategy, t.status) for t in run.trials]
    assert finished and all(status == "skipped" for _, _, status in finished)
    updates = [e for e in seen if isinstance(e, events.RunUpdated)]
    assert len(updates) == len(run.trials) + 1 and updates[-1].run.finished
    assert seen[-1] is updates[-1]


def test_a_limit_below_the_label_count_says_it_scores_one_example_per_label(catalog, tmp_path):
    """The demo has 8 labels: --limit 4 still scores one example of each, and the result says so."""
    from sizer.core.trials.trial import run_trial
    from sizer.core.trials.types import TrialSpec

    with TrialStore.open(tmp_path / "trials.sqlite") as store:
        result = run_trial(load_task(BANKING), TrialSpec(model=QWEN[3], strategy="zero-shot", limit=4, engine="fake"),
                           store, catalog=catalog)
    assert result.split["test"] == 8 == result.metric.n
    assert "--limit 4: scored 8 examples, at least one per label (the subset is stratified by label)" in result.warnings
