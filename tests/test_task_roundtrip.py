"""Nothing the user wrote is lost: every example task, and tasks that together use every key a task
file can hold, loaded, written by the core's `dump_task` and by the app's Task screen (Pilot: open,
ctrl+s, a path, enter), load back equal."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest
from textual.widgets import Input

from sizer.core.hardware.profile import simulated
from sizer.core.task.model import ROW_KEYS, TABLE_KEYS, TOP_KEYS, Task
from sizer.core.task.spec import load_task
from sizer.core.task.write import dump_task, save_task
from sizer.tui import task_form
from sizer.tui.app import SizerApp
from sizer.tui.screens.dialogs import PathDialog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_TASKS = sorted((ROOT / "examples").glob("*.toml"))


def comparable(task: Task) -> Task:
    """The task with what legitimately differs between two files of it blanked: its own path, the
    "file:line" source of each example (and the warnings that quote them); paths resolved."""
    source = task.examples_file
    if source is not None:
        source = dataclasses.replace(source, path=source.path.resolve(),
                                     test_path=source.test_path.resolve() if source.test_path else None)
    return dataclasses.replace(
        task, path=Path("-"), warnings=(), examples_file=source,
        examples=tuple(dataclasses.replace(e, source="") for e in task.examples),
        documents=tuple(p.resolve() for p in task.documents))


def assert_same(a: Task, b: Task) -> None:
    assert comparable(a) == comparable(b)
    assert len(a.warnings) == len(b.warnings)


# ---- tasks that use every key ---------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


def every_key_tasks(folder: Path) -> list[Path]:
    """Six tasks that between them use every key of TOP_KEYS, TABLE_KEYS and ROW_KEYS (some keys
    exclude others: labels/fields, absolute/within, test/test_size/test_file)."""
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "leave.md").write_text("Staff get 27 days of leave.\n", encoding="utf-8")
    (folder / "docs" / "pay.md").write_text("Pay day is the 25th.\n", encoding="utf-8")
    data = folder / "data"
    data.mkdir()
    _write_csv(data / "train.csv", ["message", "intent", "doc"],
               [["how many days off", "leave", "leave.md"], ["can I take Friday off", "leave", "leave.md"],
                ["when is pay day", "pay", "pay.md"], ["was I paid twice", "pay", "pay.md"]])
    _write_csv(data / "test.csv", ["message", "intent", "doc"],
               [["holiday allowance?", "leave", "leave.md"], ["salary date?", "pay", "pay.md"]])
    with (data / "all.jsonl").open("w", encoding="utf-8") as handle:
        for i, (text, label, side) in enumerate([("a\u2028one", "x", "train"), ("b one", "y", "train"),
                                                 ("c one", "x", "TEST"), ("d one", "y", "test"),
                                                 ("e one", "x", "train")]):
            handle.write(json.dumps({"text": text, "label": label, "split": side}, ensure_ascii=False) + "\n")
    _write_csv(data / "parts.csv", ["text", "label", "part"],
               [["p one", "x", "train"], ["p two", "y", "train"], ["p three", "x", "test"], ["p four", "y", "test"]])
    tasks = {
        "classify_file.toml": '''
name = "hr-intents"
kind = "classify"
instruction = "Sort the HR question."
metric = "macro_f1"
documents = ["docs/"]
[labels]
leave = "days off, holidays"
pay = ""
[examples]
file = "data/train.csv"
test_file = "data/test.csv"
text = "message"
label = "intent"
evidence = "doc"
[target]
within = 0.05
[budget]
minutes = 12
download_gb = 1.5
[split]
seed = 3
''',
        "extract_inline.toml": '''
name = "orders"
kind = "extract"
fields = ["name", "order"]
target = 0.7
metric = "field_accuracy"
[split]
seed = 1
[[examples]]
text = "Ann here, order 12"
reference = { name = "Ann", order = "12" }
evidence = "mail-1"
split = "train"
[[examples]]
text = "Bob, order 7"
reference = '{"name": "Bob", "order": null}'
split = "train"
[[examples]]
text = "order 9 from Cy"
reference = { name = "Cy", order = "9" }
split = "test"
[[examples]]
text = "Di: 4 please"
reference = { name = "Di", order = 4 }
''',
        "generate_test_size.toml": '''
name = "handbook-qa"
kind = "generate"
instruction = "Answer."
metric = "contains"
documents = ["docs/leave.md", "docs/pay.md"]
[budget]
minutes = 5
[split]
test_size = 2
seed = 5
[[examples]]
text = "Days of leave?"
reference = "27"
evidence = "leave.md"
[[examples]]
text = "Pay day?"
reference = "the 25th"
evidence = "pay.md"
[[examples]]
text = "Multi\\nline question?"
reference = "yes"
[[examples]]
text = "Fourth?"
reference = "no"
''',
        "classify_split_column.toml": '''
name = "xy"
kind = "classify"
labels = ["x", "y"]
[examples]
file = "data/all.jsonl"
[target]
absolute = 0.6
''',
        "classify_split_named.toml": '''
name = "parts"
kind = "classify"
labels = ["x", "y"]
[examples]
file = "data/parts.csv"
split = "part"
[split]
seed = 2
''',
        "generate_file.toml": '''
name = "capitals"
kind = "generate"
metric = "exact_match"
[examples]
file = "data/qa.tsv"
text = "q"
reference = "a"
[split]
test = 0.34
''',
    }
    with (data / "qa.tsv").open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, dialect="excel-tab").writerows(
            [["q", "a"], ["Capital of France?", "Paris"], ["Capital of Peru?", "Lima"], ["Capital of Mali?", "Bamako"]])
    paths = []
    for name, text in tasks.items():
        (folder / name).write_text(text.lstrip(), encoding="utf-8")
        paths.append(folder / name)
    return paths


def test_the_every_key_tasks_use_every_key(tmp_path):
    used: set[str] = set()
    for path in every_key_tasks(tmp_path):
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        used |= set(doc)
        for table, value in doc.items():
            rows = value if isinstance(value, list) and table == "examples" else [value]
            for row in rows:
                if isinstance(row, dict) and table in ("examples", "target", "budget", "split"):
                    used |= {f"{table}.{key}" for key in row}
    wanted = set(TOP_KEYS) | {f"{t}.{k}" for t, keys in TABLE_KEYS.items() for k in keys} \
        | {f"examples.{k}" for k in ROW_KEYS}
    assert wanted - used == set()


# ---- the core writer ------------------------------------------------------------------------------


def all_tasks(folder: Path) -> list[Path]:
    """Copies of the example tasks (with their data) and the every-key tasks, all under `folder`."""
    shutil.copytree(ROOT / "examples", folder / "examples")
    return [folder / "examples" / p.name for p in EXAMPLE_TASKS] + every_key_tasks(folder / "every")


def test_dump_task_round_trips_in_place_and_elsewhere(tmp_path):
    for path in all_tasks(tmp_path):
        task = load_task(path)
        beside = path.with_name(path.stem + "-copy.toml")
        save_task(task, beside)
        far = tmp_path / "elsewhere" / "deep" / path.name
        save_task(task, far)
        assert_same(load_task(beside), task)
        assert_same(load_task(far), task)


def test_examples_from_a_file_stay_a_file_mapping(tmp_path):
    banking = load_task(ROOT / "examples" / "banking.toml")
    doc = tomllib.loads(dump_task(banking, ROOT / "examples" / "x.toml"))
    assert doc["examples"] == {"file": "banking77/banking_subset.csv", "text": "text", "label": "category"}
    far = tomllib.loads(dump_task(banking, tmp_path / "a" / "b" / "c" / "x.toml"))
    assert far["examples"]["file"] == (ROOT / "examples/banking77/banking_subset.csv").as_posix()


def test_handbook_keeps_documents_metric_and_evidence(tmp_path):
    handbook = load_task(ROOT / "examples" / "handbook.toml")
    doc = tomllib.loads(dump_task(handbook, ROOT / "examples" / "x.toml"))
    assert doc["documents"] == ["handbook"] and doc["metric"] == "contains"
    assert [r["evidence"] for r in doc["examples"]] == [e.evidence for e in handbook.examples]
    assert all(r["evidence"] for r in doc["examples"])


def test_keys_the_writer_does_not_know_are_kept(tmp_path):
    task = load_task(ROOT / "examples" / "handbook.toml")
    newer = dataclasses.replace(task, raw={**task.raw, "notes": "from a newer sizer",
                                           "budget": {"minutes": 10, "gpu_hours": 2},
                                           "target": 0.4})
    doc = tomllib.loads(dump_task(newer, tmp_path / "t.toml"))
    assert doc["notes"] == "from a newer sizer"
    assert doc["budget"] == {"minutes": 10.0, "download_gb": 5.0, "gpu_hours": 2}
    assert doc["target"] == 0.4


def test_save_task_is_atomic_and_leaves_no_temp_file(tmp_path, monkeypatch):
    task = load_task(ROOT / "examples" / "handbook.toml")
    target = tmp_path / "t.toml"
    target.write_text("old", encoding="utf-8")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        save_task(task, target)
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


# ---- the app's Task screen ------------------------------------------------------------------------


async def _open_edit_save(app: SizerApp, pilot, source: Path, target: Path, edit: tuple[str, ...] = ()) -> None:
    """On the Task screen: o, the source's path, enter; the `edit` keys; ctrl+s, the target's path, enter."""
    await pilot.click("#examples")
    await _answer_path_dialog(app, pilot, "o", source)
    assert app.task_path == source and app.state.form.name == app.state.task.name, app.state.log
    if edit:
        await pilot.press(*edit)
        await pilot.pause()
    await pilot.click("#examples")
    await _answer_path_dialog(app, pilot, "ctrl+s", target)
    assert app.task_path == target, app.state.log


async def _answer_path_dialog(app: SizerApp, pilot, key: str, path: Path) -> None:
    """Press `key`, put `path` in the dialog's field (typing it key by key takes seconds), press enter."""
    await pilot.press(key)
    await pilot.pause()
    assert isinstance(app.screen, PathDialog)
    app.screen.query_one(Input).value = str(path)
    await pilot.press("enter")
    await pilot.pause()


async def _save_through_the_app(pairs: list[tuple[Path, Path]], edit: tuple[str, ...] = ()) -> None:
    app = SizerApp(None, here=simulated("1x RTX 4090"))
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("2")
        await pilot.pause()
        for source, target in pairs:
            await _open_edit_save(app, pilot, source, target, edit)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "cache"))


def test_the_app_saves_every_task_and_it_loads_back_equal(tmp_path):
    pairs = [(path, tmp_path / "saved" / f"{i}-{path.name}") for i, path in enumerate(all_tasks(tmp_path / "src"))]
    asyncio.run(_save_through_the_app(pairs))
    for path, target in pairs:
        assert_same(load_task(target), load_task(path))


def test_editing_file_examples_asks_then_writes_them_inline(tmp_path):
    source = ROOT / "examples" / "banking.toml"
    refused, accepted = tmp_path / "refused.toml", tmp_path / "accepted.toml"
    # "d" deletes the first row: the dialog asks first; "n" keeps the file mapping, "y" writes rows inline
    asyncio.run(_save_through_the_app([(source, refused)], edit=("d", "n")))
    asyncio.run(_save_through_the_app([(source, accepted)], edit=("d", "y")))
    original = load_task(source)
    assert_same(load_task(refused), original)
    assert tomllib.loads(refused.read_text(encoding="utf-8"))["examples"]["file"]
    rows = tomllib.loads(accepted.read_text(encoding="utf-8"))["examples"]
    assert isinstance(rows, list) and len(rows) == len(original.examples) - 1
    again = load_task(accepted)
    assert [e.id for e in again.examples] == [e.id for e in original.examples[1:]]
    assert again.label_descriptions == original.label_descriptions and again.target == original.target


def test_a_new_form_is_written_by_the_core(tmp_path):
    form = task_form.TaskForm(name="fresh", labels=["a", "b"], instruction="Sort.",
                              rows=[task_form.FormRow("one", "a"), task_form.FormRow("two", "a"),
                                    task_form.FormRow("three", "b"), task_form.FormRow("four", "b")])
    task = task_form.validate(form)
    assert (task.name, task.labels, task.target.absolute, task.test_fraction) == ("fresh", ("a", "b"), 0.85, 0.5)
    path = tmp_path / "fresh.toml"
    path.write_text(task_form.to_toml(form, path), encoding="utf-8")
    assert_same(load_task(path), task)


def test_load_rows_reads_files_as_the_core_does(tmp_path):
    path = tmp_path / "more.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:  # Excel's CSV UTF-8, ";" locale
        csv.writer(handle, delimiter=";").writerows([["id", "text", "label"], [1, "five; six", "a"], [2, "seven", "b"]])
    assert task_form.rows_from_file(path, "classify") == [task_form.FormRow("five; six", "a"),
                                                          task_form.FormRow("seven", "b")]
    lines = tmp_path / "more.jsonl"
    lines.write_text(json.dumps({"text": "x\u2028y", "reference": {"name": "Ann"}}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    assert task_form.rows_from_file(lines, "extract") == [task_form.FormRow("x\u2028y", '{"name": "Ann"}')]
