"""`sizer catalog refresh` against a local stand-in for the Hub (tests/hub_fixture.py); never the network.
Refreshed entries go to the user catalog (SIZER_HOME/catalog); the base catalog is never written."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path

import pytest
from hub_fixture import FIXTURES, hub_server  # noqa: F401  (pytest fixture)

from sizer.cli import main
from sizer.core.catalog.model_catalog import GGUFRepo, entry_from_config, load_catalog
from sizer.core.catalog.family_file import config_path
from sizer.core.catalog.family_file import write_family_file

QWEN = "Qwen/Qwen2.5-0.5B-Instruct"
QWEN_GGUF = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
LLAMA = "meta-llama/Llama-3.2-1B-Instruct"
SMOL = "HuggingFaceTB/SmolLM2-1.7B-Instruct"


def _fixture_config(repo_id: str) -> dict:
    return json.loads((FIXTURES / "files" / repo_id.replace("/", "__") / "config.json").read_text())


@pytest.fixture
def catalog_dir(tmp_path, monkeypatch) -> Path:
    """A catalog with a stale qwen2.5 entry: old licence text, one GGUF file, a hand-written card figure."""
    directory = tmp_path / "catalogs"
    card = {
        "family": "qwen2.5",
        "kind": "causal",
        "instruct": True,
        "license": "see model card",
        "gated": False,
        "published_params": 0.49e9,
        "published_params_note": "model card: Number of Parameters: 0.49B",
        "gguf": [{"repo": QWEN_GGUF, "files": {"Q4_K_M": "qwen2.5-0.5b-instruct-q4_k_m.gguf"}}],
    }
    write_family_file(directory / "qwen2.5.toml", [entry_from_config(QWEN, _fixture_config(QWEN), card)])
    monkeypatch.setenv("SIZER_CATALOG_DIR", str(directory))
    return directory


@pytest.fixture
def user_dir(sizer_home) -> Path:
    return sizer_home / "catalog"


def _family(directory: Path, name: str) -> list[dict]:
    return tomllib.loads((directory / f"{name}.toml").read_text())["models"]


def test_refresh_family_rewrites_toml_and_keeps_card_fields(hub_server, catalog_dir, user_dir, capsys):
    before = (catalog_dir / "qwen2.5.toml").read_bytes()
    assert main(["catalog", "refresh", "qwen2.5"]) == 0
    out = capsys.readouterr().out
    assert f"{QWEN}: 494,032,768 params" in out
    assert (catalog_dir / "qwen2.5.toml").read_bytes() == before  # the base catalog is read only

    (model,) = _family(user_dir, "qwen2.5")
    assert model["license"] == "apache-2.0"  # from the Hub
    assert model["revision"] == "aaaa000000000000000000000000000000000001"
    assert model["published_params"] == 0.49e9  # hand-written, kept
    assert model["published_params_note"].startswith("model card")
    assert model["params"] == 494_032_768
    (gguf,) = model["gguf"]
    assert gguf["repo"] == QWEN_GGUF
    assert gguf["files"]["Q4_K_M"] == "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    assert gguf["files"]["Q8_0"] == "qwen2.5-0.5b-instruct-q8_0.gguf"
    assert gguf["files"]["F16"] == "qwen2.5-0.5b-instruct-fp16.gguf"
    assert len(gguf["files"]) == 9
    assert json.loads(config_path(user_dir, QWEN).read_text()) == _fixture_config(QWEN)
    assert load_catalog().get(QWEN).gguf[0] == GGUFRepo(QWEN_GGUF, gguf["files"])  # the user entry wins

    paths = {path for _, path in hub_server.requests}
    assert f"/api/models/{QWEN}" in paths and f"/api/models/{QWEN_GGUF}" in paths
    assert f"/{QWEN}/resolve/aaaa000000000000000000000000000000000001/config.json" in paths


def test_refresh_new_repo_needs_family_then_adds_it(hub_server, catalog_dir, user_dir, capsys):
    assert main(["catalog", "refresh", SMOL]) == 2
    err = capsys.readouterr().err
    assert "--family" in err and SMOL in err and len(err.splitlines()) == 1

    assert main(["catalog", "refresh", SMOL, "--family", "smollm2"]) == 0
    (model,) = _family(user_dir, "smollm2")
    assert model["params"] == 1_711_376_384  # meta-device build equals the Hub's safetensors total
    assert model["published_params"] == 1_711_376_384
    assert model["instruct"] is True and model["kind"] == "causal"
    assert model["tied_embeddings"] is True
    assert [m["id"] for m in _family(catalog_dir, "qwen2.5")] == [QWEN]  # other families untouched
    assert not (user_dir / "qwen2.5.toml").exists()
    assert [e.id for e in load_catalog().entries] == [QWEN, SMOL]  # shipped, then the user's


def test_refresh_gated_without_token_is_one_line_and_writes_nothing(hub_server, catalog_dir, user_dir, capsys):
    before = (catalog_dir / "qwen2.5.toml").read_bytes()
    assert main(["catalog", "refresh", QWEN, LLAMA, "--family", "llama3"]) == 2
    *progress, error = capsys.readouterr().err.splitlines()
    assert progress == [f"refresh: 1/2 {QWEN}"]
    assert error.startswith(f"sizer: error: {LLAMA} is gated") and "HF_TOKEN" in error
    assert (catalog_dir / "qwen2.5.toml").read_bytes() == before
    assert not user_dir.exists()  # all repos are read before any write


def test_refresh_gated_with_token_keeps_the_token_out_of_the_catalog(hub_server, catalog_dir, user_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_value")
    assert main(["catalog", "refresh", LLAMA, "--family", "llama3"]) == 0
    (model,) = _family(user_dir, "llama3")
    assert model["gated"] is True and model["license"] == "llama3.2"
    assert model["params"] == 1_235_814_400
    written = "".join(p.read_text() for p in user_dir.rglob("*") if p.is_file())
    assert "hf_secret_test_value" not in written


def test_refresh_unknown_repo(hub_server, catalog_dir, capsys):
    assert main(["catalog", "refresh", "nobody/no-such-model", "--family", "x"]) == 2
    err = capsys.readouterr().err
    assert "nobody/no-such-model was not found" in err and len(err.splitlines()) == 1


def test_refresh_unknown_family(hub_server, catalog_dir, capsys):
    assert main(["catalog", "refresh", "qwen9"]) == 2
    assert "unknown model family 'qwen9'" in capsys.readouterr().err
    assert hub_server.requests == []


def test_refresh_offline_mode_says_so_in_one_line(hub_server, catalog_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = (catalog_dir / "qwen2.5.toml").read_bytes()
    assert main(["catalog", "refresh", "qwen2.5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("sizer: error: offline:") and len(captured.err.splitlines()) == 1
    assert hub_server.requests == []
    assert (catalog_dir / "qwen2.5.toml").read_bytes() == before


def test_refresh_unreachable_hub_says_so_in_one_line(catalog_dir, monkeypatch, tmp_path, capsys):
    from huggingface_hub import constants

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    assert main(["catalog", "refresh", "qwen2.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sizer: error: offline: cannot reach the Hugging Face Hub")
    assert len(err.splitlines()) == 1
