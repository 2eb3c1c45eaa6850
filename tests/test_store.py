"""The SQLite trial cache: round trip, resume, kill -9, schema version, redaction, the CLI."""

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sizer.cli import main
from sizer.core.errors import SizerError
from sizer.core.results.redact import is_secret_key, redact
from sizer.core.results.store import SCHEMA_VERSION, TrialStore, content_hash, read_info, trial_key

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _key(**settings):
    return trial_key(MODEL, "main", "few-shot", "p" * 64, settings or {"k": 8})


def _rows(ids, tag="first"):
    return [{"example_id": str(i), "prediction": "card_arrival", "gold": "card_arrival",
             "scores": [-1.5, -3.25], "latency_s": 0.01 * i, "tag": tag} for i in ids]


@pytest.fixture
def store(tmp_path):
    with TrialStore.open(tmp_path / "trials.sqlite") as s:
        yield s


# --- keys ------------------------------------------------------------------------------------


def test_trial_key_is_stable_and_sensitive_to_every_part():
    key = trial_key(MODEL, "main", "few-shot", "abc", {"k": 8, "norm": True})
    assert key == trial_key(MODEL, "main", "few-shot", "abc", {"norm": True, "k": 8})  # order-free
    assert len(key) == 64 and int(key, 16) >= 0
    others = {
        trial_key("other", "main", "few-shot", "abc", {"k": 8, "norm": True}),
        trial_key(MODEL, None, "few-shot", "abc", {"k": 8, "norm": True}),
        trial_key(MODEL, "main", "zero-shot", "abc", {"k": 8, "norm": True}),
        trial_key(MODEL, "main", "few-shot", "abd", {"k": 8, "norm": True}),
        trial_key(MODEL, "main", "few-shot", "abc", {"k": 4, "norm": True}),
    }
    assert key not in others and len(others) == 5
    # pinned: the key must not change between releases or machines, or every cache goes stale
    # (sha256 of the UTF-8 bytes of '{"a":[1,"é"]}')
    assert content_hash({"a": [1, "é"]}) == "5db14a2cddc92d31365806bb5d82ed2bc436bf6960d10cd4654140f7bdadce1c"
    with pytest.raises(TypeError):
        content_hash({"path": object()})
    assert content_hash({"x": np.float32(0.5), "v": np.arange(2)}) == content_hash({"x": 0.5, "v": [0, 1]})


# --- round trip and resume -------------------------------------------------------------------


def test_round_trip(store):
    key = _key()
    store.start_trial(key, {"model": MODEL, "revision": "main", "strategy": "few-shot", "task": "banking",
                            "settings": {"k": 8}})
    assert store.add_predictions(key, _rows(range(3))) == 3
    store.finish_trial(key, {"metric": "accuracy", "value": 0.8, "interval": [0.65, 0.9],
                             "examples_per_s": 12.5, "peak_memory_mb": 812})
    trial = store.get_trial(key)
    assert trial["model"] == MODEL and trial["strategy"] == "few-shot" and trial["task"] == "banking"
    assert trial["status"] == "done" and trial["predictions"] == 3
    assert trial["summary"]["interval"] == [0.65, 0.9]
    assert trial["meta"]["settings"] == {"k": 8}
    done = store.done_examples(key)
    store.add_predictions(key, [{"example_id": "np", "scores": np.array([-0.5, -2.0]), "latency_s": np.float64(0.3)}])
    assert store.done_examples(key)["np"]["scores"] == [-0.5, -2.0]
    assert done["2"] == {"example_id": "2", "prediction": "card_arrival", "gold": "card_arrival",
                         "scores": [-1.5, -3.25], "latency_s": 0.02, "tag": "first"}
    assert [t["key"] for t in store.trials()] == [key]
    assert store.get_trial("missing") is None


def test_start_trial_is_idempotent_and_status_comes_from_summary(store):
    key = _key()
    store.start_trial(key, {"model": MODEL, "strategy": "few-shot"})
    created = store.get_trial(key)["created"]
    store.start_trial(key, {"model": MODEL, "strategy": "changed"})
    assert store.get_trial(key)["strategy"] == "few-shot"
    assert store.get_trial(key)["created"] == created
    assert store.get_trial(key)["status"] == "running"
    store.finish_trial(key, {"status": "oom"})
    assert store.get_trial(key)["status"] == "oom"


def test_predictions_need_a_started_trial(store):
    with pytest.raises(LookupError, match="start_trial"):
        store.add_predictions("nope", _rows([1]))
    with pytest.raises(LookupError):
        store.finish_trial("nope", {})
    key = _key()
    store.start_trial(key, {"model": MODEL})
    with pytest.raises(ValueError, match="example_id"):
        store.add_predictions(key, [{"prediction": "x"}])


def test_resume_after_reopen_never_scores_twice(tmp_path):
    path = tmp_path / "trials.sqlite"
    key = _key()
    with TrialStore.open(path) as first:
        first.start_trial(key, {"model": MODEL})
        first.add_predictions(key, _rows(range(5)))
    with TrialStore.open(path) as again:
        done = again.done_examples(key)
        assert sorted(done, key=int) == [str(i) for i in range(5)]
        # a re-run offers everything again: only the 5 new rows go in, old ones keep their values
        assert again.add_predictions(key, _rows(range(10), tag="second")) == 5
        done = again.done_examples(key)
        assert len(done) == 10
        assert {done[str(i)]["tag"] for i in range(5)} == {"first"}
        assert {done[str(i)]["tag"] for i in range(5, 10)} == {"second"}


def test_failed_batch_leaves_nothing_behind(store):
    key = _key()
    store.start_trial(key, {"model": MODEL})
    bad = _rows(range(3)) + [{"example_id": "x", "prediction": object()}]  # not JSON-able
    with pytest.raises(TypeError):
        store.add_predictions(key, bad)
    assert store.done_examples(key) == {}


# --- kill -9 ---------------------------------------------------------------------------------

BATCH = 1000

CHILD = textwrap.dedent(
    """
    import sys
    from sizer.core.results.store import TrialStore
    path, key, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = TrialStore.open(path)
    store.start_trial(key, {"model": "m"})
    for b in range(10_000):
        rows = [{"example_id": str(b * batch + i), "prediction": "x" * 3000, "scores": list(range(20))}
                for i in range(batch)]
        print("begin", b, flush=True)
        store.add_predictions(key, rows)
        print("committed", b, flush=True)
    """
)


def _wait_for_wal_write(path, polls=20_000):
    """Return once the write-ahead log changes: the batch in flight has begun spilling pages (a
    batch is larger than SQLite's page cache), so a kill now lands inside its transaction unless
    the commit wins the race. Either way the assertions below must hold."""
    wal = f"{path}-wal"
    before = os.stat(wal)
    for _ in range(polls):
        now = os.stat(wal)
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            return
        time.sleep(0.0002)


@pytest.mark.parametrize("kill_at", [1, 4])
def test_kill_9_loses_at_most_the_batch_in_flight(tmp_path, kill_at):
    path, key = tmp_path / "trials.sqlite", _key()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), key, str(BATCH)],
                             stdout=subprocess.PIPE, text=True)
    committed = -1
    try:
        for line in child.stdout:
            word, number = line.split()
            if word == "committed":
                committed = int(number)
            if word == "begin" and int(number) == kill_at:
                _wait_for_wal_write(path)
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert committed == kill_at - 1

    with TrialStore.open(path) as store:
        done = store.done_examples(key)
        assert len(done) % BATCH == 0, "a batch was half written"
        whole = len(done) // BATCH
        assert whole in (kill_at, kill_at + 1)  # the reported batches, maybe the one in flight
        assert set(done) == {str(i) for i in range(whole * BATCH)}
        total = (kill_at + 3) * BATCH
        rows = [{"example_id": str(i), "prediction": "resumed"} for i in range(total)]
        assert store.add_predictions(key, rows) == total - len(done)
        after = store.done_examples(key)
        assert len(after) == total
        assert all(after[i]["prediction"] == "x" * 3000 for i in done)
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT COUNT(*) FROM predictions").fetchone() == (total,)
    check.close()


# --- concurrency -----------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from sizer.core.results.store import TrialStore
    path, name = sys.argv[1], sys.argv[2]
    with TrialStore.open(path) as store:
        for key in ("shared", name):
            store.start_trial(key, {"model": name})
        for b in range(40):
            rows = [{"example_id": f"{b}-{i}", "prediction": name} for i in range(25)]
            store.add_predictions("shared", rows)
            store.add_predictions(name, rows)
    """
)


def test_two_processes_share_one_cache(tmp_path):
    path = tmp_path / "trials.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], stderr=subprocess.PIPE, text=True)
             for name in ("one", "two")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with TrialStore.open(path) as store:
        assert len(store.done_examples("one")) == len(store.done_examples("two")) == 1000
        shared = store.done_examples("shared")
        assert len(shared) == 1000  # both wrote the same ids; each stored once
        assert store.info()["predictions"] == 3000


# --- schema ----------------------------------------------------------------------------------


def test_schema_version_is_set_and_reopen_is_harmless(tmp_path):
    path = tmp_path / "trials.sqlite"
    TrialStore.open(path).close()
    TrialStore.open(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"trials", "predictions"} <= tables
    conn.close()


def test_newer_schema_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "trials.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SizerError, match="newer than this sizer"):
        TrialStore.open(path)


def test_a_damaged_cache_is_kept_aside_and_a_fresh_one_started(tmp_path):
    path = tmp_path / "trials.sqlite"
    garbage = os.urandom(8192)  # not even an SQLite header
    path.write_bytes(garbage)
    seen = []
    with TrialStore.open(path, sink=seen.append) as store:
        key = _key()
        store.start_trial(key, {"model": MODEL})
        assert store.add_predictions(key, _rows(range(3))) == 3
        [notice] = store.notices
    [kept] = list(tmp_path.glob("trials.sqlite.corrupt-*"))
    assert kept.read_bytes() == garbage  # the old file is kept, byte for byte
    assert "\n" not in notice and str(path) in notice and kept.name in notice and "fresh cache" in notice
    assert [(e.level, e.text) for e in seen] == [("warning", notice)]
    with TrialStore.open(path) as again:  # the fresh cache is a real one, and needs no repair
        assert len(again.done_examples(key)) == 3 and again.notices == []


def test_a_damaged_cache_through_the_cli_is_one_line_and_the_command_goes_on(tmp_path):
    (tmp_path / "trials.sqlite").write_bytes(b"\x00garbage" * 500)
    proc = subprocess.run([sys.executable, "-m", "sizer", "cache", "info", "--json"], capture_output=True, text=True,
                          env={**os.environ, "SIZER_CACHE_DIR": str(tmp_path)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("warning: trial cache") and "kept it as trials.sqlite.corrupt-" in line
    assert json.loads(proc.stdout)["trials"] == 0
    assert len(list(tmp_path.glob("trials.sqlite.corrupt-*"))) == 1


# --- secrets ---------------------------------------------------------------------------------

HF = "hf_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7"
SK = "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3"


def test_redact_masks_secret_keys_and_token_values():
    meta = {
        "model": MODEL,
        "token": "anything",
        "HF_TOKEN": HF,
        "headers": {"Authorization": f"Bearer {HF}", "Accept": "json"},
        "openai_api_key": SK,
        "x-api-key": "abc",
        "endpoint": f"http://127.0.0.1:8000/v1?key={SK}",
        "log": [f"login with {HF} failed", "Authorization: Bearer abcdefgh12345678"],
        "settings": {"eos_token": "</s>", "max_new_tokens": 32, "pad_token_id": 0, "prompt_tokens": 120},
    }
    clean = redact(meta)
    assert clean["model"] == MODEL
    for k in ("token", "HF_TOKEN", "openai_api_key", "x-api-key"):
        assert clean[k] == "<redacted>"
    assert clean["headers"] == {"Authorization": "<redacted>", "Accept": "json"}
    assert clean["endpoint"] == "http://127.0.0.1:8000/v1?key=<redacted>"
    assert clean["log"] == ["login with <redacted> failed", "Authorization: <redacted>"]
    assert clean["settings"] == meta["settings"]  # tokenizer settings are not secrets
    assert meta["HF_TOKEN"] == HF  # the input is not modified
    assert not is_secret_key("eos_token") and is_secret_key("hf_token") and is_secret_key("password")


def test_secrets_never_reach_the_file(tmp_path):
    path = tmp_path / "trials.sqlite"
    key = _key()
    with TrialStore.open(path) as store:
        store.start_trial(key, {"model": MODEL, "hf_token": HF, "settings": {"url": f"https://x/?t={SK}"}})
        store.finish_trial(key, {"status": "error", "error": f"401 for token {HF}", "api_key": SK})
        assert store.get_trial(key)["meta"]["hf_token"] == "<redacted>"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("trials.sqlite"))
    assert HF.encode() not in raw and SK.encode() not in raw
    assert b"<redacted>" in raw


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path))
    path = tmp_path / "trials.sqlite"
    with TrialStore.open(path) as store:
        for model, n in ((MODEL, 3), ("sentence-transformers/all-MiniLM-L6-v2", 2)):
            key = trial_key(model, None, "zero-shot", "p", {})
            store.start_trial(key, {"model": model})
            store.add_predictions(key, _rows(range(n)))
    return path


def test_cli_info_json(cache, capsys):
    assert main(["cache", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(cache)
    assert info["trials"] == 2 and info["predictions"] == 5 and info["size_bytes"] > 0
    assert info["models"][MODEL] == {"trials": 1, "predictions": 3}


def test_cli_info_text_and_missing_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path))
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"path: {tmp_path / 'trials.sqlite'}" in out and "trials: 0" in out
    assert not (tmp_path / "trials.sqlite").exists()  # looking does not create a cache
    assert read_info(tmp_path / "trials.sqlite")["models"] == {}


def test_cli_clear_one_model_with_yes(cache, capsys):
    assert main(["cache", "clear", "--model", MODEL, "--yes"]) == 0
    assert "removed 1 trials" in capsys.readouterr().out
    assert read_info(cache)["models"] == {"sentence-transformers/all-MiniLM-L6-v2": {"trials": 1, "predictions": 2}}


def test_cli_clear_unknown_model_deletes_nothing(cache, capsys):
    assert main(["cache", "clear", "--model", "nope", "--yes"]) == 0
    assert "cached models:" in capsys.readouterr().err
    assert read_info(cache)["trials"] == 2


def test_cli_clear_without_tty_or_yes_refuses(cache):
    proc = subprocess.run([sys.executable, "-m", "sizer", "cache", "clear"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env={**os.environ, "SIZER_CACHE_DIR": str(cache.parent)})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--yes" in proc.stderr
    assert read_info(cache)["trials"] == 2


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("answer,left", [("y\n", 0), ("n\n", 2), ("\n", 2)])
def test_cli_clear_asks_on_a_tty(cache, monkeypatch, capsys, answer, left):
    monkeypatch.setattr(sys, "stdin", _Tty(answer))
    assert main(["cache", "clear"]) == 0
    assert "[y/N]" in capsys.readouterr().err
    assert read_info(cache)["trials"] == left


def test_threads_can_share_one_store(store):
    import threading

    key = _key()
    store.start_trial(key, {"model": MODEL})

    def write(start):
        for b in range(10):
            store.add_predictions(key, _rows(range(start + b * 10, start + b * 10 + 10)))
        store.done_examples(key)

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.done_examples(key)) == 400
