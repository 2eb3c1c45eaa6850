"""What a download fetches: the files a trial needs from the Hub's listing (config, tokenizer,
safetensors weights or one GGUF file), their sizes, what the HF cache already holds, and
whether the rest fits on the disk."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from sizer.core.catalog.model_catalog import GGUFRepo, ModelEntry
from sizer.core.download.progress import human_bytes
from sizer.core.download.hub_requests import fetch_file, repo_listing
from sizer.core.errors import SizerError
from sizer.core.events import Message, Sink, null_sink
from sizer.core.paths import hf_cache_dir

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "chat_template.jinja", "chat_template.json",
)
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
_ST_MODULE_CONFIG = re.compile(r"\d+_\w+/config\.json")  # e.g. 1_Pooling/config.json
_SPLIT_GGUF = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    filename: str
    size: int
    revision: str   # the commit the repo's listing was read at
    cached: bool


@dataclass(frozen=True)
class DownloadPlan:
    """The files one download fetches, small files first so that weights on disk mean the rest are too."""

    model: str
    files: tuple[RemoteFile, ...]
    target: RemoteFile   # the file whose folder (safetensors) or path (GGUF) is the result
    gguf: bool
    refs: tuple[tuple[str, str, str], ...] = ()  # (repo, branch or tag asked for, commit it was read at)

    @property
    def missing(self) -> int:
        return sum(f.size for f in self.files if not f.cached)


# ---------------------------------------------------------------- what is already here


def _cached(repo: str, filename: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, filename, revision=revision, cache_dir=hf_cache_dir())
    return Path(hit) if isinstance(hit, str) else None


def _cached_safetensors(entry: ModelEntry, revision: str | None) -> Path | None:
    config = _cached(entry.id, "config.json", revision)
    if config is None:
        return None
    index = _cached(entry.id, WEIGHTS_INDEX, revision)
    if index is not None:
        shards = _index_shards(index)
        return config.parent if shards and all(_cached(entry.id, s, revision) for s in shards) else None
    return config.parent if _cached(entry.id, SINGLE_WEIGHTS, revision) else None


def _gguf_parts(filename: str) -> list[str]:
    """The file itself, or every shard of a split GGUF ("-00001-of-00003.gguf")."""
    split = _SPLIT_GGUF.search(filename)
    if not split:
        return [filename]
    count = int(split.group(2))
    return [_SPLIT_GGUF.sub(f"-{i:05d}-of-{count:05d}.gguf", filename) for i in range(1, count + 1)]


def cached_path(entry: ModelEntry, quant: str | None = None, revision: str | None = None) -> Path | None:
    """The local result of `download(entry, quant, revision)` if it is complete in the cache; no request."""
    if quant is None:
        return _cached_safetensors(entry, revision or entry.revision)
    repo, filename = pick_gguf(entry, quant)
    parts = [_cached(repo.repo, p, revision) for p in _gguf_parts(filename)]
    return parts[0] if all(parts) else None


def describe_wanted(entry: ModelEntry, quant: str | None) -> str:
    """What `download(entry, quant)` fetches, in words for a message."""
    if quant is None:
        return f"{entry.id} (config, tokenizer and safetensors weights)"
    repo, filename = pick_gguf(entry, quant)
    return f"{repo.repo}/{filename} ({quant.upper()} GGUF of {entry.id})"


# ---------------------------------------------------------------- choosing files


def pick_gguf(entry: ModelEntry, quant: str) -> tuple[GGUFRepo, str]:
    """The Hub GGUF repo and file of `entry` for `quant` (case-insensitive)."""
    repos = [g for g in entry.gguf if not g.repo.startswith("package:") and ":" not in g.repo]
    for repo in repos:
        for name, filename in repo.files.items():
            if name.upper() == quant.upper():
                return repo, filename
    if not repos:
        raise SizerError(
            f"{entry.id}: the catalog lists no GGUF repo on the Hub; drop --quant to download safetensors, "
            f"or run `sizer catalog refresh {entry.id}`"
        )
    known = sorted({q for r in repos for q in r.files})
    raise SizerError(f"{entry.id}: no {quant} GGUF file in the catalog; available: {', '.join(known)}")


def _small_files(names: set[str], kind: str) -> list[str]:
    wanted = set(CONFIG_FILES + TOKENIZER_FILES)
    if kind == "encoder":
        wanted.update(SENTENCE_TRANSFORMERS_FILES)
        wanted.update(n for n in names if _ST_MODULE_CONFIG.fullmatch(n))
    return sorted(names & wanted)


def _index_shards(index_path: Path) -> list[str]:
    try:
        return sorted(set(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, ValueError, KeyError, AttributeError):
        return []


def _weights(repo: str, revision: str, sizes: dict[str, int]) -> list[str]:
    """Safetensors files to fetch: the index and its shards, or model.safetensors."""
    if WEIGHTS_INDEX in sizes:
        index = fetch_file(repo, WEIGHTS_INDEX, revision)
        shards = _index_shards(index)
        absent = [s for s in shards if s not in sizes]
        if not shards or absent:
            raise SizerError(f"{repo}: {WEIGHTS_INDEX} names shards the repo does not have ({', '.join(absent[:3])})")
        return [WEIGHTS_INDEX, *shards]
    if SINGLE_WEIGHTS in sizes:
        return [SINGLE_WEIGHTS]
    raise SizerError(
        f"{repo} has no safetensors weights on the Hub; sizer loads safetensors or GGUF only "
        "(pass --quant to fetch a GGUF file if the catalog lists one)"
    )


def _files(repo: str, commit: str, names: list[str], sizes: dict[str, int]) -> list[RemoteFile]:
    return [RemoteFile(repo, n, sizes.get(n, 0), commit, _cached(repo, n, commit) is not None) for n in names]


def plan_download(entry: ModelEntry, quant: str | None = None, revision: str | None = None,
                  sink: Sink = null_sink) -> DownloadPlan:
    """Read the Hub's listing and decide what to fetch (may fetch a small safetensors index)."""
    if quant is not None:
        return _plan_gguf(entry, quant, revision, sink)
    commit, sizes = repo_listing(entry.id, revision or entry.revision)
    if "config.json" not in sizes:
        raise SizerError(f"{entry.id} has no config.json on the Hub at {commit[:12]}: it cannot be loaded for a trial")
    small = _files(entry.id, commit, _small_files(set(sizes), entry.kind), sizes)
    weights = _files(entry.id, commit, _weights(entry.id, commit, sizes), sizes)
    config = next(f for f in small if f.filename == "config.json")
    ref = (entry.id, revision or entry.revision or "main", commit)
    return DownloadPlan(entry.id, tuple(small + weights), config, gguf=False, refs=(ref,))


def _plan_gguf(entry: ModelEntry, quant: str, revision: str | None, sink: Sink) -> DownloadPlan:
    repo, filename = pick_gguf(entry, quant)
    commit, sizes = repo_listing(repo.repo, revision)
    parts = _gguf_parts(filename)
    absent = [p for p in parts if p not in sizes]
    if absent:
        raise SizerError(f"{repo.repo} has no file {absent[0]} at {commit[:12]}; run `sizer catalog refresh {entry.id}`")
    small = _files(repo.repo, commit, _small_files(set(sizes), entry.kind), sizes)
    refs = [(repo.repo, revision or "main", commit)]
    if not any(f.filename == "config.json" for f in small):
        small, base_ref = _base_small_files(entry, sink)
        refs += base_ref
    gguf = _files(repo.repo, commit, parts, sizes)
    return DownloadPlan(entry.id, tuple(small + gguf), gguf[0], gguf=True, refs=tuple(refs))


def _base_small_files(entry: ModelEntry, sink: Sink) -> tuple[list[RemoteFile], list[tuple[str, str, str]]]:
    """Config and tokenizer from the base repo when the GGUF repo has none. The GGUF file carries
    its own tokenizer and config, so a base repo that cannot be read is a warning, not a failure."""
    try:
        commit, sizes = repo_listing(entry.id, entry.revision)
    except SizerError as exc:
        sink(Message(f"{exc} (its config and tokenizer are skipped; the GGUF file carries its own)", "warning"))
        return [], []
    files = _files(entry.id, commit, _small_files(set(sizes), entry.kind), sizes)
    return files, [(entry.id, entry.revision or "main", commit)]


# ---------------------------------------------------------------- disk


def free_bytes(folder: Path) -> int:
    """Free space on the disk holding `folder` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def check_disk(plan: DownloadPlan, folder: Path | None = None) -> None:
    """Refuse before any file is fetched when the plan's missing bytes do not fit on the disk."""
    folder = folder or hf_cache_dir()
    need, free = plan.missing, free_bytes(folder)
    if need > free:
        raise SizerError(
            f"not enough disk space for {plan.model}: {human_bytes(need)} needed, {human_bytes(free)} free in "
            f"{folder}; free some space or point HF_HUB_CACHE at a larger disk"
        )
