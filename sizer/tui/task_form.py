"""The Task screen's form as data, and its TOML text.

The form is serialised with tomli-w exactly as typed; whether it is a valid task is decided by the
core alone (`sizer.core.task.load_task` on the written file). To be replaced by the core's
`dump_task` once it exists.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from sizer.core.errors import SizerError
from sizer.core.task import Task, load_task

KINDS = ("classify", "extract", "generate")


@dataclass
class TaskForm:
    name: str = "my-task"
    kind: str = "classify"
    instruction: str = ""
    labels: list[str] = field(default_factory=list)
    label_descriptions: dict[str, str] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    target: str = "0.85"  # "0.9" (absolute) or "within 0.03"
    rows: list[tuple[str, str]] = field(default_factory=list)  # (text, label or reference)
    test_fraction: float = 0.5
    seed: int = 0
    budget_minutes: float = 30.0


def form_from_task(task: Task) -> TaskForm:
    target = f"{task.target.absolute:g}" if task.target.absolute is not None else f"within {task.target.within:g}"
    rows = [(e.text, _answer(e.label, e.reference)) for e in task.examples]
    return TaskForm(task.name, task.kind, task.instruction, list(task.labels), dict(task.label_descriptions),
                    list(task.fields), target, rows, task.test_fraction, task.seed, task.budget_minutes)


def _answer(label: str | None, reference: str | dict | None) -> str:
    if label is not None:
        return label
    if isinstance(reference, dict):
        return json.dumps(reference, ensure_ascii=False)
    return reference or ""


def _target_value(text: str) -> float | dict[str, float]:
    words = text.replace("=", " ").split()
    try:
        if len(words) == 2 and words[0] == "within":
            return {"within": float(words[1])}
        if len(words) == 1:
            return float(words[0])
    except ValueError:
        pass
    raise SizerError(f"target: {text!r} is not a score like 0.9 or a margin like 'within 0.03'")


def _row(kind: str, text: str, answer: str) -> dict[str, object]:
    if kind == "classify":
        return {"text": text, "label": answer}
    if kind == "extract":
        try:
            return {"text": text, "reference": json.loads(answer)}
        except ValueError:
            raise SizerError(f"example {text[:30]!r}: the reference must be a JSON object, e.g. {{\"name\": \"Ann\"}}") from None
    return {"text": text, "reference": answer}


def to_toml(form: TaskForm) -> str:
    """The form as a task TOML document (labels as a table when any label has a description)."""
    doc: dict[str, object] = {"name": form.name, "kind": form.kind, "instruction": form.instruction}
    if form.kind == "classify":
        doc["labels"] = ({label: form.label_descriptions.get(label, "") for label in form.labels}
                         if form.label_descriptions else list(form.labels))
    if form.kind == "extract":
        doc["fields"] = list(form.fields)
    doc["target"] = _target_value(form.target)
    doc["budget"] = {"minutes": form.budget_minutes}
    doc["split"] = {"test": form.test_fraction, "seed": form.seed}
    doc["examples"] = [_row(form.kind, text, answer) for text, answer in form.rows]
    return tomli_w.dumps(doc)


def validate(form: TaskForm) -> Task:
    """The core's verdict on the form: the Task it would load, or its one-line SizerError."""
    text = to_toml(form)
    with tempfile.TemporaryDirectory(prefix="sizer-form-") as folder:
        path = Path(folder) / "task.toml"
        path.write_text(text, encoding="utf-8")
        try:
            return load_task(path)
        except SizerError as exc:
            raise SizerError(str(exc).replace(str(path), "form")) from None


def rows_from_csv(text: str) -> list[tuple[str, str]]:
    """Pasted CSV: `text,label` per line (a header line naming text is skipped)."""
    rows = [r for r in csv.reader(io.StringIO(text.strip())) if any(cell.strip() for cell in r)]
    if rows and rows[0] and rows[0][0].strip().lower() == "text":
        rows = rows[1:]
    out = []
    for number, row in enumerate(rows, 1):
        if len(row) < 2:
            raise SizerError(f"pasted CSV line {number}: expected text,label (two columns), got {len(row)}")
        out.append((row[0].strip(), row[1].strip()))
    return out


def rows_from_file(path: Path) -> list[tuple[str, str]]:
    """Examples from a CSV (text,label columns), JSONL (text + label/reference keys) or task TOML."""
    if path.suffix == ".toml":
        return form_from_task(load_task(path)).rows
    if not path.is_file():
        raise SizerError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [_jsonl_row(path, n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if path.suffix in (".csv", ".tsv"):
        return rows_from_csv(text if path.suffix == ".csv" else text.replace("\t", ","))
    raise SizerError(f"{path}: expected a .csv, .tsv, .jsonl or .toml file")


def _jsonl_row(path: Path, number: int, line: str) -> tuple[str, str]:
    try:
        record = json.loads(line)
        answer = record.get("label", record.get("reference"))
        return record["text"], _answer(answer if isinstance(answer, str) else None, answer)
    except (ValueError, KeyError, AttributeError, TypeError):
        raise SizerError(f"{path}:{number}: expected a JSON object with text and label (or reference)") from None
