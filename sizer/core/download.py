"""Hub downloads: only the files a trial needs, into the Hugging Face cache, with progress.

    path = download(entry)                    # config, tokenizer, safetensors weights -> snapshot folder
    path = download(entry, quant="Q4_K_M")    # one GGUF file (+ the base repo's config/tokenizer)
    size = download_size(entry, "Q4_K_M")     # bytes still to fetch (0 when cached), for a budget

Every file goes through `hf_hub_download`, so the cache is shared with transformers and the `hf`
CLI and nothing is fetched twice. A complete copy in the cache is found without any request, which
is also what makes `HF_HUB_OFFLINE=1` work. A connection dropped mid-file is resumed by
huggingface_hub with a Range request; a download that is stopped (Ctrl-C, `cancel`) leaves no
partial file behind and starts that file again next time.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sizer.core.catalog import GGUFRepo, ModelEntry
from sizer.core.errors import SizerError
from sizer.core.events import Message, Progress, Sink, null_sink
from sizer.core.fileio import atomic_write_text
from sizer.core.hub import hub_endpoint, hub_offline
from sizer.core.paths import hf_cache_dir

STAGE = "download"
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


class DownloadCancelled(Exception):
    """The caller's cancel event was set; the file being fetched was discarded."""


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
    def total(self) -> int:
        return sum(f.size for f in self.files)

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


def _describe_wanted(entry: ModelEntry, quant: str | None) -> str:
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
        index = _fetch_one(repo, WEIGHTS_INDEX, revision)
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


def _listing(repo: str, revision: str | None) -> tuple[str, dict[str, int]]:
    """(commit, file name -> size) of a repo at `revision`, from the Hub's model-info API."""
    from huggingface_hub import HfApi

    with hub_errors(repo, revision=revision):
        info = HfApi(endpoint=hub_endpoint()).model_info(repo, revision=revision, files_metadata=True)
    sizes = {s.rfilename: int(s.size or (s.lfs.size if s.lfs else 0) or 0) for s in info.siblings or []}
    return info.sha or revision or "main", sizes


def _files(repo: str, commit: str, names: list[str], sizes: dict[str, int]) -> list[RemoteFile]:
    return [RemoteFile(repo, n, sizes.get(n, 0), commit, _cached(repo, n, commit) is not None) for n in names]


def plan_download(entry: ModelEntry, quant: str | None = None, revision: str | None = None,
                  sink: Sink = null_sink) -> DownloadPlan:
    """Read the Hub's listing and decide what to fetch (may fetch a small safetensors index)."""
    if quant is not None:
        return _plan_gguf(entry, quant, revision, sink)
    commit, sizes = _listing(entry.id, revision or entry.revision)
    if "config.json" not in sizes:
        raise SizerError(f"{entry.id} has no config.json on the Hub at {commit[:12]}: it cannot be loaded for a trial")
    small = _files(entry.id, commit, _small_files(set(sizes), entry.kind), sizes)
    weights = _files(entry.id, commit, _weights(entry.id, commit, sizes), sizes)
    config = next(f for f in small if f.filename == "config.json")
    ref = (entry.id, revision or entry.revision or "main", commit)
    return DownloadPlan(entry.id, tuple(small + weights), config, gguf=False, refs=(ref,))


def _plan_gguf(entry: ModelEntry, quant: str, revision: str | None, sink: Sink) -> DownloadPlan:
    repo, filename = pick_gguf(entry, quant)
    commit, sizes = _listing(repo.repo, revision)
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
        commit, sizes = _listing(entry.id, entry.revision)
    except SizerError as exc:
        sink(Message(f"{exc} (its config and tokenizer are skipped; the GGUF file carries its own)", "warning"))
        return [], []
    files = _files(entry.id, commit, _small_files(set(sizes), entry.kind), sizes)
    return files, [(entry.id, entry.revision or "main", commit)]


# ---------------------------------------------------------------- disk, errors, progress


def free_bytes(folder: Path) -> int:
    """Free space on the disk holding `folder` (or its nearest existing parent)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def check_disk(plan: DownloadPlan, folder: Path | None = None) -> None:
    folder = folder or hf_cache_dir()
    need, free = plan.missing, free_bytes(folder)
    if need > free:
        raise SizerError(
            f"not enough disk space for {plan.model}: {human_bytes(need)} needed, {human_bytes(free)} free in "
            f"{folder}; free some space or point HF_HUB_CACHE at a larger disk"
        )


def _network_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors

    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError, errors.LocalEntryNotFoundError,
                                        errors.OfflineModeIsEnabled]
    for client in ("httpx2", "httpx"):  # whichever HTTP client this huggingface_hub uses
        module = sys.modules.get(client)
        if module is not None and hasattr(module, "TransportError"):
            kinds.append(module.TransportError)
    return tuple(kinds)


def _status(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


@contextlib.contextmanager
def hub_errors(repo: str, filename: str | None = None, revision: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub and network failures into one-line SizerErrors (never showing a token)."""
    from huggingface_hub import errors

    endpoint = hub_endpoint()
    try:
        yield
    except errors.GatedRepoError:
        raise SizerError(f"{repo} is gated: accept the licence at {endpoint}/{repo} and set HF_TOKEN "
                         "(or run `hf auth login`)") from None
    except errors.RepositoryNotFoundError as exc:
        if _status(exc) == 401:
            raise SizerError(f"{repo}: the Hub answered 401 Unauthorized (a private or gated repo, or none by that "
                             "name): set HF_TOKEN to a token that can read it, or check the repo id") from None
        raise SizerError(f"{repo} was not found on {endpoint} (404): check the repo id") from None
    except errors.RevisionNotFoundError:
        raise SizerError(f"{repo}: no revision {revision!r} on the Hub; check --revision or the catalog's "
                         "revision field") from None
    except errors.RemoteEntryNotFoundError:
        raise SizerError(f"{repo}: {filename or 'a file'} is not on the Hub at revision {revision}; "
                         "run `sizer catalog refresh` for this model") from None
    except errors.HfHubHTTPError as exc:
        raise _http_error(repo, _status(exc)) from None
    except _network_errors() as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SizerError(f"cannot reach the Hugging Face Hub at {endpoint} ({reason}); {repo} not downloaded") from None
    except OSError as exc:  # after the HTTP errors above, which are OSErrors too: a full disk, a consistency check
        reason = (str(exc.strerror or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SizerError(f"{repo}: {filename or 'download'} failed: {reason}") from None


def _http_error(repo: str, status: int | None) -> SizerError:
    if status == 401:
        return SizerError(f"{repo}: the Hub refused the token (401 Unauthorized): set HF_TOKEN to a valid token "
                          "or run `hf auth login`")
    if status == 403:
        return SizerError(f"{repo}: the Hub answered 403 Forbidden: the token lacks read access to this repo; "
                          f"request access at {hub_endpoint()}/{repo} or use a token with read permission")
    return SizerError(f"{repo}: the Hub answered {status or 'an error'}; try again later")


class _Meter:
    """Bytes of the whole download, reported as Progress events with speed and ETA at most once a second."""

    def __init__(self, plan: DownloadPlan, sink: Sink, cancel: threading.Event | None, interval: float = 1.0):
        self.total, self.sink, self.cancel, self.interval = plan.missing, sink, cancel, interval
        self.done, self.started, self.last = 0, time.monotonic(), 0.0
        self.current = ""
        self.lock = threading.Lock()

    def add(self, count: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(self.current)
        with self.lock:
            self.done += count
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                self.emit(now)

    def emit(self, now: float | None = None) -> None:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left is not None else "?"
        detail = (f"{human_bytes(self.done)} of {human_bytes(self.total)}, {human_bytes(rate)}/s, "
                  f"ETA {eta} ({self.current})")
        self.sink(Progress(STAGE, self.done, self.total, detail))

    def bar_class(self) -> type:
        """A tqdm class for huggingface_hub that feeds this meter and prints nothing."""
        from huggingface_hub.utils import tqdm as hf_tqdm

        meter = self

        class _Bar(hf_tqdm):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                meter.add(int(n or 0))
                return None

        return _Bar


# ---------------------------------------------------------------- fetching


def _fetch_one(repo: str, filename: str, revision: str, bar: type | None = None) -> Path:
    from huggingface_hub import hf_hub_download

    with hub_errors(repo, filename, revision):
        return Path(hf_hub_download(repo, filename, revision=revision, endpoint=hub_endpoint(),
                                    cache_dir=hf_cache_dir(), tqdm_class=bar))


def fetch(plan: DownloadPlan, sink: Sink = null_sink, cancel: threading.Event | None = None) -> Path:
    """Fetch the plan's missing files in order; returns the snapshot folder or the GGUF file."""
    meter = _Meter(plan, sink, cancel)
    bar = meter.bar_class()
    result = None
    for item in plan.files:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(item.filename)
        meter.current = item.filename
        path = _fetch_one(item.repo, item.filename, item.revision, bar)
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
            f"HF_HUB_OFFLINE is set and {_describe_wanted(entry, quant)} is not in the Hugging Face cache at "
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
        raise SizerError(f"HF_HUB_OFFLINE is set: cannot size {_describe_wanted(entry, quant)}, which is not cached")
    return plan_download(entry, quant, revision).missing
