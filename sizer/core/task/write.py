"""Writing a task back to TOML: `dump_task(task, path)` is text that `load_task` reads back equal.

    text = dump_task(task, Path("tasks/edited.toml"))   # paths relative to where it is written
    save_task(task, Path("tasks/edited.toml"))          # the same, written atomically

Every key a task file can hold is written from the `Task`: examples read from a file stay a file
mapping (`[examples] file = ...`), never rows. Keys of the parsed document that this writer does not
know (`task.raw`) are kept as they were, so nothing the user wrote is dropped by a newer reader.
Comments are not kept: TOML parsers do not return them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import tomli_w

from sizer.core.fileio import atomic_write_text
from sizer.core.task.model import DRAWN, Example, Task

__all__ = ["dump_task", "save_task", "task_document"]

# What this writer writes; anything else in `task.raw` is copied through.
WRITTEN = {"name", "kind", "instruction", "metric", "target", "documents", "labels", "fields",
           "budget", "split", "examples"}
WRITTEN_IN = {
    "target": {"absolute", "within"},
    "budget": {"minutes", "download_gb"},
    "split": {"test", "test_size", "seed"},
    "examples": {"file", "test_file", "text", "label", "reference", "evidence", "split"},
}
_CLIMB = 2  # a path needing more "../" than this is written absolute


def dump_task(task: Task, path: str | Path | None = None) -> str:
    """The task as TOML text, with file paths relative to `path`'s folder (default: `task.path`)."""
    return tomli_w.dumps(task_document(task, Path(path) if path is not None else task.path))


def save_task(task: Task, path: str | Path) -> None:
    """Write the task to `path` atomically (temp file + rename): the old file or the new, never half."""
    atomic_write_text(path, dump_task(task, path))


def task_document(task: Task, path: Path) -> dict[str, Any]:
    """The TOML document (a dict for tomli-w) of `task`, written to `path`."""
    folder = path.parent
    doc: dict[str, Any] = {"name": task.name, "kind": task.kind, "instruction": task.instruction,
                           "metric": task.metric}
    if task.target.absolute is not None:
        doc["target"] = task.target.absolute
    if task.documents:
        doc["documents"] = [_relative(p, folder) for p in task.documents]
    if task.kind == "classify":
        doc["labels"] = _labels(task)
    if task.kind == "extract":
        doc["fields"] = list(task.fields)
    if task.target.within is not None:
        doc["target"] = {"within": task.target.within}
    doc["budget"] = {"minutes": task.budget_minutes, "download_gb": task.budget_download_gb}
    doc["split"] = _split(task)
    doc["examples"] = _examples(task, folder)
    _keep_unknown(doc, task.raw)
    return doc


def _labels(task: Task) -> list[str] | dict[str, str]:
    if not task.label_descriptions:
        return list(task.labels)
    return {label: task.label_descriptions.get(label, "") for label in task.labels}


def _split(task: Task) -> dict[str, Any]:
    if task.split_from != DRAWN:
        return {"seed": task.seed}  # the examples say their side
    if task.test_size is not None:
        return {"test_size": task.test_size, "seed": task.seed}
    return {"test": task.test_fraction, "seed": task.seed}


def _examples(task: Task, folder: Path) -> dict[str, Any] | list[dict[str, Any]]:
    source = task.examples_file
    if source is not None:
        table = {"file": _relative(source.path, folder)}
        if source.test_path is not None:
            table["test_file"] = _relative(source.test_path, folder)
        return {**table, **source.columns}
    return [_row(task, e) for e in task.examples]


def _row(task: Task, example: Example) -> dict[str, Any]:
    row: dict[str, Any] = {"text": example.text}
    if task.kind == "classify":
        row["label"] = example.label
    elif task.kind == "extract":
        row["reference"] = _fields(example.reference)
    else:
        row["reference"] = example.reference
    if example.evidence:
        row["evidence"] = example.evidence
    if task.split_from != DRAWN and example.split:
        row["split"] = example.split
    return row


def _fields(reference: Any) -> dict[str, Any] | str:
    """An extract reference as a TOML table; with a missing (null) value, as the JSON text the
    reader also accepts, since TOML has no null."""
    if isinstance(reference, dict) and all(v is not None for v in reference.values()):
        return dict(reference)
    return json.dumps(reference, ensure_ascii=False)


def _relative(path: Path, folder: Path) -> str:
    """`path` relative to `folder` (forward slashes), or absolute when far from it or on another drive."""
    try:
        relative = Path(os.path.relpath(path.resolve(), folder.resolve()))
    except ValueError:  # another drive (Windows)
        return path.resolve().as_posix()
    if relative.parts[:_CLIMB + 1].count("..") > _CLIMB:
        return path.resolve().as_posix()
    return relative.as_posix()


def _keep_unknown(doc: dict[str, Any], raw: dict[str, Any]) -> None:
    for key, value in raw.items():
        if key not in WRITTEN:
            doc[key] = value
        elif key in WRITTEN_IN and isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update({k: v for k, v in value.items() if k not in WRITTEN_IN[key]})
