"""The task as data: its examples, target and settings, and the keys a task file may hold."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("classify", "extract", "generate")
DEFAULT_INSTRUCTIONS = {
    "classify": "Classify the text into one of the labels.",
    "extract": "Extract the fields from the text as a JSON object.",
    "generate": "Respond to the text.",
}
DEFAULT_TARGET_WITHIN = 0.03
DEFAULT_BUDGET = {"minutes": 30.0, "download_gb": 5.0}
TOP_KEYS = ("name", "kind", "instruction", "labels", "fields", "examples", "documents",
            "target", "metric", "budget", "split")
TABLE_KEYS = {
    "examples": ("file", "test_file", "text", "label", "reference", "evidence", "split"),
    "target": ("absolute", "within"),
    "budget": ("minutes", "download_gb"),
    "split": ("test", "test_size", "seed"),
}
ROW_KEYS = ("text", "label", "reference", "evidence", "split")
SPLITS = ("train", "test")
# Where the test split comes from: drawn by seed, or given by the user.
DRAWN, GIVEN_FILE, GIVEN_COLUMN = "drawn", "test_file", "split column"


@dataclass(frozen=True)
class Example:
    text: str                       # the input
    label: str | None               # classify
    reference: str | dict | None    # generate: reference text; extract: field -> value
    source: str                     # "examples/banking77/banking_subset.csv:12", for messages
    id: str                         # sha256 of the normalised text + label/reference, 16 hex
    evidence: str | None = None     # the document that answers it (for retrieval recall@k)
    split: str | None = None        # "train" or "test" when the user gave the split, else None


@dataclass(frozen=True)
class ExampleFile:
    """Examples read from a file: the file, the user's own test file if any, and the column
    mapping as written in [examples] (role -> column; roles left out use their own name)."""
    path: Path
    columns: dict[str, str]
    test_path: Path | None = None


@dataclass(frozen=True)
class Target:
    absolute: float | None          # e.g. 0.9: the metric must reach this
    within: float | None            # e.g. 0.03: at most this far below the best model


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    instruction: str
    labels: tuple[str, ...]
    label_descriptions: dict[str, str]
    fields: tuple[str, ...]
    examples: tuple[Example, ...]
    documents: tuple[Path, ...]
    target: Target
    metric: str
    budget_minutes: float
    budget_download_gb: float
    test_fraction: float
    seed: int
    path: Path
    test_size: int | None = None    # set when [split] gives `test_size = N` instead of a fraction
    warnings: tuple[str, ...] = field(default=())
    examples_file: ExampleFile | None = None  # set when the examples come from a file
    split_from: str = DRAWN         # DRAWN, or GIVEN_FILE / GIVEN_COLUMN: the examples carry `split`
    # The parsed TOML document: `dump_task` keeps from it the keys it does not write itself.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def normalise(text: str) -> str:
    """NFC with runs of whitespace collapsed: the form used for ids and duplicate checks."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def example_id(text: str, label: str | None, reference: str | dict | None) -> str:
    if isinstance(reference, str):
        reference = normalise(reference)
    payload = json.dumps([normalise(text), label, reference], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
