"""Shared fixtures. Trial tests: a private Hugging Face cache holding small random-initialised
models (built from real catalog configs, with the real SmolLM2 tokenizer), a catalog listing them
beside the two offline models, and an environment that points sizer at both."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

import tiny_models


@dataclass(frozen=True)
class TinyHub:
    path: Path                  # hub-layout cache (HF_HUB_CACHE)
    catalog: Path               # folder for SIZER_CATALOG_DIR
    remote_marker: Path         # written if the remote-code model's code is ever imported


def interruptible() -> None:
    """`preexec_fn` for a child the test Ctrl-Cs: SIGINT back to its default, as in a terminal.
    A job a non-interactive shell starts in the background ignores SIGINT, its children inherit
    that, and Python then never raises KeyboardInterrupt: a test run started that way would
    otherwise see sizer ignore the interrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


TINY = "sizer-test/tiny-smollm2"            # 2 layers, SmolLM2 config and tokenizer, safetensors
TINY_SHORT = "sizer-test/tiny-short"        # same, with a 256-token context
TINY_PICKLE = "sizer-test/tiny-pickle"      # only a pickled pytorch_model.bin
TINY_REMOTE = "sizer-test/tiny-remote"      # config needs code from the repo (auto_map)
NOT_DOWNLOADED = "sizer-test/not-downloaded"  # listed in the catalog, in no cache


@pytest.fixture(autouse=True)
def sizer_home(tmp_path, monkeypatch) -> Path:
    """Every test has its own user data folder (SIZER_HOME): no user catalog leaks in from the
    machine or from another test."""
    home = tmp_path / "sizer-home"
    monkeypatch.setenv("SIZER_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory) -> Path:
    return tiny_models.save_smollm2_tokenizer(tmp_path_factory.mktemp("smollm2-tokenizer"))


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory, smollm2_tokenizer) -> TinyHub:
    root = tmp_path_factory.mktemp("tiny-hub")
    hub = root / "hub"
    config = tiny_models.tiny_config()
    entries = [
        tiny_models.save_tiny_causal(hub, TINY, smollm2_tokenizer, config),
        tiny_models.save_tiny_causal(hub, TINY_SHORT, smollm2_tokenizer,
                                     tiny_models.tiny_config(max_position_embeddings=256)),
        tiny_models.save_tiny_causal(hub, TINY_PICKLE, smollm2_tokenizer, config, safetensors=False),
        tiny_models.save_tiny_causal(hub, TINY_REMOTE, smollm2_tokenizer, config),
    ]
    marker = root / "remote-code-ran"
    tiny_models.require_remote_code(tiny_models.snapshot_dir(hub, TINY_REMOTE), marker)
    entries.append(tiny_models.hub_entry(NOT_DOWNLOADED, entries[0]))
    catalog = tiny_models.write_catalog(root / "catalog", tiny_models.offline_entries() + entries)
    return TinyHub(hub, catalog, marker)


@pytest.fixture
def trial_env(tmp_path, monkeypatch, tiny_hub) -> dict[str, str]:
    """sizer pointed at the test catalog, the private HF cache and a fresh trial cache in tmp_path;
    returns the environment for subprocesses."""
    from huggingface_hub import constants

    values = {
        "SIZER_CATALOG_DIR": str(tiny_hub.catalog),
        "SIZER_CACHE_DIR": str(tmp_path / "sizer-cache"),
        "HF_HUB_CACHE": str(tiny_hub.path),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # huggingface_hub reads HF_HUB_CACHE once, at import; snapshot_download looks it up per call.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tiny_hub.path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return {**os.environ, **values}
