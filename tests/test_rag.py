"""The RAG strategy: kNN demonstrations (never from test), passages from the task's documents in
the prompt with recall@k, the encoder's kNN over the labelled bank, and the handbook demo task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY
from sizer.cli import main
from sizer.core.trials import retrieval
from oracles import brute_force_loglik
from sizer.core.engines.causal_lm import CausalLM
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.paths import shipped_examples
from sizer.core.catalog.resolve import locate
from sizer.core.trials.runners.lm_rag import PASSAGES, KNNClassifyRunner, RAGGenerateRunner, nearest_demonstrations
from sizer.core.task.split import split
from sizer.core.results.store import TrialStore
from sizer.core.trials.strategies import STRATEGIES
from sizer.core.task.spec import load_task
from sizer.core.trials.trial import limit_examples, run_trial
from sizer.core.trials.types import TrialSpec
from tiny_models import MINILM, SMOLLM2, write_task

EXAMPLES = shipped_examples()
BANKING = EXAMPLES / "banking.toml"
HANDBOOK = EXAMPLES / "handbook.toml"


@pytest.fixture(scope="module")
def minilm():
    return retrieval.load_embedder()


def _tiny_lm() -> CausalLM:
    return CausalLM.load(locate(load_catalog().get(TINY)), "cpu", torch.float32)


def test_rag_sits_between_few_shot_and_fine_tune_in_cost_order():
    assert STRATEGIES[:3] == ("zero-shot", "few-shot", "rag")
    if "fine-tune" in STRATEGIES:
        assert STRATEGIES.index("fine-tune") > STRATEGIES.index("rag")


# ---- the demo task -------------------------------------------------------------------------

def test_every_handbook_question_names_a_handbook_file_as_evidence():
    task = load_task(HANDBOOK)
    chunks = retrieval.chunk_documents(task.documents)
    retrieval.check_evidence(task.examples, chunks)  # raises if one names no document
    assert len(task.examples) >= 40 and all(e.evidence for e in task.examples)
    assert len({c.source for c in chunks}) >= 6
    # the answer is in the evidence file, word for word, so it can be copied from a passage
    for example in task.examples:
        text = (task.documents[0] / example.evidence).read_text()
        assert example.reference in text, example.source


def test_evidence_column_in_an_examples_file(tmp_path):
    (tmp_path / "qa.csv").write_text("question,answer,doc\nHow many days?,27,leave.md\nWho?,Pim,\n")
    (tmp_path / "docs").mkdir()
    path = tmp_path / "task.toml"
    path.write_text('kind = "generate"\ndocuments = ["docs"]\n'
                    '[examples]\nfile = "qa.csv"\ntext = "question"\nreference = "answer"\nevidence = "doc"\n')
    task = load_task(path)
    assert [e.evidence for e in task.examples] == ["leave.md", None]


# ---- kNN demonstrations --------------------------------------------------------------------

@pytest.mark.slow
def test_knn_demonstrations_are_the_nearest_training_examples_never_test(minilm, trial_env):
    task = load_task(BANKING)
    train, test = split(task)
    picked = nearest_demonstrations(train, test[:12], minilm, 5)
    train_ids = {e.id for e in train}
    train_vectors = minilm.embed([e.text for e in train])
    for example in test[:12]:
        demos = picked[example.id]
        assert len(demos) == 5 and {d.id for d in demos} <= train_ids
        sims = train_vectors @ minilm.embed([example.text])[0]
        nearest = {train[i].id for i in sims.argsort()[::-1][:5]}
        assert {d.id for d in demos} == nearest
        assert [d.id for d in demos][-1] == train[int(sims.argmax())].id  # most similar next to the question


@pytest.mark.slow
def test_knn_classify_shares_only_the_instruction_and_scores_match_brute_force(trial_env, tmp_path):
    task = load_task(BANKING)
    spec = TrialSpec(model=TINY, strategy="rag", limit=8, shots=3)
    with TrialStore.open(tmp_path / "trials.sqlite") as store:
        result = run_trial(task, spec, store=store)
        stored = store.done_examples(result.key)
    assert result.settings["demonstrations"] == "knn" and result.settings["top_k"] == 3
    assert result.metric.n == len(stored) == 8

    runner = KNNClassifyRunner(_tiny_lm, True, retrieval.load_embedder, 3, task.seed)
    runner.load()
    train, test = split(task)
    scored = limit_examples(test, 8, task.seed, task.kind)
    runner.prepare(task, train, scored)
    plan = runner.plan
    assert "Labels:" in plan.prefix_text and not any(e.text in plan.prefix_text for e in task.examples)
    tokenizer = runner.lm.tokenizer
    for example in scored:
        part = tokenizer.decode(list(plan.parts[scored.index(example)]))
        shown = [e for e in train if e.text in part]
        assert len(shown) >= 3  # its own demonstrations (a demo may contain another as a substring)
        assert [e.id for e in test if e.text in part] == [example.id]  # no other test example
    for example in scored[:2]:
        record = stored[example.id]
        part = list(plan.parts[scored.index(example)])
        for score, continuation in zip(record["scores"], plan.continuations):
            ids = list(plan.prefix) + part + list(continuation)
            assert score == pytest.approx(brute_force_loglik(runner.lm.model, ids, len(continuation)), abs=1e-4)


# ---- passages from the documents -----------------------------------------------------------

@pytest.mark.slow
def test_generate_with_documents_puts_retrieved_passages_before_the_question(trial_env, tmp_path):
    task = load_task(HANDBOOK)
    spec = TrialSpec(model=TINY, strategy="rag", limit=4)
    result = run_trial(task, spec, store=TrialStore.open(tmp_path / "trials.sqlite"))
    settings = result.settings
    assert settings["top_k"] == PASSAGES and settings["chunk_words"] == retrieval.CHUNK_WORDS
    assert settings["embedder"].startswith(MINILM)
    recall = settings["recall_at_k"]
    assert recall["n"] == 4 and recall["low"] <= recall["value"] <= recall["high"]

    runner = RAGGenerateRunner(_tiny_lm, True, retrieval.load_embedder, None, task.seed)
    runner.load()
    train, test = split(task)
    scored = limit_examples(test, 4, task.seed, task.kind)
    runner.prepare(task, train, scored)
    for i, example in enumerate(scored):
        part = runner.lm.tokenizer.decode(list(runner.plan.parts[i]))
        assert part.index("Context:\n[handbook/") < part.index(f"Question: {example.text}")
    assert "Context:" not in runner.plan.prefix_text


@pytest.mark.slow
def test_unknown_evidence_is_a_one_line_error(trial_env, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "leave.md").write_text("Every employee has 27 days of leave.")
    rows = [{"text": f"Question {n}?", "reference": str(n), "evidence": "leave.md"} for n in range(5)]
    rows[-1]["evidence"] = "leeve.md"
    path = write_task(tmp_path / "t.toml", rows, kind="generate", documents=["docs"], split={"test": 0.8})
    code = main(["trial", str(path), "--model", TINY, "--strategy", "rag"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "examples.evidence: 'leeve.md' is not one of the task's documents" in err


@pytest.mark.slow
def test_generate_without_documents_uses_knn_demonstrations(trial_env, tmp_path):
    rows = [{"text": f"Say the number {n}.", "reference": str(n)} for n in range(10)]
    task = load_task(write_task(tmp_path / "numbers.toml", rows, kind="generate"))
    result = run_trial(task, TrialSpec(model=TINY, strategy="rag", shots=2),
                       store=TrialStore.open(tmp_path / "trials.sqlite"))
    assert result.settings["demonstrations"] == "knn" and result.settings["top_k"] == 2
    assert "recall_at_k" not in result.settings and result.metric.n == 5


# ---- the encoder over the labelled bank ----------------------------------------------------

@pytest.mark.slow
def test_encoder_knn_over_the_whole_bank_is_indexed_once(trial_env, tmp_path, capsys):
    argv = ["trial", str(BANKING), "--model", MINILM, "--strategy", "rag", "--limit", "16", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    task = load_task(BANKING)
    train, _ = split(task)
    assert result["settings"]["bank"] == len(train) and result["settings"]["top_k"] == 10
    assert result["metric"]["value"] >= 0.6  # chance is 1/8
    indexes = Path(trial_env["SIZER_CACHE_DIR"]) / "indexes"
    assert len(list(indexes.iterdir())) == 1
    assert main(argv[:-1] + ["--seed", "0", "--json"]) == 0  # same split: the bank index is reused
    assert len(list(indexes.iterdir())) == 1


# ---- end to end with the real models -------------------------------------------------------

@pytest.mark.slow
def test_handbook_rag_with_smollm2_through_the_cli(trial_env, capsys):
    code = main(["trial", str(HANDBOOK), "--model", SMOLLM2, "--strategy", "rag", "--limit", "3", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["metric"]["name"] == "contains" and result["metric"]["n"] == 3
    assert {"token_f1", "exact_match"} <= set(result["other_metrics"])
    assert result["settings"]["hybrid_bm25"] is True
    assert result["settings"]["recall_at_k"]["value"] >= 2 / 3
    assert result["settings"]["chat_template"] is True
