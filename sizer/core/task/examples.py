"""A task's examples: inline rows or a CSV/TSV/JSONL file (and the user's own test file), each
checked and given an id; duplicates and empty rows dropped with a warning; label coverage checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sizer.core.errors import SizerError
from sizer.core.task.files import SpecFile, close_match, read_rows, table_lines
from sizer.core.task.model import (GIVEN_COLUMN, GIVEN_FILE, DRAWN, ROW_KEYS, SPLITS, TABLE_KEYS, Example,
                                   ExampleFile, example_id, normalise)

_SHOW = 3  # sources quoted in a warning before "..."


def read_examples(spec: SpecFile, kind: str, labels: tuple[str, ...],
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


def _inline_records(spec: SpecFile, raw: list) -> list[Record]:
    lines = table_lines(spec.text, "examples")
    records = []
    for i, row in enumerate(raw):
        source = f"{spec.shown}:{lines[i]}" if len(lines) == len(raw) else f"{spec.shown}: examples[{i}]"
        if not isinstance(row, dict):
            raise SizerError(f"{source}: examples: each example must be a table (text = ..., label = ...)")
        for key in row:
            if key not in ROW_KEYS:
                raise SizerError(f"{source}: examples.{key}: unknown field{close_match(key, ROW_KEYS)}; "
                                 f"expected {', '.join(ROW_KEYS)}")
        records.append((source, row.get("text"), row.get("label"), row.get("reference"), row.get("evidence"),
                        row.get("split")))
    return records


def _file_records(spec: SpecFile, raw: Any, kind: str) -> tuple[list[Record], ExampleFile, str]:
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


def _data_path(spec: SpecFile, raw: dict, key: str) -> Path:
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


def _example(spec: SpecFile, kind: str, labels: tuple[str, ...], fields: tuple[str, ...],
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
        raise SizerError(f"{source}: examples.label: {label!r} is not in labels{close_match(label, labels)}; "
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
            raise SizerError(f"{source}: examples.reference.{key}: unknown field{close_match(key, fields)}; "
                             f"fields are {', '.join(fields)}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise SizerError(f"{source}: examples.reference.{key}: must be a string, number or boolean "
                             f"(write dates as strings), got {type(value).__name__}")
    return {name: reference.get(name) for name in fields}


def _dedupe(spec: SpecFile, examples: list[Example]) -> list[Example]:
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


def _warn_dropped(spec: SpecFile, what: str, count: int, sources: list[str]) -> None:
    if count:
        shown = ", ".join(sources[:_SHOW]) + (", ..." if len(sources) > _SHOW else "")
        spec.warnings.append(f"examples: dropped {count} {what}: {shown}")


def _check_coverage(spec: SpecFile, labels: tuple[str, ...], examples: list[Example], split_from: str) -> None:
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
