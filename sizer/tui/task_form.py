"""The Task screen's form: a view over a core `Task`.

The form holds what the screen shows and edits (name, kind, instruction, labels or fields, target,
the example rows); everything else (documents, metric, budget, split, label descriptions, each
example's evidence and split, keys the core writer does not know) is kept from the `Task` it was
opened from, `form.base`. `form_task` lays the edits over that base; the core's `dump_task` writes
it and `load_task` alone decides whether it is valid. Examples read from a file stay a file mapping
until a row is edited (the screen asks first).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sizer.core.errors import SizerError
from sizer.core.trials.scoring import METRICS
from sizer.core.task.model import (DEFAULT_BUDGET, DEFAULT_INSTRUCTIONS, DRAWN, GIVEN_COLUMN, Example, ExampleFile,
                                   Target, Task, example_id)
from sizer.core.task.spec import load_task
from sizer.core.task.files import read_rows
from sizer.core.task.write import dump_task

KINDS = ("classify", "extract", "generate")


class FormRow(NamedTuple):
    text: str
    answer: str                     # the label, the reference, or an extract reference as JSON
    evidence: str | None = None     # kept from the task; the form does not show it
    split: str | None = None        # "train"/"test" when the task's split is given


def blank_task() -> Task:
    """The task a new form starts from (it is not valid until labels and examples are added)."""
    return Task(name="my-task", kind="classify", instruction=DEFAULT_INSTRUCTIONS["classify"], labels=(),
                label_descriptions={}, fields=(), examples=(), documents=(), target=Target(0.85, None),
                metric="accuracy", budget_minutes=DEFAULT_BUDGET["minutes"],
                budget_download_gb=DEFAULT_BUDGET["download_gb"], test_fraction=0.5, seed=0,
                path=Path("my-task.toml"))


@dataclass
class TaskForm:
    base: Task = field(default_factory=blank_task)
    name: str = "my-task"
    kind: str = "classify"
    instruction: str = ""
    labels: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    target: str = "0.85"  # "0.9" (absolute) or "within 0.03"
    rows: list[FormRow] = field(default_factory=list)
    examples_file: ExampleFile | None = None  # the rows are this file's until one is edited


def form_from_task(task: Task) -> TaskForm:
    target = f"{task.target.absolute:g}" if task.target.absolute is not None else f"within {task.target.within:g}"
    rows = [FormRow(e.text, _answer(e.label, e.reference), e.evidence, e.split) for e in task.examples]
    return TaskForm(task, task.name, task.kind, task.instruction, list(task.labels), list(task.fields),
                    target, rows, task.examples_file)


def _answer(label: str | None, reference: str | dict | None) -> str:
    if label is not None:
        return label
    if isinstance(reference, dict):
        return json.dumps(reference, ensure_ascii=False)
    return reference or ""


def _target_value(text: str) -> Target:
    words = text.replace("=", " ").split()
    try:
        if len(words) == 2 and words[0] == "within":
            return Target(None, float(words[1]))
        if len(words) == 1:
            return Target(float(words[0]), None)
    except ValueError:
        pass
    raise SizerError(f"target: {text!r} is not a score like 0.9 or a margin like 'within 0.03'")


def _example(kind: str, row: FormRow) -> Example:
    label, reference = (row.answer, None) if kind == "classify" else (None, row.answer)
    if kind == "extract":
        try:
            reference = json.loads(row.answer)
        except ValueError:
            raise SizerError(f"example {row.text[:30]!r}: the reference must be a JSON object, "
                             "e.g. {\"name\": \"Ann\"}") from None
    return Example(row.text, label, reference, "form", example_id(row.text, label, reference), row.evidence,
                   row.split)


def form_task(form: TaskForm) -> Task:
    """The form's edits laid over its base task (not validated: `validate` asks the core)."""
    base = form.base
    split_from = base.split_from if form.examples_file is not None else \
        (GIVEN_COLUMN if any(r.split for r in form.rows) else DRAWN)
    return dataclasses.replace(
        base, name=form.name, kind=form.kind, instruction=form.instruction,
        labels=tuple(form.labels) if form.kind == "classify" else (),
        label_descriptions={k: v for k, v in base.label_descriptions.items() if k in form.labels},
        fields=tuple(form.fields) if form.kind == "extract" else (),
        target=_target_value(form.target),
        metric=base.metric if form.kind == base.kind else METRICS[form.kind][0],
        examples=tuple(_example(form.kind, r) for r in form.rows),
        examples_file=form.examples_file, split_from=split_from)


def to_toml(form: TaskForm, path: Path) -> str:
    """The form as task TOML written to `path` (the core's `dump_task`)."""
    return dump_task(form_task(form), path)


def validate(form: TaskForm) -> Task:
    """The core's verdict on the form: the Task it would load, or its one-line SizerError."""
    with tempfile.TemporaryDirectory(prefix="sizer-form-") as folder:
        path = Path(folder) / "task.toml"
        path.write_text(to_toml(form, path), encoding="utf-8")
        try:
            return load_task(path)
        except SizerError as exc:
            raise SizerError(str(exc).replace(str(path), "form")) from None


def rows_from_csv(text: str) -> list[FormRow]:
    """Pasted CSV: `text,label` per line (a header line naming text is skipped)."""
    rows = [r for r in csv.reader(io.StringIO(text.strip())) if any(cell.strip() for cell in r)]
    if rows and rows[0] and rows[0][0].strip().lower() == "text":
        rows = rows[1:]
    out = []
    for number, row in enumerate(rows, 1):
        if len(row) < 2:
            raise SizerError(f"pasted CSV line {number}: expected text,label (two columns), got {len(row)}")
        out.append(FormRow(row[0].strip(), row[1].strip()))
    return out


def rows_from_file(path: Path, kind: str) -> list[FormRow]:
    """Examples from a task TOML, or a CSV/TSV/JSONL file with a `text` column and a `label`
    (classify) or `reference` column, read as the core reads example files."""
    if path.suffix == ".toml":
        return form_from_task(load_task(path)).rows
    answer = "label" if kind == "classify" else "reference"
    rows = read_rows(path, str(path), {"text": "text", "answer": answer})
    return [FormRow(_cell(r.values["text"]), _cell(r.values["answer"])) for r in rows]


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value).strip()
