"""Retrieval for the RAG strategy: documents split into overlapping chunks, embedded once and kept
on disk, searched by cosine similarity (optionally fused with BM25), and scored by recall@k.

    index = index_documents(task.documents, default_embedder())   # cached under cache_dir()/indexes
    hits = index.search(["How many days of leave?"], k=3)          # one list of Hit per query
    recall_at_k([[h.chunk.source for h in row] for row in hits], ["leave.md"], k=3)

Chunks are windows of CHUNK_WORDS words that start every CHUNK_WORDS - OVERLAP_WORDS words, so a
fact cut by one window's edge is whole in the next. Words (not model tokens) keep the index
independent of the language model under test; 40 words stay well inside MiniLM's 256-token window.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from sizer.core.errors import SizerError
from sizer.core.fileio import atomic_write_text
from sizer.core.paths import cache_dir
from sizer.core.trials.scoring import Metric, wilson

CHUNK_WORDS = 40
OVERLAP_WORDS = 10
DOCUMENT_SUFFIXES = (".md", ".txt")
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
RRF_K = 60          # reciprocal rank fusion constant (Cormack et al., 2009)
INDEX_FORMAT = 1    # bump when the files an index is stored in change shape


@dataclass(frozen=True)
class Chunk:
    source: str     # the document, as "folder/file.md" relative to the folder the task named
    text: str
    start: int      # index of the chunk's first word in the document


@dataclass(frozen=True)
class Chunking:
    size: int = CHUNK_WORDS
    overlap: int = OVERLAP_WORDS

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.overlap < self.size:
            raise SizerError(f"chunking: need size >= 1 and 0 <= overlap < size, got {self.size}/{self.overlap}")


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float    # cosine similarity, or the fused reciprocal-rank score when hybrid


class Embedder(Protocol):
    name: str       # identifies the model and its revision: part of the index's cache key

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""


# ---- documents and chunks ------------------------------------------------------------------

def document_files(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(source name, file) of every .md/.txt file in `paths` (folders are searched recursively)."""
    found: list[tuple[str, Path]] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
            found += [(p.relative_to(path.parent).as_posix(), p) for p in files]
        elif path.is_file():
            found.append((path.name, path))
        else:
            raise SizerError(f"documents: {path} not found")
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise SizerError(f"documents: no {' or '.join(DOCUMENT_SUFFIXES)} files in {shown}; add some or remove documents")
    return found


def chunk_text(text: str, size: int = CHUNK_WORDS, overlap: int = OVERLAP_WORDS) -> list[tuple[int, str]]:
    """(first word index, text) windows of `size` words, each sharing `overlap` words with the last."""
    Chunking(size, overlap)  # validates
    words = text.split()
    step = size - overlap
    chunks = []
    for start in range(0, max(len(words), 1), step):
        window = words[start:start + size]
        if window:
            chunks.append((start, " ".join(window)))
        if start + size >= len(words):
            break
    return chunks


def chunk_documents(paths: Sequence[Path], chunking: Chunking = Chunking()) -> list[Chunk]:
    chunks = []
    for source, path in document_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SizerError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        chunks += [Chunk(source, piece, start) for start, piece in chunk_text(text, chunking.size, chunking.overlap)]
    return chunks


# ---- the index -----------------------------------------------------------------------------

def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class Index:
    """Chunks and their embeddings; BM25 statistics are built on first hybrid search."""

    def __init__(self, chunks: list[Chunk], vectors: np.ndarray, embedder: Embedder, key: str) -> None:
        self.chunks = chunks
        self.vectors = vectors
        self.embedder = embedder
        self.key = key
        self._bm25 = None

    def search(self, queries: Sequence[str], k: int, hybrid: bool = False) -> list[list[Hit]]:
        """The `k` best chunks for each query, best first."""
        if not queries:
            return []
        sims = self.embedder.embed(list(queries)) @ self.vectors.T
        if not hybrid:
            order = top_k(sims, k)
            return [[Hit(self.chunks[j], float(sims[i, j])) for j in row] for i, row in enumerate(order)]
        return [self._fused(query, row, k) for query, row in zip(queries, sims)]

    def _fused(self, query: str, sims: np.ndarray, k: int) -> list[Hit]:
        if self._bm25 is None:
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([_tokens(c.text) for c in self.chunks])
        lexical = self._bm25.get_scores(_tokens(query))
        fused = reciprocal_rank_fusion([np.argsort(-sims, kind="stable"), np.argsort(-lexical, kind="stable")])
        best = np.argsort(-fused, kind="stable")[:k]
        return [Hit(self.chunks[j], float(fused[j])) for j in best]


def top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the `k` largest values in each row of `sims`, largest first."""
    k = min(k, sims.shape[1])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def reciprocal_rank_fusion(rankings: Sequence[np.ndarray], k: int = RRF_K) -> np.ndarray:
    """Sum over rankings of 1 / (k + rank) per item; each ranking lists item indices best first."""
    fused = np.zeros(len(rankings[0]))
    for ranking in rankings:
        fused[ranking] += 1.0 / (k + np.arange(1, len(ranking) + 1))
    return fused


def index_key(chunks: Sequence[Chunk], embedder_name: str, chunking: Chunking | None) -> str:
    """A hash of everything that shapes the vectors: the chunk texts, the chunking, the embedder."""
    blob = json.dumps([INDEX_FORMAT, embedder_name, asdict(chunking) if chunking else None,
                       [[c.source, c.start, c.text] for c in chunks]], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def build_index(chunks: list[Chunk], embedder: Embedder, chunking: Chunking | None = None,
                root: Path | None = None) -> Index:
    """The index of `chunks`, read from `root` (default cache_dir()/indexes) when already built."""
    if not chunks:
        raise SizerError("retrieval: nothing to index (no text in the documents or no training examples)")
    key = index_key(chunks, embedder.name, chunking)
    folder = (root or cache_dir() / "indexes") / key
    vectors = _load_vectors(folder, len(chunks))
    if vectors is None:
        vectors = np.asarray(embedder.embed([c.text for c in chunks]), dtype=np.float32)
        _save(folder, vectors, chunks, embedder.name, chunking)
    return Index(chunks, vectors, embedder, key)


def index_documents(paths: Sequence[Path], embedder: Embedder, chunking: Chunking = Chunking(),
                    root: Path | None = None) -> Index:
    """Chunk the documents in `paths` and index them (built once, then read from disk)."""
    return build_index(chunk_documents(paths, chunking), embedder, chunking, root)


def _load_vectors(folder: Path, count: int) -> np.ndarray | None:
    meta, data = folder / "meta.json", folder / "vectors.npy"
    if not meta.exists() or not data.exists():
        return None
    try:
        vectors = np.load(data, allow_pickle=False)
        stored = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a damaged entry is rebuilt
    if vectors.ndim != 2 or vectors.shape[0] != count or stored.get("chunks") != count:
        return None
    return vectors


def _save(folder: Path, vectors: np.ndarray, chunks: list[Chunk], embedder: str, chunking: Chunking | None) -> None:
    """vectors.npy, then meta.json: meta is written last, so its presence means the entry is whole."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".vectors.", suffix=".npy.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vectors, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / "vectors.npy")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {"format": INDEX_FORMAT, "embedder": embedder, "chunking": asdict(chunking) if chunking else None,
            "chunks": len(chunks), "dim": int(vectors.shape[1]),
            "sources": sorted({c.source for c in chunks})[:1000]}
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))


# ---- recall@k ------------------------------------------------------------------------------

def names_document(source: str, evidence: str) -> bool:
    """Whether `evidence` ("leave.md", "handbook/leave.md") names the document `source`."""
    tail = Path(evidence).parts
    return Path(source).parts[-len(tail):] == tail if tail else False


def recall_at_k(retrieved: Sequence[Sequence[str]], evidence: Sequence[str | None], k: int) -> Metric | None:
    """Share of the queries with evidence whose evidence document is among their first `k`
    retrieved sources, with a Wilson interval; None when no query names its evidence."""
    hits = [any(names_document(s, ev) for s in sources[:k]) for sources, ev in zip(retrieved, evidence) if ev]
    if not hits:
        return None
    low, high = wilson(sum(hits), len(hits))
    return Metric(f"recall@{k}", sum(hits) / len(hits), low, high, len(hits), "wilson")


def check_evidence(examples: Sequence, chunks: Sequence[Chunk]) -> None:
    """Every example's evidence must name one of the indexed documents."""
    sources = sorted({c.source for c in chunks})
    for example in examples:
        ev = getattr(example, "evidence", None)
        if ev and not any(names_document(s, ev) for s in sources):
            shown = ", ".join(sources[:4]) + (", ..." if len(sources) > 4 else "")
            raise SizerError(f"{example.source}: examples.evidence: {ev!r} is not one of the task's documents ({shown})")


# ---- the default embedder ------------------------------------------------------------------

@dataclass
class EncoderEmbedder:
    """A sentence encoder named by its catalog id and local revision."""

    name: str
    encoder: object

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.embed(texts)


def load_embedder(model_id: str = DEFAULT_EMBEDDER, device: str = "cpu", catalog=None) -> EncoderEmbedder:
    """A catalog encoder from its local files (the offline package or the Hugging Face cache)."""
    from sizer.core.engines.encoder import Encoder
    from sizer.core.catalog.model_catalog import load_catalog
    from sizer.core.catalog.resolve import locate

    entry = (catalog or load_catalog()).get(model_id)
    if entry.kind != "encoder":
        raise SizerError(f"{model_id} is not a sentence encoder; retrieval needs one (e.g. {DEFAULT_EMBEDDER})")
    local = locate(entry)
    return EncoderEmbedder(f"{entry.id}@{local.revision}", Encoder.load(local, device))
