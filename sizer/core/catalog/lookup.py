"""Which model a name given on the command line or in the app means: one path for `fit`, `trial`,
`run --models`, `catalog add` and the app.

    entry = resolve_model("Qwen/Qwen2.5-7B-Instruct")   # a catalog id or short name
    entry = resolve_model("my-org/my-finetune")         # any Hub repo with a config.json
    entry = resolve_model("./my-model")                 # a folder with config.json
    entry = resolve_model("model.Q4_K_M.gguf")          # a GGUF file

A model outside the catalog is built from its config (the Hugging Face cache, else the Hub through
huggingface_hub, with the token it finds: HF_TOKEN or `hf auth login`; or the folder's config.json or
the GGUF file's metadata), its exact parameter count from a meta-device build (GGUF: its tensors),
and kept in the user catalog so the next command finds it at once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sizer.core.catalog.model_catalog import Catalog, ModelEntry, entry_from_config, load_catalog
from sizer.core.catalog.local import LOCAL_FAMILY, fingerprint, local_entry
from sizer.core.catalog.user import find_user_entry, save_user_entries
from sizer.core.errors import SizerError

HUB_FAMILY = "hub"  # family of Hub repos added without --family
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")


def looks_like_path(query: str) -> bool:
    """A name that can only be a path: ./x, ../x, /x, ~/x, or a file ending in .gguf."""
    return query.startswith((".", "/", "~")) or query.lower().endswith(".gguf") or "\\" in query


def resolve_model(query: str, catalog: Catalog | None = None, family: str | None = None) -> ModelEntry:
    """The entry `query` names: a catalog entry, else a local model folder or GGUF file, else a Hub
    repo id. What is built is saved in the user catalog. Unknown names are a one-line SizerError."""
    catalog = catalog or load_catalog()
    query = query.strip()
    path = Path(query).expanduser()
    if looks_like_path(query):
        return local_model(path, family)
    found = catalog.find(query)
    if found is not None:
        return found
    if _is_model_folder(path) or (path.is_file() and path.suffix.lower() == ".gguf"):
        return local_model(path, family)
    if _REPO_ID.fullmatch(query):
        return hub_model(query, catalog, family)
    return catalog.get(query)  # unknown: the error names the closest ids


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def local_model(path: Path, family: str | None = None) -> ModelEntry:
    """A folder or GGUF file's entry: the user catalog's when the files have not changed since,
    else built now and saved there."""
    resolved = path.expanduser().resolve()
    if resolved.exists():
        known = find_user_entry(str(resolved))
        if known is not None and known.revision == fingerprint(resolved) and family in (None, known.family):
            return known
    entry = local_entry(resolved, family or LOCAL_FAMILY)
    save_user_entries([(entry, None)])
    return entry


def hub_model(repo_id: str, catalog: Catalog | None = None, family: str | None = None) -> ModelEntry:
    """A Hub repo's entry: from its config.json in the Hugging Face cache when it is there, else
    from the Hub (model info and config.json); saved in the user catalog."""
    known = find_user_entry(repo_id)
    if known is not None and family in (None, known.family):
        return known
    built = _from_hf_cache(repo_id, family or HUB_FAMILY)
    if built is None:
        built = _from_hub(repo_id, catalog, family or HUB_FAMILY)
    save_user_entries([built])
    return built[0]


def _from_hf_cache(repo_id: str, family: str) -> tuple[ModelEntry, str] | None:
    """The entry built from a config.json already in the HF cache (no network), or None."""
    from huggingface_hub import try_to_load_from_cache

    from sizer.core.catalog.from_config import transformers_knows
    from sizer.core.catalog.hub import new_card, with_built_published
    from sizer.core.paths import hf_cache_dir

    hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=hf_cache_dir())
    if not isinstance(hit, str):
        return None
    text = Path(hit).read_text(encoding="utf-8")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SizerError(f"{hit}:{exc.lineno}: malformed JSON in the cached config.json of {repo_id}: {exc.msg}") from None
    if not transformers_knows(config):
        raise SizerError(f"{repo_id}: this transformers cannot build model_type {config.get('model_type')!r}; "
                         "upgrade transformers to count its parameters")
    revision = Path(hit).parent.name  # snapshots/<commit>/config.json
    card = {**new_card(repo_id, config, family), "revision": revision, "config_source": f"Hugging Face cache: {hit}"}
    return with_built_published(entry_from_config(repo_id, config, card)), text


def _from_hub(repo_id: str, catalog: Catalog | None, family: str) -> tuple[ModelEntry, str]:
    from sizer.core.catalog.hub import hub_offline, refresh_entry

    ids = catalog.closest(repo_id) if catalog is not None else []
    hint = f"; closest catalog ids: {', '.join(ids)}" if ids else ""
    if hub_offline():
        raise SizerError(f"unknown model {repo_id!r}: not in the catalog or the Hugging Face cache, and "
                         f"HF_HUB_OFFLINE is set (unset it to read the repo from the Hub){hint}")
    try:
        return refresh_entry(repo_id, None, family)
    except SizerError as exc:
        raise SizerError(f"unknown model {repo_id!r} (not in the catalog): {exc}{hint}") from None
