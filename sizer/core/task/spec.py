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

import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

from sizer.core.errors import SizerError
from sizer.core.events import Message, Sink, null_sink
from sizer.core.trials.scoring import METRICS  # metric names per kind; the first is the default
from sizer.core.task.split import holdout_count, split
from sizer.core.task.examples import read_examples
from sizer.core.task.files import SpecFile, close_match, is_number
from sizer.core.task.model import (DEFAULT_BUDGET, DEFAULT_INSTRUCTIONS, DEFAULT_TARGET_WITHIN, DRAWN, GIVEN_FILE,
                                   KINDS, TABLE_KEYS, TOP_KEYS, Example, ExampleFile, Target, Task)

__all__ = ["Example", "ExampleFile", "Target", "Task", "load_task", "split", "summarize", "check_lengths"]

def load_task(path: str | Path, sink: Sink | None = None) -> Task:
    """Read and validate a task TOML file. Warnings go to `task.warnings` and to `sink`."""
    spec = SpecFile(Path(path))
    doc = spec.doc
    spec.check_keys(doc, TOP_KEYS)
    kind = _kind(spec)
    labels, descriptions = _labels(spec, kind)
    fields = _fields(spec, kind)
    examples, examples_file, split_from = read_examples(spec, kind, labels, fields)
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


def _string(spec: SpecFile, key: str, default: str) -> str:
    value = spec.doc.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise spec.fail("must be a non-empty string", key)
    return value.strip()


def _kind(spec: SpecFile) -> str:
    kind = spec.doc.get("kind")
    if kind is None:
        raise spec.fail(f"missing; add kind = \"classify\" (or {', '.join(KINDS[1:])})", "kind")
    if kind not in KINDS:
        raise spec.fail(f"unknown kind {kind!r}{close_match(str(kind), KINDS)}; use one of {', '.join(KINDS)}", "kind")
    return kind


def _labels(spec: SpecFile, kind: str) -> tuple[tuple[str, ...], dict[str, str]]:
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


def _fields(spec: SpecFile, kind: str) -> tuple[str, ...]:
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


def _metric(spec: SpecFile, kind: str) -> str:
    metric = spec.doc.get("metric", METRICS[kind][0])
    if metric not in METRICS[kind]:
        raise spec.fail(
            f"unknown metric {metric!r} for kind {kind!r}{close_match(str(metric), METRICS[kind])}; "
            f"use one of {', '.join(METRICS[kind])}", "metric")
    return metric


def _target(spec: SpecFile) -> Target:
    raw = spec.doc.get("target", {"within": DEFAULT_TARGET_WITHIN})
    if is_number(raw):
        raw = {"absolute": raw}
    if not isinstance(raw, dict):
        raise spec.fail("use target = 0.9 (an absolute score) or [target] within = 0.03", "target")
    spec.check_keys(raw, TABLE_KEYS["target"], "target")
    if len(raw) != 1:
        raise spec.fail("set exactly one of absolute or within", "target")
    (key, value), = raw.items()
    keys = ("target", key) if "target" in spec.doc and isinstance(spec.doc["target"], dict) else ("target",)
    if not is_number(value):
        raise spec.fail(f"must be a number, got {value!r}", *keys)
    if key == "absolute" and not 0 < value <= 1:
        raise spec.fail(f"{value} is not a score between 0 and 1 (e.g. 0.9)", *keys)
    if key == "within" and not 0 <= value < 1:
        raise spec.fail(f"{value} is not a margin between 0 and 1 (e.g. 0.03)", *keys)
    return Target(absolute=float(value), within=None) if key == "absolute" else Target(None, float(value))


def _budget(spec: SpecFile) -> tuple[float, float]:
    raw = spec.doc.get("budget", {})
    if not isinstance(raw, dict):
        raise spec.fail("must be a table: [budget] minutes = 30, download_gb = 5", "budget")
    spec.check_keys(raw, TABLE_KEYS["budget"], "budget")
    values = {**DEFAULT_BUDGET, **raw}
    for key, value in values.items():
        if not is_number(value) or value < 0 or (key == "minutes" and value == 0):
            raise spec.fail(f"must be a positive number, got {value!r}", "budget", key)
    return float(values["minutes"]), float(values["download_gb"])


def _documents(spec: SpecFile) -> tuple[Path, ...]:
    raw = spec.doc.get("documents", [])
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise spec.fail('must be a list of files or folders, e.g. documents = ["handbook/"]', "documents")
    paths = tuple(spec.path.parent / x for x in raw)
    for given, path in zip(raw, paths):
        if not path.exists():
            raise spec.fail(f"{given!r} not found (looked for {path})", "documents")
    return paths


def _split_settings(spec: SpecFile, examples: list[Example], split_from: str) -> tuple[float, int | None, int]:
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
    if not is_number(fraction) or not 0 < fraction < 1:
        raise spec.fail(f"must be a fraction between 0 and 1 (e.g. 0.5), got {fraction!r}", "split", "test")
    if not 1 <= holdout_count(count, fraction) < count:
        raise spec.fail(f"{fraction} of {count} examples leaves an empty train or test split", "split", "test")
    return float(fraction), None, seed


def _given_split(spec: SpecFile, examples: list[Example], split_from: str, raw: dict) -> float:
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
