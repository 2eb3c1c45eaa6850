"""Model catalog: entries from `catalogs/*.toml`, one file per family, with the user catalog
(sizer.core.catalog.user: entries built on this machine, in the user data folder) layered over it.

INTERFACE (used by the estimator, the trial engine and the front ends; keep these names stable):

    catalog = load_catalog()            # every entry; malformed TOML -> SizerError with file:line
    entry = catalog.get("Qwen/Qwen2.5-7B-Instruct")   # unknown id -> SizerError naming close matches
    catalog.entries -> list[ModelEntry]

`ModelEntry` and `GGUFRepo` are defined in sizer.core.catalog.entry and `entry_from_config` in
sizer.core.catalog.from_config; all three are importable from here too.

The family files are generated: `python -m sizer.core.catalog.build` turns the hand-kept
`catalogs/cards.toml` (licence, published size, GGUF repos...) and the verbatim `config.json`
copies in `catalogs/configs/` into entries (sizer.core.catalog.build); `sizer catalog refresh`
rebuilds entries from the Hub into the user catalog.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sizer.core.catalog.from_config import entry_from_config
from sizer.core.catalog.entry import GGUFRepo, ModelEntry
from sizer.core.catalog.family_file import read_family_file
from sizer.core.errors import SizerError
from sizer.core.paths import shipped_catalogs

__all__ = ["CARDS_FILE", "Catalog", "GGUFRepo", "ModelEntry", "catalog_dir", "entry_from_config",
           "family_files", "load_catalog"]

CARDS_FILE = "cards.toml"
LOCAL_SOURCE = "local"  # an entry built from a folder or GGUF file on this machine; its id is the path


def catalog_dir() -> Path:
    """The base catalog folder, read only: `SIZER_CATALOG_DIR`, else the catalog shipped with sizer.
    The user catalog is layered over it (see `load_catalog`)."""
    override = os.environ.get("SIZER_CATALOG_DIR")
    return Path(override) if override else shipped_catalogs()


def family_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.toml") if p.name != CARDS_FILE)


@dataclass(frozen=True)
class Catalog:
    entries: list[ModelEntry]

    @property
    def families(self) -> list[str]:
        return sorted({e.family for e in self.entries})

    def family(self, name: str) -> list[ModelEntry]:
        """Entries of one family; an unknown family is a SizerError naming the known ones."""
        found = [e for e in self.entries if e.family.lower() == name.lower()]
        if not found:
            raise SizerError(f"unknown model family {name!r}; known families: {', '.join(self.families)}")
        return found

    def find(self, query: str) -> ModelEntry | None:
        """The entry with this repo id or unique short name (case-insensitive), else None."""
        q = query.strip().lower()
        for entry in self.entries:
            if entry.id.lower() == q:
                return entry
        matches = [e for e in self.entries if e.short_name.lower() == q]
        return matches[0] if len(matches) == 1 else None

    def get(self, query: str) -> ModelEntry:
        """Look up by repo id or unique short name; unknown -> SizerError with the closest ids."""
        entry = self.find(query)
        if entry is not None:
            return entry
        ids = self.closest(query)
        hint = f"closest: {', '.join(ids)}" if ids else "see `sizer catalog list`"
        raise SizerError(f"unknown model {query!r}; {hint}")

    def closest(self, query: str) -> list[str]:
        """Up to five ids that contain `query` or are spelled like it."""
        q = query.strip().lower()
        names = {e.id.lower(): e.id for e in self.entries}
        names.update({e.short_name.lower(): e.id for e in self.entries})
        containing = [e.id for e in self.entries if q in e.id.lower()]  # "qwen2.5-7b" -> the -Instruct
        close = difflib.get_close_matches(q, names, n=5, cutoff=0.5)
        return list(dict.fromkeys(containing + [names[c] for c in close]))[:5]

    def is_cached(self, entry: ModelEntry, cache_dir: str | os.PathLike[str] | None = None) -> bool:
        """Whether the model's weights are on this machine: a local folder or GGUF file, its offline
        package or the HF cache."""
        if entry.source == LOCAL_SOURCE:
            return Path(entry.id).exists()
        if entry.source.startswith("package:"):
            return _package_has(entry.source.removeprefix("package:"), entry.offline_file)
        return _hf_cached(entry, cache_dir)


def _package_has(module: str, relative: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)  # finds the package without importing it
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(loc) / relative).exists() for loc in spec.submodule_search_locations)


def _hf_cached(entry: ModelEntry, cache_dir: str | os.PathLike[str] | None) -> bool:
    """Safetensors weights (every shard of an index) or any listed GGUF file in the HF cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(repo: str, filename: str, revision: str | None = entry.revision) -> str | None:
        hit = try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision)
        return hit if isinstance(hit, str) else None

    index = cached(entry.id, "model.safetensors.index.json")
    if index:
        try:
            shards = set(json.loads(Path(index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError):
            shards = set()
        if shards and all(cached(entry.id, s) for s in shards):
            return True
    if cached(entry.id, "model.safetensors"):
        return True
    # `revision` is the base repo's commit; a GGUF repo has its own history, so look at its main branch.
    return any(cached(g.repo, f, None) for g in entry.gguf if not g.repo.startswith("package:") for f in g.files.values())


def load_catalog(paths: Iterable[str | os.PathLike[str]] | None = None) -> Catalog:
    """Read and validate family files: the given ones, or by default every `*.toml` but cards.toml
    in `catalog_dir()` with the user catalog's entries layered over them (a user entry wins)."""
    if paths is not None:
        return Catalog(_read([Path(p) for p in paths]))
    from sizer.core.catalog.user import layered, user_entries

    directory = catalog_dir()
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise SizerError(f"catalog folder {directory} {what}; set SIZER_CATALOG_DIR to a folder of family TOML files")
    files = family_files(directory)
    if not files:
        raise SizerError(f"catalog folder {directory} has no family files (*.toml); set SIZER_CATALOG_DIR to a "
                         "folder of family TOML files, or unset it to use the catalogs shipped with sizer")
    return Catalog(layered(_read(files), user_entries()))


def _read(files: list[Path]) -> list[ModelEntry]:
    seen: dict[str, Path] = {}
    entries: list[ModelEntry] = []
    for path in files:
        for entry in read_family_file(path):
            if entry.id in seen:
                raise SizerError(f"{path}: model {entry.id!r} is also in {seen[entry.id]}; keep one")
            seen[entry.id] = path
            entries.append(entry)
    return entries

