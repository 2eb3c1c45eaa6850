"""Retrieval: chunking with overlap, the on-disk index (built once, rebuilt on change), cosine
top-k and the BM25 hybrid with the real MiniLM encoder, and recall@k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sizer.core.trials import retrieval
from sizer.core.errors import SizerError
from sizer.core.trials.retrieval import Chunk, Chunking, chunk_text, recall_at_k


# ---- chunking ------------------------------------------------------------------------------

def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


@pytest.mark.parametrize("n, size, overlap", [(12, 5, 2), (8, 5, 2), (100, 80, 20), (5, 5, 0), (81, 80, 20)])
def test_windows_overlap_and_cover_every_word_once_past_the_overlap(n, size, overlap):
    chunks = chunk_text(_words(n), size, overlap)
    words = [c.split() for _, c in chunks]
    assert all(len(w) <= size for w in words)
    assert words[0][0] == "w0" and words[-1][-1] == f"w{n - 1}"
    for (start, text), (next_start, next_text) in zip(chunks, chunks[1:]):
        assert next_start == start + size - overlap
        assert text.split()[-overlap:] == next_text.split()[:overlap] if overlap else True
        assert len(text.split()) == size  # only the last window may be short
    assert sorted({w for ws in words for w in ws}, key=lambda w: int(w[1:])) == _words(n).split()


def test_no_trailing_window_that_only_repeats_the_overlap():
    # 8 words, windows of 5 every 3: [0-4], [3-7]; a third window [6-7] would add nothing new
    assert [s for s, _ in chunk_text(_words(8), 5, 2)] == [0, 3]


def test_short_and_empty_documents():
    assert chunk_text("one two", 80, 20) == [(0, "one two")]
    assert chunk_text("  \n ", 80, 20) == []


@pytest.mark.parametrize("size, overlap", [(0, 0), (5, 5), (5, -1)])
def test_bad_chunk_sizes_are_refused(size, overlap):
    with pytest.raises(SizerError, match="chunking"):
        chunk_text("a b c", size, overlap)


def test_documents_are_found_recursively_with_sources_relative_to_the_named_folder(tmp_path):
    docs = tmp_path / "handbook"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("alpha")
    (docs / "sub" / "b.txt").write_text("beta")
    (docs / "data.csv").write_text("x,y")
    single = tmp_path / "notes.md"
    single.write_text("gamma")
    found = retrieval.document_files([docs, single])
    assert [s for s, _ in found] == ["handbook/a.md", "handbook/sub/b.txt", "notes.md"]


def test_a_folder_without_documents_is_an_error(tmp_path):
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(SizerError, match=r"no \.md or \.txt files"):
        retrieval.document_files([tmp_path])


# ---- ranking -------------------------------------------------------------------------------

def test_top_k_matches_a_full_sort():
    sims = np.random.default_rng(0).normal(size=(7, 30))
    expected = np.argsort(-sims, axis=1)[:, :4]
    assert (retrieval.top_k(sims, 4) == expected).all()
    assert retrieval.top_k(sims, 99).shape == (7, 30)


def test_reciprocal_rank_fusion_prefers_items_ranked_well_by_both():
    dense = np.array([0, 1, 2, 3])
    lexical = np.array([1, 2, 3, 0])
    fused = retrieval.reciprocal_rank_fusion([dense, lexical], k=60)
    assert list(np.argsort(-fused)) == [1, 0, 2, 3]  # 1st and 2nd beats 1st and last
    assert fused[1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[0] == pytest.approx(1 / 61 + 1 / 64)


# ---- recall@k ------------------------------------------------------------------------------

def test_recall_at_k_counts_only_examples_with_evidence():
    retrieved = [["handbook/leave.md", "handbook/travel.md"], ["handbook/travel.md", "handbook/it.md"],
                 ["handbook/it.md"], ["handbook/leave.md"]]
    evidence = ["leave.md", "it.md", "handbook/travel.md", None]
    at1 = recall_at_k(retrieved, evidence, 1)
    at2 = recall_at_k(retrieved, evidence, 2)
    assert (at1.value, at1.n, at1.name) == (pytest.approx(1 / 3), 3, "recall@1")
    assert at2.value == pytest.approx(2 / 3)
    assert at2.low < at2.value < at2.high
    assert recall_at_k(retrieved, [None] * 4, 2) is None


def test_evidence_names_a_whole_path_tail_not_a_substring():
    assert retrieval.names_document("handbook/leave.md", "leave.md")
    assert retrieval.names_document("handbook/leave.md", "handbook/leave.md")
    assert not retrieval.names_document("handbook/parental-leave.md", "leave.md")


def test_evidence_naming_no_document_is_a_one_line_error():
    class Ex:
        source, evidence = "task.toml:12", "leeve.md"

    with pytest.raises(SizerError, match=r"task.toml:12: examples.evidence: 'leeve.md' is not one of"):
        retrieval.check_evidence([Ex()], [Chunk("handbook/leave.md", "x", 0)])


# ---- the index, with the real MiniLM -------------------------------------------------------

class CountingEmbedder:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.texts = inner, inner.name, 0

    def embed(self, texts):
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def minilm():
    return retrieval.load_embedder()


CORPUS = {
    "pets.md": "Cats sleep most of the day. Dogs need a walk twice a day and like to fetch sticks.",
    "space.md": "The Moon orbits the Earth every 27 days. Mars has two small moons, Phobos and Deimos.",
    "food.md": "Bread is baked from flour, water, salt and yeast. Pasta is boiled in salted water.",
    "policy.md": "Travel insurance is provided by a mutual insurer under policy number KM-7730.",
}


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in CORPUS.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.slow
def test_index_is_built_once_then_read_from_disk(minilm, corpus, tmp_path):
    root = tmp_path / "indexes"
    counter = CountingEmbedder(minilm)
    first = retrieval.index_documents([corpus], counter, root=root)
    assert counter.texts == len(first.chunks) == len(CORPUS)
    again = retrieval.index_documents([corpus], counter, root=root)
    assert counter.texts == len(CORPUS)  # nothing re-embedded
    assert again.key == first.key and np.array_equal(again.vectors, first.vectors)
    assert {p.name for p in (root / first.key).iterdir()} == {"vectors.npy", "meta.json"}


@pytest.mark.slow
def test_a_changed_document_or_chunking_rebuilds_the_index(minilm, corpus, tmp_path):
    root = tmp_path / "indexes"
    counter = CountingEmbedder(minilm)
    first = retrieval.index_documents([corpus], counter, root=root)
    (corpus / "food.md").write_text(CORPUS["food.md"] + " Rice is steamed.")
    changed = retrieval.index_documents([corpus], counter, root=root)
    assert changed.key != first.key and counter.texts == 2 * len(CORPUS)
    smaller = retrieval.index_documents([corpus], counter, Chunking(8, 2), root=root)
    assert smaller.key != changed.key and counter.texts > 2 * len(CORPUS)


@pytest.mark.slow
def test_a_damaged_index_is_rebuilt(minilm, corpus, tmp_path):
    root = tmp_path / "indexes"
    counter = CountingEmbedder(minilm)
    first = retrieval.index_documents([corpus], counter, root=root)
    (root / first.key / "vectors.npy").write_bytes(b"not numpy")
    rebuilt = retrieval.index_documents([corpus], counter, root=root)
    assert counter.texts == 2 * len(CORPUS)
    assert np.allclose(rebuilt.vectors, first.vectors, atol=1e-5)


@pytest.mark.slow
def test_cosine_top_k_finds_the_right_document(minilm, corpus, tmp_path):
    index = retrieval.index_documents([corpus], minilm, root=tmp_path / "indexes")
    queries = ["How often must a dog be walked?", "What are the moons of Mars called?", "How is bread made?"]
    hits = index.search(queries, 2)
    assert [row[0].chunk.source for row in hits] == ["docs/pets.md", "docs/space.md", "docs/food.md"]
    assert all(len(row) == 2 and row[0].score >= row[1].score for row in hits)
    # scores are cosine similarities of unit vectors, as a brute-force check confirms
    expected = minilm.embed(queries[:1]) @ index.vectors.T
    assert hits[0][0].score == pytest.approx(float(expected.max()), abs=1e-5)


@pytest.mark.slow
def test_hybrid_search_returns_k_fused_hits_and_catches_exact_identifiers(minilm, corpus, tmp_path):
    index = retrieval.index_documents([corpus], minilm, root=tmp_path / "indexes")
    hits = index.search(["KM-7730"], 3, hybrid=True)[0]
    assert len(hits) == 3
    assert hits[0].chunk.source == "docs/policy.md"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
