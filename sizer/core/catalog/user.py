"""The user catalog: entries sizer built on this machine (`sizer catalog add`, `sizer catalog
refresh`, a model named by Hub repo id or local path), kept as family files in the user data folder
(`sizer.core.paths.user_catalog_dir()`) and layered over the shipped catalog: a user entry wins
over a shipped one with the same id. Nothing is ever written into sizer's installation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from sizer.core.catalog.family_file import config_path
from sizer.core.catalog.entry import ModelEntry
from sizer.core.catalog.family_file import read_family_file, write_family_file
from sizer.core.errors import SizerError
from sizer.core.fileio import atomic_write_text
from sizer.core.paths import user_catalog_dir


def user_entries(directory: Path | None = None) -> list[ModelEntry]:
    """Every entry of the user catalog (none when the folder does not exist yet)."""
    directory = directory or user_catalog_dir()
    if not directory.is_dir():
        return []
    entries: list[ModelEntry] = []
    for path in sorted(directory.glob("*.toml")):
        entries.extend(read_family_file(path))
    return entries


def find_user_entry(entry_id: str, directory: Path | None = None) -> ModelEntry | None:
    """The user catalog's entry with this id, read from disk now (another command may have added it)."""
    return next((e for e in user_entries(directory) if e.id == entry_id), None)


def layered(shipped: Sequence[ModelEntry], user: Iterable[ModelEntry]) -> list[ModelEntry]:
    """The shipped entries with each user entry in place of the shipped one of the same id; user
    entries with new ids follow, in their files' order."""
    mine = {e.id: e for e in user}
    out = [mine.pop(e.id, e) for e in shipped]
    return out + list(mine.values())


def save_user_entries(built: Sequence[tuple[ModelEntry, str | None]], directory: Path | None = None) -> list[Path]:
    """Add or replace entries in the user catalog; each comes with the config.json text it was
    built from (stored under configs/, as the shipped catalog does) or None. Returns the family
    files written. An unwritable folder is a SizerError naming it."""
    directory = directory or user_catalog_dir()
    new = {entry.id: entry for entry, _ in built}
    families = sorted({e.family for e in new.values()})
    try:
        directory.mkdir(parents=True, exist_ok=True)
        existing = {path: read_family_file(path) for path in sorted(directory.glob("*.toml"))}
        for entry, config_text in built:
            if config_text is not None:
                atomic_write_text(config_path(directory, entry.id), config_text)
        for path, entries in existing.items():  # an entry that changed family leaves its old file
            if path.stem not in families and any(e.id in new for e in entries):
                _rewrite(path, [e for e in entries if e.id not in new])
        for family in families:
            path = directory / f"{family}.toml"
            kept = [e for e in existing.get(path, []) if e.id not in new]
            _rewrite(path, kept + [e for e in new.values() if e.family == family])
    except OSError as exc:
        raise SizerError(
            f"cannot write the user catalog in {directory} ({exc.strerror or exc}); "
            "set SIZER_HOME to a writable folder"
        ) from None
    return [directory / f"{family}.toml" for family in families]


def _rewrite(path: Path, entries: list[ModelEntry]) -> None:
    if entries:
        write_family_file(path, entries)
    else:
        path.unlink()
