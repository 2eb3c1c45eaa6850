"""Family files from hand-kept sources: `catalogs/cards.toml` (licence, published size, GGUF
repos...) plus the verbatim config.json copies in `catalogs/configs/`.

Run as `python -m sizer.core.catalog.build`; `sizer catalog refresh` rebuilds entries from the Hub.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sizer.core.catalog.model_catalog import CARDS_FILE, catalog_dir, family_files
from sizer.core.catalog.from_config import entry_from_config
from sizer.core.catalog.entry import KINDS, ModelEntry
from sizer.core.catalog.family_file import config_path, read_family_file, read_toml, type_name, type_ok, write_family_file
from sizer.core.errors import SizerError
from sizer.core.events import Message, Sink, null_sink, stream_sink

CARD_REQUIRED = {"family": str, "kind": str, "instruct": bool, "license": str, "gated": bool}


def read_cards(path: Path) -> dict[str, dict[str, Any]]:
    """cards.toml as repo id -> card fields, with the required fields checked."""
    cards = read_toml(path)
    for repo_id, card in cards.items():
        if not isinstance(card, dict):
            raise SizerError(f"{path}: [{repo_id!r}] must be a table of card fields")
        for name, typ in CARD_REQUIRED.items():
            if not isinstance(card.get(name), typ):
                raise SizerError(f"{path}: [{repo_id!r}]: field {name!r} must be {type_name(typ)}")
        if not type_ok(card.get("published_params"), float):
            raise SizerError(f"{path}: [{repo_id!r}]: field 'published_params' must be a number (the model card's figure)")
        if card["kind"] not in KINDS:
            raise SizerError(f"{path}: [{repo_id!r}]: kind must be one of {', '.join(KINDS)}")
    return cards


def read_config(path: Path) -> dict[str, Any]:
    """A stored config.json copy; malformed JSON is a SizerError naming file:line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SizerError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None


def build(directory: Path | None = None, sink: Sink = null_sink) -> dict[str, list[ModelEntry]]:
    """Rebuild every family file from cards.toml + configs/; returns the entries per family.

    Cards whose config copy is missing are skipped with a warning event.
    """
    directory = directory or catalog_dir()
    cards = read_cards(directory / CARDS_FILE)
    families: dict[str, list[ModelEntry]] = {}
    for repo_id, card in cards.items():
        path = config_path(directory, repo_id)
        if not path.exists():
            sink(Message(f"skipped {repo_id}: no {path.relative_to(directory)}", "warning"))
            continue
        families.setdefault(card["family"], []).append(entry_from_config(repo_id, read_config(path), card))
    for family, entries in families.items():
        write_family_file(directory / f"{family}.toml", entries)
        sink(Message(f"wrote {directory / f'{family}.toml'}: {len(entries)} models"))
    for path in family_files(directory):
        read_family_file(path)  # everything written must load back
    return families


def main(argv: list[str]) -> int:
    """`python -m sizer.core.catalog.build`: rebuild the shipped family files, progress on stderr."""
    if argv:
        print("usage: python -m sizer.core.catalog.build", file=sys.stderr)
        return 2
    import os

    import transformers

    from sizer.core.paths import source_checkout

    if not os.environ.get("SIZER_CATALOG_DIR") and source_checkout() is None:
        print("sizer: error: the shipped catalog is rebuilt in a source checkout of sizer, never in an "
              "installation; set SIZER_CATALOG_DIR to a folder of your own to build one there", file=sys.stderr)
        return 2
    transformers.logging.set_verbosity_error()
    try:
        build(sink=stream_sink())
    except SizerError as exc:
        print(f"sizer: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
