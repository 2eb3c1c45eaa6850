"""Catalog entries for models on this machine: a folder with a config.json (saved by transformers'
`save_pretrained`, or a Hub snapshot) or a single GGUF file.

The entry's id is the absolute path and its source "local"; its revision is a fingerprint of the
files (sizes and modification times), so an edited model is not mistaken for the one sized before.
A folder is sized from its config.json (exact count from a meta-device build, as for the shipped
catalog); a GGUF file from its metadata (transformers' `load_gguf_checkpoint`) and its tensors (the
exact count is the sum of their element counts, read with the gguf package's GGUFReader).
"""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

from sizer.core.catalog.from_config import entry_from_config, quant_of, transformers_knows
from sizer.core.catalog.entry import GGUFRepo, ModelEntry
from sizer.core.errors import SizerError

LOCAL_FAMILY = "local"
_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")


def fingerprint(path: Path) -> str:
    """Sizes and newest modification time (ns) of the model's files: changes when they change."""
    files = [path] if path.is_file() else [path / "config.json"] + [f for p in _WEIGHTS for f in path.glob(p)]
    stats = [f.stat() for f in files if f.is_file()]
    return f"local:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"


def is_model_path(path: Path) -> bool:
    """Whether `path` is something `local_entry` can size: a .gguf file or a folder."""
    return path.is_dir() or (path.is_file() and path.suffix.lower() == ".gguf")


def local_entry(path: Path, family: str = LOCAL_FAMILY) -> ModelEntry:
    """The entry of a model folder or GGUF file; a SizerError naming the path when it is neither."""
    path = path.expanduser().resolve()
    if not path.exists():
        raise SizerError(f"{path}: no such file or folder; give a model folder with config.json or a .gguf file")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise SizerError(f"{path}: not a model; give a folder with config.json or a .gguf file")
        return gguf_entry(path, family)
    return folder_entry(path, family)


def folder_entry(path: Path, family: str = LOCAL_FAMILY) -> ModelEntry:
    """A model folder's entry, from its config.json."""
    config_file = path / "config.json"
    if not config_file.is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; to size a GGUF file, name it: {path / ggufs[0]}" if ggufs else \
            "; give the folder transformers saved the model to (save_pretrained) or a .gguf file"
        raise SizerError(f"{path}: no config.json in this folder{hint}")
    config = _read_json(config_file)
    if not transformers_knows(config):
        raise SizerError(
            f"{config_file}: this transformers cannot build model_type {config.get('model_type')!r} "
            "(a model with its own code, or one newer than transformers); upgrade transformers"
        )
    from sizer.core.catalog.hub import new_card

    card = new_card(path.name, config, family)
    card.update(offline_source="local", revision=fingerprint(path), config_source=str(config_file))
    return _with_count_as_published(entry_from_config(str(path), config, card))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SizerError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SizerError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise SizerError(f"{path}: expected a JSON object of model settings")
    return data


def gguf_entry(path: Path, family: str = LOCAL_FAMILY) -> ModelEntry:
    """A GGUF file's entry, from its metadata and tensors."""
    reader = _reader(path)
    params = sum(int(t.n_elements) for t in reader.tensors)
    quant = quant_of(path.name) or _file_type(reader)
    config = _gguf_config(path)
    card = {
        "family": family, "kind": "causal", "params": params,
        "instruct": bool(_instruct_name(path.stem)),
        "license": _string_field(reader, "general.license"),
        "offline_source": "local", "offline_file": path.name, "revision": fingerprint(path),
        "config_source": f"{path} GGUF metadata (transformers load_gguf_checkpoint); "
                         f"{len(reader.tensors)} tensors, {params:,} elements",
    }
    entry = entry_from_config(str(path), config, card)
    entry = replace(entry, formats=("gguf",), gguf=(GGUFRepo(f"local:{path.parent}", {quant: path.name}),))
    return _with_count_as_published(entry)


def _reader(path: Path) -> Any:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        reader.tensors  # noqa: B018  (parsed in the constructor; a truncated file fails there)
    except (ValueError, OSError, IndexError, KeyError, TypeError, struct.error) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SizerError(f"{path}: not a readable GGUF file ({reason}); download it again or give another file") from None
    if not reader.tensors:
        raise SizerError(f"{path}: the GGUF file holds no tensors; download it again or give another file")
    return reader


def _gguf_config(path: Path) -> dict[str, Any]:
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        config = load_gguf_checkpoint(str(path), return_tensors=False)["config"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SizerError(f"{path}: transformers cannot read this GGUF model ({reason})") from None
    if not transformers_knows(config):
        raise SizerError(f"{path}: this transformers cannot build model_type {config.get('model_type')!r}")
    return config


def _string_field(reader: Any, key: str) -> str:
    """A GGUF metadata string ("" when absent)."""
    field = reader.fields.get(key)
    if field is None or not field.data:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def _file_type(reader: Any) -> str:
    """The GGUF's `general.file_type` as a llama.cpp type name ("MOSTLY_Q4_K_M" -> "Q4_K_M")."""
    from gguf import LlamaFileType

    field = reader.fields.get("general.file_type")
    try:
        return LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (AttributeError, ValueError, IndexError, TypeError):
        return "GGUF"


def _instruct_name(name: str) -> bool:
    from sizer.core.catalog.hub import new_card

    return new_card(name, {}, LOCAL_FAMILY)["instruct"]


def _with_count_as_published(entry: ModelEntry) -> ModelEntry:
    """A local model has no published figure: the built count stands in for it, and says so."""
    return replace(entry, published_params=float(entry.params), published_params_note="built count (a local model)")
