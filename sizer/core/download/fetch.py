"""Hub downloads: only the files a trial needs, into the Hugging Face cache, with progress.

    path = download(entry)                    # config, tokenizer, safetensors weights -> snapshot folder
    path = download(entry, quant="Q4_K_M")    # one GGUF file (+ the base repo's config/tokenizer)
    size = download_size(entry, "Q4_K_M")     # bytes still to fetch (0 when cached), for a budget

Every file goes through `hf_hub_download`, so the cache is shared with transformers and the `hf`
CLI and nothing is fetched twice. A complete copy in the cache is found without any request, which
is also what makes `HF_HUB_OFFLINE=1` work. A connection dropped mid-file is resumed by
huggingface_hub with a Range request; a download that is stopped (Ctrl-C, `cancel`) leaves no
partial file behind and starts that file again next time.

What to fetch (sizes, the disk check) is decided in sizer.core.download.plan; the Hub requests
and their one-line errors are in sizer.core.download.hub_requests; progress events and cancelling
in sizer.core.download.progress.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.download.plan import DownloadPlan, cached_path, check_disk, describe_wanted, plan_download
from sizer.core.download.progress import DownloadCancelled, DownloadMeter, human_bytes
from sizer.core.download.hub_requests import fetch_file
from sizer.core.errors import SizerError
from sizer.core.events import Message, Sink, null_sink
from sizer.core.fileio import atomic_write_text
from sizer.core.catalog.hub import hub_offline
from sizer.core.paths import hf_cache_dir


def fetch(plan: DownloadPlan, sink: Sink = null_sink, cancel: threading.Event | None = None) -> Path:
    """Fetch the plan's missing files in order; returns the snapshot folder or the GGUF file."""
    meter = DownloadMeter(plan.missing, sink, cancel)
    bar = meter.bar_class()
    result = None
    for item in plan.files:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(item.filename)
        meter.current = item.filename
        path = fetch_file(item.repo, item.filename, item.revision, bar)
        if item == plan.target:
            result = path
    if plan.missing:
        meter.emit()
    _remember_refs(plan)
    assert result is not None
    return result if plan.gguf else result.parent


def _remember_refs(plan: DownloadPlan) -> None:
    """Point the branch or tag that was asked for at the commit the files came from, as
    huggingface_hub does when it resolves a branch itself (`refs/main` in the cache), so that
    offline lookups by branch find them. Files are fetched by commit so that a branch moving
    during the download cannot mix two versions."""
    from huggingface_hub.file_download import repo_folder_name

    for repo, ref, commit in plan.refs:
        if ref != commit:
            folder = hf_cache_dir() / repo_folder_name(repo_id=repo, repo_type="model")
            atomic_write_text(folder / "refs" / ref, commit)


def download(entry: ModelEntry, quant: str | None = None, revision: str | None = None,
             sink: Sink = null_sink, cancel: threading.Event | None = None) -> Path:
    """Make `entry` (or its `quant` GGUF file) available locally; returns the snapshot folder of
    safetensors weights or the GGUF file's path. Raises SizerError with one line on failure."""
    local = cached_path(entry, quant, revision)
    if local is not None:
        sink(Message(f"{entry.id}: already in the Hugging Face cache ({local})"))
        return local
    if hub_offline():
        raise SizerError(
            f"HF_HUB_OFFLINE is set and {describe_wanted(entry, quant)} is not in the Hugging Face cache at "
            f"{hf_cache_dir()}; unset HF_HUB_OFFLINE to download it, or pick a model `sizer catalog list` marks cached"
        )
    plan = plan_download(entry, quant, revision, sink)
    check_disk(plan)
    sink(Message(f"{entry.id}: {human_bytes(plan.missing)} to download into {hf_cache_dir()}"))
    return fetch(plan, sink, cancel)


def download_size(entry: ModelEntry, quant: str | None = None, revision: str | None = None) -> int:
    """Bytes `download` would still fetch: 0 when the cache holds everything (no request then),
    otherwise read from the Hub's file metadata. A sharded model's index (a few KB, it names the
    shards) is fetched while sizing and so is not counted."""
    if cached_path(entry, quant, revision) is not None:
        return 0
    if hub_offline():
        raise SizerError(f"HF_HUB_OFFLINE is set: cannot size {describe_wanted(entry, quant)}, which is not cached")
    return plan_download(entry, quant, revision).missing
