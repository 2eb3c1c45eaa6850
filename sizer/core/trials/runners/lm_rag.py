"""The RAG strategy with a causal LM.

- generate/extract with documents: the top-k passages retrieved from the task's documents go into
  the prompt as a "Context:" block before the question; greedy generation as in lm_generate.
- classify, or generate/extract without documents: kNN demonstrations. Each test example gets the
  k training examples nearest to it (never test examples) as its demonstrations, most similar last
  (next to the question). The shared prefix is then the instruction only; each example's part
  carries its own demonstrations, still scored through the model's `score` with the prefix cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Sequence

from sizer.core.trials import prompts

from sizer.core.trials import retrieval
from sizer.core.trials.runners.lm_classify import LMClassifyRunner
from sizer.core.trials.runners.lm_generate import AUTO_SHOTS as GENERATE_SHOTS, LMGenerateRunner

PASSAGES = 2        # retrieved chunks put in the prompt (2 x 40 words measured best for SmolLM2-135M on the handbook)
KNN_DEMOS = 8       # nearest training examples per test example
HYBRID = True       # fuse BM25 with the dense ranking; it measured better recall on the handbook demo


def per_example_plan(task: Any, demos_for: Sequence[Sequence[Any]], texts: Sequence[str],
                     encode: Callable[[str], list[int]], encode_prefix: Callable[[str], list[int]],
                     apply_chat: Callable[[list[dict]], str] | None) -> tuple[prompts.PromptPlan, str]:
    """A plan whose prefix is what every prompt shares (the instruction) and whose parts hold each
    example's own demonstrations and text; also a digest of every prompt for the trial key."""
    bare, _, delimiter = prompts.render(task, [], apply_chat)
    whole = []
    for demos, text in zip(demos_for, texts):
        before, template, _ = prompts.render(task, demos, apply_chat)
        whole.append(before + template.replace("{text}", text, 1))
    shared = os.path.commonprefix([bare, *whole])
    cut = shared.rfind("\n") + 1  # end the prefix on a line break so no word is split in two
    prefix_text = shared[:cut]
    continuations: tuple[tuple[int, ...], ...] = ()
    if task.kind == "classify":
        continuations = tuple(tuple(encode(delimiter + label)) for label in task.labels)
    plan = prompts.PromptPlan(
        prefix=tuple(encode_prefix(prefix_text)),
        parts=tuple(tuple(encode(w[cut:])) for w in whole),
        continuations=continuations,
        prefix_text=prefix_text,
        part_template="{per-example}",
        delimiter=delimiter,
    )
    digest = hashlib.sha256(json.dumps([prefix_text, delimiter, whole, continuations]).encode()).hexdigest()[:16]
    return plan, digest


def nearest_demonstrations(train: Sequence, test: Sequence, embedder: retrieval.Embedder, k: int) -> dict[str, list]:
    """For each test example id, its `k` nearest training examples, least similar first."""
    bank = [retrieval.Chunk(e.id, e.text, 0) for e in train]
    index = retrieval.build_index(bank, embedder)
    by_id = {e.id: e for e in train}
    hits = index.search([e.text for e in test], k)
    return {e.id: [by_id[h.chunk.source] for h in reversed(row)] for e, row in zip(test, hits)}


def _chat(runner: Any) -> Callable[[list[dict]], str] | None:
    tokenizer = runner.lm.tokenizer
    if not (runner.instruct and runner.lm.has_chat_template()):
        return None
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _encoders(runner: Any, chat: bool) -> tuple[Callable, Callable]:
    tokenizer = runner.lm.tokenizer
    return runner.lm.encode, (lambda t: tokenizer(t, add_special_tokens=not chat)["input_ids"])


class KNNClassifyRunner(LMClassifyRunner):
    """Label log-likelihoods after kNN demonstrations (scoring as in lm_classify)."""

    def __init__(self, loader, instruct, embedder_loader, top_k: int | None, seed: int) -> None:
        super().__init__(loader, instruct, "rag", None, seed)
        self._embedder_loader = embedder_loader
        self.top_k = top_k if top_k is not None else KNN_DEMOS

    def load(self) -> None:
        super().load()
        self.embedder = self._embedder_loader()

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        apply_chat = _chat(self)
        demos = nearest_demonstrations(train, test, self.embedder, self.top_k)
        encode, encode_prefix = _encoders(self, apply_chat is not None)
        plan, digest = per_example_plan(task, [demos[e.id] for e in test], [e.text for e in test],
                                        encode, encode_prefix, apply_chat)
        self.plan = plan
        self._parts = {e.id: part for e, part in zip(test, plan.parts)}
        kept = self._drop_too_long(test, plan)
        settings = {"demonstrations": "knn", "top_k": self.top_k, "embedder": self.embedder.name,
                    "prefix_tokens": len(plan.prefix), "scoring": "loglik", "chat_template": apply_chat is not None}
        return settings, digest, kept


class RAGGenerateRunner(LMGenerateRunner):
    """Greedy generation after retrieved passages (or kNN demonstrations when there are no documents)."""

    def __init__(self, loader, instruct, embedder_loader, top_k: int | None, seed: int,
                 chunking: retrieval.Chunking = retrieval.Chunking(), hybrid: bool = HYBRID) -> None:
        super().__init__(loader, instruct, "rag", None, seed)
        self._embedder_loader = embedder_loader
        self.top_k = top_k
        self.chunking = chunking
        self.hybrid = hybrid
        self.recall: retrieval.Metric | None = None

    def load(self) -> None:
        super().load()
        self.embedder = self._embedder_loader()

    def prepare(self, task: Any, train: Sequence, test: Sequence) -> tuple[dict, str, list]:
        apply_chat = _chat(self)
        if task.documents:
            k = self.top_k if self.top_k is not None else PASSAGES
            texts, settings = self._with_passages(task, test, k)
            demos_for: list[list] = [[] for _ in test]
        else:
            k = self.top_k if self.top_k is not None else GENERATE_SHOTS
            demos = nearest_demonstrations(train, test, self.embedder, k)
            demos_for, texts = [demos[e.id] for e in test], [e.text for e in test]
            settings = {"demonstrations": "knn", "top_k": k, "embedder": self.embedder.name}
        encode, encode_prefix = _encoders(self, apply_chat is not None)
        self.plan, digest = per_example_plan(task, demos_for, texts, encode, encode_prefix, apply_chat)
        self._parts = {e.id: p for e, p in zip(test, self.plan.parts)}
        answers = [len(self.lm.encode(prompts.answer_text(task, e))) for e in train] or [64]
        self.max_new_tokens = min(512, int(max(answers) * 1.5) + 16)
        settings.update({"prefix_tokens": len(self.plan.prefix), "max_new_tokens": self.max_new_tokens,
                         "decoding": "greedy", "chat_template": apply_chat is not None})
        limit = self.lm.max_context - self.max_new_tokens
        kept = [e for e in test if len(self.plan.prefix) + len(self._parts[e.id]) <= limit]
        if len(kept) < len(test):
            self.warnings.append(f"dropped {len(test) - len(kept)} example(s) longer than the model's context")
        return settings, digest, kept

    def _with_passages(self, task: Any, test: Sequence, k: int) -> tuple[list[str], dict]:
        index = retrieval.index_documents(task.documents, self.embedder, self.chunking)
        hits = index.search([e.text for e in test], k, self.hybrid)
        texts = [context_prompt(row, e.text) for e, row in zip(test, hits)]
        settings: dict[str, Any] = {"top_k": k, "chunk_words": self.chunking.size,
                                    "chunk_overlap_words": self.chunking.overlap, "chunks": len(index.chunks),
                                    "embedder": self.embedder.name, "hybrid_bm25": self.hybrid}
        self.recall = retrieval.recall_at_k([[h.chunk.source for h in row] for row in hits],
                                            [e.evidence for e in test], k)
        if self.recall is not None:
            m = self.recall
            settings["recall_at_k"] = {"k": k, "value": round(m.value, 4), "low": round(m.low, 4),
                                       "high": round(m.high, 4), "n": m.n, "method": m.method}
        return texts, settings


def context_prompt(hits: Sequence[retrieval.Hit], question: str) -> str:
    """The user's part of a RAG prompt: the passages, then the question."""
    passages = "\n\n".join(f"[{h.chunk.source}] {h.chunk.text}" for h in hits)
    return f"Context:\n{passages}\n\nQuestion: {question}"


def make(entry, task, spec, placement, seed):
    from sizer.core.trials.runners import causal_loader

    device = placement.device
    loader = causal_loader(placement, spec, entry)
    embedder = lambda: retrieval.load_embedder(device=device)
    if task.documents:  # bad evidence is reported before any model loads
        retrieval.check_evidence(task.examples, retrieval.chunk_documents(task.documents))
    if task.kind == "classify":
        return KNNClassifyRunner(loader, entry.instruct, embedder, spec.shots, seed)
    return RAGGenerateRunner(loader, entry.instruct, embedder, spec.shots, seed)

