"""The task spec: what the model must do, with examples of it done right, loaded from TOML.

    task = load_task("examples/banking.toml")      # SizerError (exit 2) on bad input
    train, test = split(task)                       # seeded, stratified by label for classify,
                                                    # or as given (test_file, a split column)
    summarize(task)                                 # counts per label, split sizes, length stats

Problems the run can survive (empty rows, exact duplicates, labels with too few examples) become
warnings in `task.warnings` (and `Message(level="warning")` events when a sink is given); all
others are one-line errors naming file:line and the field.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import statistics
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from sizer.core.errors import SizerError
from sizer.core.events import Message, Sink, null_sink
from sizer.core.trials.scoring import METRICS  # metric names per kind; the first is the default
from sizer.core.task.split import holdout_count, split
from sizer.core.task.files import field_line, load_toml, read_rows, table_lines

__all__ = ["Example", "ExampleFile", "Target", "Task", "load_task", "split", "summarize", "check_lengths"]

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
_SHOW = 3  # sources quoted in a warning before "..."


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


class _Spec:
    """The parsed TOML with helpers that point errors at file:line and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown = str(path)
        self.doc, self.text = load_toml(path, self.shown)
        self.warnings: list[str] = []

    def where(self, *keys: str) -> str:
        line = field_line(self.text, *keys) if keys else None
        return f"{self.shown}:{line}" if line else self.shown

    def fail(self, message: str, *keys: str) -> SizerError:
        name = ".".join(keys)
        return SizerError(f"{self.where(*keys)}: {name}: {message}" if name else f"{self.where()}: {message}")

    def check_keys(self, table: dict[str, Any], allowed: Sequence[str], *keys: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"unknown field{_close(key, allowed)}; expected one of {', '.join(allowed)}",
                                *keys, key)


def _close(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_task(path: str | Path, sink: Sink | None = None) -> Task:
    """Read and validate a task TOML file. Warnings go to `task.warnings` and to `sink`."""
    spec = _Spec(Path(path))
    doc = spec.doc
    spec.check_keys(doc, TOP_KEYS)
    kind = _kind(spec)
    labels, descriptions = _labels(spec, kind)
    fields = _fields(spec, kind)
    examples, examples_file, split_from = _examples(spec, kind, labels, fields)
    test_fraction, test_size, seed = _split_settings(spec, examples, split_from)
    minutes, download_gb = _budget(spec)
    task = Task(
        name=_string(spec, "name", default=spec.path.stem),
        kind=kind,
        instruction=_string(spec, "instruction", default=DEFAULT_INSTRUCTIONS[kind]),
        labels=labels,
        label_descriptions=descriptions,
        fields=fields,
        examples=tuple(examples),
        documents=_documents(spec),
        target=_target(spec),
        metric=_metric(spec, kind),
        budget_minutes=minutes,
        budget_download_gb=download_gb,
        test_fraction=test_fraction,
        seed=seed,
        path=spec.path,
        test_size=test_size,
        warnings=tuple(spec.warnings),
        examples_file=examples_file,
        split_from=split_from,
        raw=doc,
    )
    for text in task.warnings:
        (sink or null_sink)(Message(text, level="warning"))
    return task


def _string(spec: _Spec, key: str, default: str) -> str:
    value = spec.doc.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise spec.fail("must be a non-empty string", key)
    return value.strip()


def _kind(spec: _Spec) -> str:
    kind = spec.doc.get("kind")
    if kind is None:
        raise spec.fail(f"missing; add kind = \"classify\" (or {', '.join(KINDS[1:])})", "kind")
    if kind not in KINDS:
        raise spec.fail(f"unknown kind {kind!r}{_close(str(kind), KINDS)}; use one of {', '.join(KINDS)}", "kind")
    return kind


def _labels(spec: _Spec, kind: str) -> tuple[tuple[str, ...], dict[str, str]]:
    raw = spec.doc.get("labels")
    if kind != "classify":
        if raw is not None:
            raise spec.fail(f"only classify tasks have labels (this one is kind = {kind!r})", "labels")
        return (), {}
    if raw is None:
        raise spec.fail('missing; list the classes, e.g. labels = ["billing", "technical"]', "labels")
    if isinstance(raw, dict):
        for label, text in raw.items():
            if not isinstance(text, str) or "\n" in text.strip():
                raise spec.fail("a label's description must be a one-line string", "labels", label)
        labels, descriptions = list(raw), {k: v.strip() for k, v in raw.items() if v.strip()}
    elif isinstance(raw, list):
        if not all(isinstance(x, str) for x in raw):
            raise spec.fail("must be a list of strings or a table of label = description", "labels")
        labels, descriptions = [x.strip() for x in raw], {}
    else:
        raise spec.fail("must be a list of strings or a table of label = description", "labels")
    if any(not x for x in labels):
        raise spec.fail("a label is empty", "labels")
    if len(set(labels)) != len(labels):
        twice = sorted({x for x in labels if labels.count(x) > 1})
        raise spec.fail(f"listed twice: {', '.join(twice)}", "labels")
    if len(labels) < 2:
        raise spec.fail(f"a classify task needs at least two labels, got {len(labels)}", "labels")
    return tuple(labels), descriptions


def _fields(spec: _Spec, kind: str) -> tuple[str, ...]:
    raw = spec.doc.get("fields")
    if kind != "extract":
        if raw is not None:
            raise spec.fail(f"only extract tasks have fields (this one is kind = {kind!r})", "fields")
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x.strip() for x in raw):
        raise spec.fail('list the JSON keys to extract, e.g. fields = ["name", "date"]', "fields")
    if len(set(raw)) != len(raw):
        raise spec.fail("a field is listed twice", "fields")
    return tuple(x.strip() for x in raw)


def _metric(spec: _Spec, kind: str) -> str:
    metric = spec.doc.get("metric", METRICS[kind][0])
    if metric not in METRICS[kind]:
        raise spec.fail(
            f"unknown metric {metric!r} for kind {kind!r}{_close(str(metric), METRICS[kind])}; "
            f"use one of {', '.join(METRICS[kind])}", "metric")
    return metric


def _target(spec: _Spec) -> Target:
    raw = spec.doc.get("target", {"within": DEFAULT_TARGET_WITHIN})
    if _is_number(raw):
        raw = {"absolute": raw}
    if not isinstance(raw, dict):
        raise spec.fail("use target = 0.9 (an absolute score) or [target] within = 0.03", "target")
    spec.check_keys(raw, TABLE_KEYS["target"], "target")
    if len(raw) != 1:
        raise spec.fail("set exactly one of absolute or within", "target")
    (key, value), = raw.items()
    keys = ("target", key) if "target" in spec.doc and isinstance(spec.doc["target"], dict) else ("target",)
    if not _is_number(value):
        raise spec.fail(f"must be a number, got {value!r}", *keys)
    if key == "absolute" and not 0 < value <= 1:
        raise spec.fail(f"{value} is not a score between 0 and 1 (e.g. 0.9)", *keys)
    if key == "within" and not 0 <= value < 1:
        raise spec.fail(f"{value} is not a margin between 0 and 1 (e.g. 0.03)", *keys)
    return Target(absolute=float(value), within=None) if key == "absolute" else Target(None, float(value))


def _budget(spec: _Spec) -> tuple[float, float]:
    raw = spec.doc.get("budget", {})
    if not isinstance(raw, dict):
        raise spec.fail("must be a table: [budget] minutes = 30, download_gb = 5", "budget")
    spec.check_keys(raw, TABLE_KEYS["budget"], "budget")
    values = {**DEFAULT_BUDGET, **raw}
    for key, value in values.items():
        if not _is_number(value) or value < 0 or (key == "minutes" and value == 0):
            raise spec.fail(f"must be a positive number, got {value!r}", "budget", key)
    return float(values["minutes"]), float(values["download_gb"])


def _documents(spec: _Spec) -> tuple[Path, ...]:
    raw = spec.doc.get("documents", [])
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise spec.fail('must be a list of files or folders, e.g. documents = ["handbook/"]', "documents")
    paths = tuple(spec.path.parent / x for x in raw)
    for given, path in zip(raw, paths):
        if not path.exists():
            raise spec.fail(f"{given!r} not found (looked for {path})", "documents")
    return paths


def _split_settings(spec: _Spec, examples: list[Example], split_from: str) -> tuple[float, int | None, int]:
    count = len(examples)
    raw = spec.doc.get("split", {})
    if not isinstance(raw, dict):
        raise spec.fail("must be a table: [split] test = 0.5, seed = 0", "split")
    spec.check_keys(raw, TABLE_KEYS["split"], "split")
    if "test" in raw and "test_size" in raw:
        raise spec.fail("set test (a fraction) or test_size (a count), not both", "split")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise spec.fail(f"must be a whole number >= 0, got {seed!r}", "split", "seed")
    if split_from != DRAWN:
        return _given_split(spec, examples, split_from, raw), None, seed
    if "test_size" in raw:
        size = raw["test_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size < count:
            raise spec.fail(f"must be a whole number from 1 to {count - 1} (there are {count} examples), "
                            f"got {size!r}", "split", "test_size")
        return size / count, size, seed
    fraction = raw.get("test", 0.5)
    if not _is_number(fraction) or not 0 < fraction < 1:
        raise spec.fail(f"must be a fraction between 0 and 1 (e.g. 0.5), got {fraction!r}", "split", "test")
    if not 1 <= holdout_count(count, fraction) < count:
        raise spec.fail(f"{fraction} of {count} examples leaves an empty train or test split", "split", "test")
    return float(fraction), None, seed


def _given_split(spec: _Spec, examples: list[Example], split_from: str, raw: dict) -> float:
    """The test share of a split the user gave; [split] test/test_size would contradict it."""
    given = "examples.test_file" if split_from == GIVEN_FILE else "the examples' split column"
    for key in ("test", "test_size"):
        if key in raw:
            raise spec.fail(f"the test examples are given by {given}; remove {key}", "split", key)
    test = sum(e.split == "test" for e in examples)
    if test == 0 or test == len(examples):
        side = "test" if test == 0 else "train"
        raise spec.fail(f"no {side} examples left in the split given by {given}; "
                        f"give at least one {side} example", "examples")
    return test / len(examples)


# ---- examples ------------------------------------------------------------------------------

def _examples(spec: _Spec, kind: str, labels: tuple[str, ...],
              fields: tuple[str, ...]) -> tuple[list[Example], ExampleFile | None, str]:
    """The usable examples, where they come from (a file, else None) and where their split does."""
    raw = spec.doc.get("examples")
    if raw is None:
        raise spec.fail("no examples: add [[examples]] rows (text = ..., label = ...) "
                        'or [examples] file = "data.csv" with a column mapping')
    source: ExampleFile | None = None
    if isinstance(raw, list):
        records = _inline_records(spec, raw)
        split_from = GIVEN_COLUMN if any(r[5] is not None for r in records) else DRAWN
    else:
        records, source, split_from = _file_records(spec, raw, kind)
    if not records:
        raise spec.fail("no examples: the list is empty", "examples")
    examples = [e for e in (_example(spec, kind, labels, fields, r, split_from) for r in records)
                if e is not None]
    _warn_dropped(spec, "with empty text or an empty label/reference", len(records) - len(examples),
                  [r[0] for r in records if _blank(kind, r)])
    examples = _dedupe(spec, examples)
    if len(examples) < 2:
        raise spec.fail(f"only {len(examples)} usable example(s); add more (at least two, "
                        "ideally dozens per label)", "examples")
    if kind == "classify":
        _check_coverage(spec, labels, examples, split_from)
    return examples, source, split_from


Record = tuple[str, Any, Any, Any, Any, Any]  # source, text, label, reference, evidence, split


def _inline_records(spec: _Spec, raw: list) -> list[Record]:
    lines = table_lines(spec.text, "examples")
    records = []
    for i, row in enumerate(raw):
        source = f"{spec.shown}:{lines[i]}" if len(lines) == len(raw) else f"{spec.shown}: examples[{i}]"
        if not isinstance(row, dict):
            raise SizerError(f"{source}: examples: each example must be a table (text = ..., label = ...)")
        for key in row:
            if key not in ROW_KEYS:
                raise SizerError(f"{source}: examples.{key}: unknown field{_close(key, ROW_KEYS)}; "
                                 f"expected {', '.join(ROW_KEYS)}")
        records.append((source, row.get("text"), row.get("label"), row.get("reference"), row.get("evidence"),
                        row.get("split")))
    return records


def _file_records(spec: _Spec, raw: Any, kind: str) -> tuple[list[Record], ExampleFile, str]:
    if not isinstance(raw, dict) or "file" not in raw:
        raise spec.fail('give [[examples]] rows, or [examples] file = "data.csv" with a column mapping',
                        "examples")
    spec.check_keys(raw, TABLE_KEYS["examples"], "examples")
    roles = ("text", "label") if kind == "classify" else ("text", "reference")
    for role in ("label", "reference"):
        if role in raw and role not in roles:
            raise spec.fail(f"a {kind} task has no {role}; map {' and '.join(roles)}", "examples", role)
    for key in ("file", "test_file", "evidence", "split", *roles):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise spec.fail("must be a non-empty string", "examples", key)
    columns = {role: raw.get(role, role) for role in roles}
    if "evidence" in raw:
        columns["evidence"] = raw["evidence"]
    # A column named "split" (or the one [examples] split names) gives the split unless a test file does.
    optional = () if "split" in raw else ("split",)
    if "test_file" not in raw:
        columns["split"] = raw.get("split", "split")
    elif "split" in raw:
        raise spec.fail("give test_file or a split column, not both", "examples", "split")
    path = _data_path(spec, raw, "file")
    test_path = _data_path(spec, raw, "test_file") if "test_file" in raw else None
    records = _read_records(path, columns, optional)
    split_from = GIVEN_COLUMN if any(r[5] is not None for r in records) else DRAWN
    if test_path is not None:
        split_from = GIVEN_FILE
        records = [r[:5] + ("train",) for r in records] + \
                  [r[:5] + ("test",) for r in _read_records(test_path, columns, ())]
    mapping = {key: value for key, value in raw.items() if key not in ("file", "test_file")}
    return records, ExampleFile(path, mapping, test_path), split_from


def _data_path(spec: _Spec, raw: dict, key: str) -> Path:
    path = spec.path.parent / raw[key]
    if not path.is_file():
        raise spec.fail(f"{raw[key]!r} not found (looked for {path})", "examples", key)
    return path


def _read_records(path: Path, columns: dict[str, str], optional: tuple[str, ...]) -> list[Record]:
    rows = read_rows(path, str(path), columns, optional)
    return [(f"{path}:{r.line}", r.values.get("text"), r.values.get("label"), r.values.get("reference"),
             r.values.get("evidence"), r.values.get("split")) for r in rows]


def _blank(kind: str, record: Record) -> bool:
    _, text, label, reference, _, _ = record
    wanted = label if kind == "classify" else reference
    return _empty(text) or _empty(wanted)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == {}


def _example(spec: _Spec, kind: str, labels: tuple[str, ...], fields: tuple[str, ...],
             record: Record, split_from: str) -> Example | None:
    if _blank(kind, record):
        return None
    source, text, label, reference, evidence, given = record
    if not isinstance(text, str):
        raise SizerError(f"{source}: examples.text: must be a string, got {text!r}")
    if evidence is not None and not isinstance(evidence, str):
        raise SizerError(f"{source}: examples.evidence: must name a document file, e.g. \"leave.md\"")
    if kind == "classify":
        label = _label(source, label, labels)
        reference = None
    elif kind == "extract":
        label, reference = None, _fields_reference(source, reference, fields)
    else:
        if not isinstance(reference, str):
            raise SizerError(f"{source}: examples.reference: must be a string, got {reference!r}")
        label, reference = None, reference.strip()
    evidence = evidence.strip() or None if evidence else None
    side = _split_value(source, given) if split_from != DRAWN else None
    return Example(text.strip(), label, reference, source, example_id(text, label, reference), evidence, side)


def _split_value(source: str, value: Any) -> str:
    """"train" or "test" from a split column or key (case and spaces ignored); a missing or empty
    value is train, so inline rows need `split = "test"` on the test rows only."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "train"
    word = value.strip().lower() if isinstance(value, str) else None
    if word not in SPLITS:
        raise SizerError(f"{source}: examples.split: {value!r} is not train or test; "
                         "mark each example train or test (other values, e.g. validation, belong in neither)")
    return word


def _label(source: str, label: Any, labels: tuple[str, ...]) -> str:
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str):
        raise SizerError(f"{source}: examples.label: must be a string, got {label!r}")
    label = label.strip()
    if label not in labels:
        raise SizerError(f"{source}: examples.label: {label!r} is not in labels{_close(label, labels)}; "
                         "add it to labels or fix the example")
    return label


def _fields_reference(source: str, reference: Any, fields: tuple[str, ...]) -> dict:
    if isinstance(reference, str):
        try:
            reference = json.loads(reference)
        except json.JSONDecodeError as exc:
            raise SizerError(f"{source}: examples.reference: not a JSON object ({exc.msg})") from None
    if not isinstance(reference, dict):
        raise SizerError(f"{source}: examples.reference: must be a table/object of field = value")
    for key, value in reference.items():
        if key not in fields:
            raise SizerError(f"{source}: examples.reference.{key}: unknown field{_close(key, fields)}; "
                             f"fields are {', '.join(fields)}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise SizerError(f"{source}: examples.reference.{key}: must be a string, number or boolean "
                             f"(write dates as strings), got {type(value).__name__}")
    return {name: reference.get(name) for name in fields}


def _dedupe(spec: _Spec, examples: list[Example]) -> list[Example]:
    """Keep one of each exact duplicate; drop every copy of a text whose answers disagree."""
    first: dict[str, Example] = {}
    conflicting: set[str] = set()
    repeats: list[str] = []
    # With a given split the test set is the user's: of a train row and a test row with one text,
    # the test row stays.
    for example in sorted(examples, key=lambda e: e.split != "test"):
        key = normalise(example.text)
        seen = first.setdefault(key, example)
        if seen is example:
            continue
        if seen.id == example.id:
            repeats.append(f"{example.source} repeats {seen.source}")
        else:
            conflicting.add(key)
    _warn_dropped(spec, "exact duplicate(s)", len(repeats), repeats)
    if conflicting:
        clashes = [e.source for e in examples if normalise(e.text) in conflicting]
        _warn_dropped(spec, "with the same text but different answers (all copies)", len(clashes), clashes)
    kept = {id(e) for e in first.values()}
    return [e for e in examples if id(e) in kept and normalise(e.text) not in conflicting]


def _warn_dropped(spec: _Spec, what: str, count: int, sources: list[str]) -> None:
    if count:
        shown = ", ".join(sources[:_SHOW]) + (", ..." if len(sources) > _SHOW else "")
        spec.warnings.append(f"examples: dropped {count} {what}: {shown}")


def _check_coverage(spec: _Spec, labels: tuple[str, ...], examples: list[Example], split_from: str) -> None:
    counts = {label: 0 for label in labels}
    for example in examples:
        counts[example.label] += 1
    present = [label for label, n in counts.items() if n]
    if len(present) < 2:
        raise spec.fail(f"the examples use only {len(present)} label ({', '.join(present)}); "
                        "classification needs examples of at least two labels", "examples")
    missing = [label for label, n in counts.items() if n == 0]
    if missing:
        spec.warnings.append(f"labels: no examples of {', '.join(missing)}; they are never tested")
    if split_from != DRAWN:
        for side, never in (("test", "they are never tested"), ("train", "no demonstration or fine-tuning sees them")):
            absent = [label for label in present if not any(e.label == label and e.split == side for e in examples)]
            if absent:
                spec.warnings.append(f"labels: no {side} examples of {', '.join(absent)}; {never}")
        return
    single = [label for label, n in counts.items() if n == 1]
    if single:
        spec.warnings.append(f"labels: only one example of {', '.join(single)}; "
                             "it goes to the train split and is never tested")


# ---- summaries and checks ------------------------------------------------------------------

def summarize(task: Task, count_tokens: Callable[[str], int] | None = None) -> dict[str, Any]:
    """Counts per label, split sizes and length stats (chars; tokens when `count_tokens` is given)."""
    train, test = split(task)
    summary: dict[str, Any] = {
        "name": task.name, "kind": task.kind, "path": str(task.path), "metric": task.metric,
        "target": {"absolute": task.target.absolute, "within": task.target.within},
        "examples": len(task.examples),
        "split": {"train": len(train), "test": len(test), "test_fraction": task.test_fraction,
                  "test_size": task.test_size, "seed": task.seed, "from": task.split_from,
                  "test_file": str(task.examples_file.test_path)
                  if task.examples_file and task.examples_file.test_path else None},
        "lengths": {"chars": _stats([len(e.text) for e in task.examples])},
        "budget": {"minutes": task.budget_minutes, "download_gb": task.budget_download_gb},
        "documents": [str(p) for p in task.documents],
        "warnings": list(task.warnings),
    }
    if task.kind == "classify":
        summary["labels"] = {
            label: {"total": sum(e.label == label for e in task.examples),
                    "train": sum(e.label == label for e in train),
                    "test": sum(e.label == label for e in test)}
            for label in task.labels}
    if task.kind == "extract":
        summary["fields"] = list(task.fields)
    if count_tokens is not None:
        summary["lengths"]["tokens"] = _stats([count_tokens(e.text) for e in task.examples])
    return summary


def _stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values),
            "mean": round(statistics.fmean(values), 1), "max": max(values)}


def check_lengths(examples: Sequence[Example], count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """Ids of the examples whose text is longer than `max_tokens`, for the caller to drop with a
    warning. Raises SizerError when none would be left (the run cannot go on)."""
    if max_tokens <= 0:
        raise SizerError(f"no room for the example text: {max_tokens} tokens left in the context")
    lengths = {e.id: count_tokens(e.text) for e in examples}
    too_long = [e.id for e in examples if lengths[e.id] > max_tokens]
    if examples and len(too_long) == len(examples):
        longest = max(examples, key=lambda e: lengths[e.id])
        raise SizerError(f"every example is longer than the {max_tokens} tokens the model has room for "
                         f"(longest: {longest.source}, {lengths[longest.id]} tokens); "
                         "use a model with a longer context or shorter examples")
    return too_long
