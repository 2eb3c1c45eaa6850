"""Catalog refresh from the Hugging Face Hub: model info + config.json, through huggingface_hub.

`refresh(["qwen2.5"])` re-reads every entry of a family (or named repos) from the Hub, rebuilds
the entries (exact parameter count from a meta-device build), keeps the hand-kept card fields
(family, kind, base/instruct, the model card's published size, offline source) and writes them,
with their config.json copies, to the user catalog (never into sizer's installation), only once
every repo has been read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from sizer.core.catalog.model_catalog import Catalog, ModelEntry, entry_from_config, load_catalog
from sizer.core.catalog.from_config import quant_of, transformers_knows
from sizer.core.errors import SizerError
from sizer.core.events import Message, Progress, Sink, null_sink


@dataclass(frozen=True)
class RepoInfo:
    """What the Hub's model-info API says about one repo."""

    repo_id: str
    sha: str
    license: str
    gated: bool
    safetensors_total: int | None
    files: tuple[str, ...]


def hub_endpoint() -> str:
    """`HF_ENDPOINT` as set now (huggingface_hub reads it only once, at import time)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """`HF_HUB_OFFLINE` as set now, falling back to huggingface_hub's import-time reading."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is None:
        return constants.is_offline_mode()
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _offline_error(reason: str) -> SizerError:
    reason = reason.strip().splitlines()[0] if reason.strip() else "no answer"
    return SizerError(
        f"offline: cannot reach the Hugging Face Hub at {hub_endpoint()} ({reason}); catalog not refreshed"
    )


def network_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the Hub could not be reached (or may not be, in offline mode)."""
    from huggingface_hub import errors

    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError, errors.LocalEntryNotFoundError,
                                        errors.OfflineModeIsEnabled]
    for client in ("httpx2", "httpx"):  # whichever HTTP client this huggingface_hub uses
        module = sys.modules.get(client)
        if module is not None and hasattr(module, "TransportError"):
            kinds.append(module.TransportError)
    return tuple(kinds)


@contextlib.contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """Turn huggingface_hub and network failures into one-line SizerErrors."""
    from huggingface_hub import errors

    try:
        yield
    except errors.GatedRepoError:
        raise SizerError(f"{repo_id} is gated: accept its licence on the Hub, then set HF_TOKEN") from None
    except errors.RepositoryNotFoundError:
        raise SizerError(f"{repo_id} was not found on {hub_endpoint()} (or is private): check the repo id") from None
    except errors.RemoteEntryNotFoundError:
        raise SizerError(f"{repo_id} has no config.json on the Hub: it cannot be a catalog entry") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise SizerError(f"{repo_id}: the Hub answered {status}; try again later") from None
    except network_errors() as exc:
        raise _offline_error(str(exc) or type(exc).__name__) from None


def fetch_info(repo_id: str, token: str | bool | None = None) -> RepoInfo:
    """Licence, gating, safetensors parameter total and file list of one Hub repo."""
    from huggingface_hub import HfApi

    with _hub_errors(repo_id):
        info = HfApi(endpoint=hub_endpoint(), token=token).model_info(repo_id)
    card = info.card_data.to_dict() if info.card_data is not None else {}
    licence = card.get("license") or next(
        (t.removeprefix("license:") for t in info.tags or [] if t.startswith("license:")), ""
    )
    return RepoInfo(
        repo_id=repo_id,
        sha=info.sha or "",
        license=str(licence),
        gated=bool(info.gated),
        safetensors_total=info.safetensors.total if info.safetensors is not None else None,
        files=tuple(s.rfilename for s in info.siblings or []),
    )


def fetch_config(repo_id: str, revision: str | None, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The text of the repo's config.json (downloaded into the HF cache)."""
    from huggingface_hub import hf_hub_download

    with _hub_errors(repo_id):
        path = hf_hub_download(
            repo_id, "config.json", revision=revision, endpoint=hub_endpoint(), cache_dir=cache_dir
        )
    return Path(path).read_text(encoding="utf-8")


_SHARD = re.compile(r"-(\d{5})-of-\d{5}\.gguf$")


def gguf_files(filenames: Sequence[str]) -> dict[str, str]:
    """Quant name -> GGUF file (the first shard of a split file); projector files left out."""
    found: dict[str, str] = {}
    for name in sorted(filenames):
        shard = _SHARD.search(name)
        if not name.endswith(".gguf") or "mmproj" in name.lower() or (shard and shard.group(1) != "00001"):
            continue
        quant = quant_of(name)
        if quant and quant not in found:
            found[quant] = name
    return dict(sorted(found.items()))


_INSTRUCT = re.compile(r"(instruct|[-_]it$|[-_]it[-_]|chat)", re.IGNORECASE)


def new_card(repo_id: str, config: dict[str, Any], family: str | None) -> dict[str, Any]:
    """Card fields for a repo not yet in the catalog: kind from the architecture, instruct from the name."""
    if not family:
        raise SizerError(f"{repo_id} is not in the catalog; pass --family NAME to add it to a family file")
    architecture = (config.get("architectures") or [""])[0]
    causal = architecture.endswith(("ForCausalLM", "ForConditionalGeneration", "LMHeadModel"))
    return {
        "family": family,
        "kind": "causal" if causal else "encoder",
        "instruct": bool(_INSTRUCT.search(repo_id.split("/")[-1])),
    }


def _kept_card(entry: ModelEntry) -> dict[str, Any]:
    """The hand-kept fields of an existing entry, which the Hub does not know."""
    card: dict[str, Any] = {
        "family": entry.family,
        "kind": entry.kind,
        "instruct": entry.instruct,
        "published_params": entry.published_params,
        "published_params_note": entry.published_params_note,
        "gguf": [{"repo": g.repo, "files": g.files} for g in entry.gguf if not g.repo.startswith("package:")],
    }
    if entry.source != "hub":
        card.update(offline_source=entry.source, offline_file=entry.offline_file)
    return card


def _gguf_listing(info: RepoInfo, known: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The repo's own GGUF files and those of the GGUF repos the entry already names, re-listed."""
    listing = []
    own = gguf_files(info.files)
    if own:
        listing.append({"repo": info.repo_id, "files": own})
    for item in known:
        if item["repo"] != info.repo_id:
            files = gguf_files(fetch_info(item["repo"]).files)
            if files:
                listing.append({"repo": item["repo"], "files": files})
    return listing


def refresh_entry(repo_id: str, existing: ModelEntry | None, family: str | None = None, sink: Sink = null_sink,
                  cache_dir: str | os.PathLike[str] | None = None) -> tuple[ModelEntry, str]:
    """Read one repo from the Hub and rebuild its entry; returns (entry, config.json text)."""
    info = fetch_info(repo_id)
    config_text = fetch_config(repo_id, info.sha or None, cache_dir)
    try:
        config = json.loads(config_text)
    except json.JSONDecodeError as exc:
        raise SizerError(f"{repo_id}: config.json from the Hub is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not transformers_knows(config):
        raise SizerError(
            f"{repo_id}: this transformers cannot build model_type {config.get('model_type')!r}; "
            "upgrade transformers to count its parameters"
        )
    card = _kept_card(existing) if existing else new_card(repo_id, config, family)
    card.update(
        license=info.license or (existing.license if existing else ""),
        gated=info.gated,
        revision=info.sha or None,
        config_source=f"{hub_endpoint()}/{repo_id}/blob/{info.sha or 'main'}/config.json",
        gguf=_gguf_listing(info, card.get("gguf", [])),
    )
    if "published_params" not in card:
        card["published_params"] = float(info.safetensors_total or 0)
        card["published_params_note"] = "Hub safetensors metadata (no model-card figure recorded)"
    if card.get("revision") is None:
        card.pop("revision")
    entry = entry_from_config(repo_id, config, card)
    if entry.published_params == 0:
        entry = with_built_published(entry)
    total = info.safetensors_total
    if total and abs(total - entry.params) > 0.01 * entry.params:
        sink(Message(f"{repo_id}: the Hub's safetensors total {total:,} differs from the built count {entry.params:,}", "warning"))
    return entry, config_text


def with_built_published(entry: ModelEntry) -> ModelEntry:
    return replace(entry, published_params=float(entry.params), published_params_note="built count (no published figure)")


def _targets(targets: Sequence[str], catalog: Catalog) -> list[str]:
    """Repo ids to refresh: an argument with a '/' is a repo id, anything else a family name."""
    ids: list[str] = []
    for target in targets:
        if "/" in target:
            found = catalog.find(target)
            ids.append(found.id if found else target)
        else:
            ids.extend(e.id for e in catalog.family(target))
    return list(dict.fromkeys(ids))


def refresh(targets: Sequence[str], *, directory: Path | None = None, family: str | None = None,
            sink: Sink = null_sink, cache_dir: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
    """Refresh families or repos from the Hub into the user catalog (`directory`, default the user
    data folder's); returns the new entries."""
    from sizer.core.catalog.user import save_user_entries

    if hub_offline():
        raise _offline_error("HF_HUB_OFFLINE is set")
    catalog = load_catalog()
    repo_ids = _targets(targets, catalog)
    results = []
    for done, repo_id in enumerate(repo_ids, start=1):
        results.append(refresh_entry(repo_id, catalog.find(repo_id), family, sink, cache_dir))
        sink(Progress("refresh", done, len(repo_ids), repo_id))  # after the read: offline stays one line
    for path in save_user_entries(results, directory):
        sink(Message(f"wrote {path}"))
    return [entry for entry, _ in results]
