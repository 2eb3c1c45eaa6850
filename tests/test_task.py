"""The task spec: loading, validation of every bad input the issue lists, and `sizer task`."""

from __future__ import annotations

import csv
import json
import re
import tomllib
from pathlib import Path

import pytest

from sizer.cli import main
from sizer.core.errors import SizerError
from sizer.core.events import Message
from sizer.core.task.model import Example, example_id
from sizer.core.task.spec import check_lengths, load_task, split, summarize

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "banking.toml"
DATA = Path(__file__).parent / "data"

HEAD = 'name = "t"\nkind = "classify"\ninstruction = "Sort it."\nlabels = ["a", "b"]\n'
ROWS = "".join(f'[[examples]]\ntext = "{t}"\nlabel = "{l}"\n' for t, l in
               [("one", "a"), ("two", "a"), ("three", "b"), ("four", "b")])


def write(tmp_path: Path, toml: str, **files: str | bytes) -> Path:
    for name, content in files.items():
        target = tmp_path / name.replace("__", ".")
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    path = tmp_path / "task.toml"
    path.write_text(toml, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(SizerError) as info:
        load_task(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- the demo ---------------------------------------------------------------------------------

def test_demo_task_loads_with_eight_balanced_intents():
    task = load_task(DEMO)
    assert (task.kind, task.metric, task.target.absolute, task.target.within) == ("classify", "accuracy", 0.85, None)
    assert len(task.labels) == 8 and set(task.label_descriptions) == set(task.labels)
    assert len(task.examples) == 320 and task.warnings == ()
    assert all(sum(e.label == l for e in task.examples) == 40 for l in task.labels)
    assert (task.test_fraction, task.seed) == (0.5, 0)


def test_example_source_points_at_the_data_line():
    task = load_task(DEMO)
    example = task.examples[17]
    file, line = example.source.rsplit(":", 1)
    lines = Path(file).read_text(encoding="utf-8").splitlines()
    row = next(csv.reader([lines[int(line) - 1]]))
    assert (row[0], row[1]) == (example.text, example.label)


def test_example_id_is_a_stable_content_hash():
    task = load_task(DEMO)
    first = task.examples[0]
    assert re.fullmatch(r"[0-9a-f]{16}", first.id)
    assert first.id == example_id("  " + first.text.replace(" ", "  ") + "\n", first.label, None)
    assert first.id != example_id(first.text, "change_pin", None)
    assert len({e.id for e in task.examples}) == len(task.examples)


def test_demo_subset_keeps_its_attribution():
    readme = (ROOT / "examples" / "banking77" / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "Casanueva" in readme


# ---- good inputs in every form --------------------------------------------------------------

def test_inline_examples_name_their_toml_line(tmp_path):
    task = load_task(write(tmp_path, HEAD + ROWS))
    assert [e.source.rsplit(":", 1)[1] for e in task.examples] == ["5", "8", "11", "14"]
    assert task.label_descriptions == {} and task.target.within == 0.03


def test_label_table_gives_descriptions(tmp_path):
    toml = HEAD.replace('labels = ["a", "b"]\n', "") + '[labels]\na = "first"\nb = "second"\n' + ROWS
    task = load_task(write(tmp_path, toml))
    assert task.labels == ("a", "b") and task.label_descriptions == {"a": "first", "b": "second"}


def test_csv_with_column_mapping_and_test_size(tmp_path):
    data = "utterance,intent,extra\nhello there,a,x\nbye now,b,y\n\"multi\nline\",a,z\nhi,b,w\n"
    toml = HEAD + '[examples]\nfile = "d.csv"\ntext = "utterance"\nlabel = "intent"\n[split]\ntest_size = 2\nseed = 3\n'
    task = load_task(write(tmp_path, toml, d__csv=data))
    assert [e.text for e in task.examples] == ["hello there", "bye now", "multi\nline", "hi"]
    assert [e.source.rsplit(":", 1)[1] for e in task.examples] == ["2", "3", "4", "6"]
    assert (task.test_size, task.seed) == (2, 3)
    assert len(split(task)[1]) == 2


def test_jsonl_extract_task(tmp_path):
    rows = [{"msg": "Ann, order 1", "gold": {"name": "Ann", "order": "1"}},
            {"msg": "Bob wrote", "gold": {"name": "Bob"}}]
    toml = ('kind = "extract"\nfields = ["name", "order"]\n'
            '[examples]\nfile = "d.jsonl"\ntext = "msg"\nreference = "gold"\n')
    task = load_task(write(tmp_path, toml, d__jsonl="\n".join(json.dumps(r) for r in rows) + "\n"))
    assert task.metric == "field_accuracy" and task.name == "task"
    assert [e.reference for e in task.examples] == [{"name": "Ann", "order": "1"}, {"name": "Bob", "order": None}]


def test_generate_task_from_tsv(tmp_path):
    toml = 'kind = "generate"\nmetric = "exact_match"\n[examples]\nfile = "d.tsv"\n'
    task = load_task(write(tmp_path, toml, d__tsv="text\treference\nq1\tr1\nq2\tr2\n"))
    assert [(e.text, e.reference, e.label) for e in task.examples] == [("q1", "r1", None), ("q2", "r2", None)]


def test_documents_resolve_next_to_the_task(tmp_path):
    (tmp_path / "handbook").mkdir()
    task = load_task(write(tmp_path, 'documents = ["handbook/"]\n' + HEAD + ROWS))
    assert task.documents == (tmp_path / "handbook",)


# ---- bad inputs: one-line errors naming file, line and field ------------------------------

def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, HEAD + "target = \n" + ROWS)
    assert error_of(path).startswith(f"{path}:5: invalid TOML")


def test_missing_examples(tmp_path):
    assert "no examples" in error_of(write(tmp_path, HEAD))
    assert "no examples" in error_of(write(tmp_path, HEAD + "examples = []\n"))


def test_empty_example_file(tmp_path):
    toml = HEAD + '[examples]\nfile = "d.csv"\n'
    assert "no examples" in error_of(write(tmp_path, toml, d__csv="text,label\n"))
    message = error_of(write(tmp_path, toml, d__csv=""))
    assert "d.csv: empty file" in message


def test_missing_example_file_names_the_field_line(tmp_path):
    path = write(tmp_path, HEAD + '[examples]\nfile = "nope.csv"\n')
    assert error_of(path).startswith(f"{path}:6: examples.file: 'nope.csv' not found")


def test_csv_without_the_mapped_column(tmp_path):
    path = write(tmp_path, HEAD + '[examples]\nfile = "d.csv"\nlabel = "intent"\n', d__csv="text,category\nhi,a\n")
    message = error_of(path)
    assert f"{tmp_path / 'd.csv'}:1: no column 'intent' (examples.label = 'intent')" in message
    assert "'text', 'category'" in message


def test_label_not_in_labels_names_the_row(tmp_path):
    data = "text,label\nhi,a\nyo,b\nhey,bb\n"
    message = error_of(write(tmp_path, HEAD + '[examples]\nfile = "d.csv"\n', d__csv=data))
    assert message.startswith(f"{tmp_path / 'd.csv'}:4: examples.label: 'bb' is not in labels")
    assert "did you mean 'b'" in message


def test_fewer_than_two_labels(tmp_path):
    path = write(tmp_path, HEAD.replace('["a", "b"]', '["a"]') + ROWS.replace('"b"', '"a"'))
    assert error_of(path).startswith(f"{path}:4: labels: a classify task needs at least two labels")


def test_examples_of_only_one_label(tmp_path):
    path = write(tmp_path, HEAD + ROWS.replace('"b"', '"a"'))
    assert "examples use only 1 label" in error_of(path)


def test_missing_labels_lists_the_fix(tmp_path):
    assert "labels: missing" in error_of(write(tmp_path, HEAD.replace('labels = ["a", "b"]\n', "") + ROWS))


def test_non_utf8_csv_names_line_and_byte():
    message = error_of(DATA / "latin1_task.toml")
    assert message.startswith(f"{DATA / 'latin1.csv'}:3: not valid UTF-8 (byte 0xe9")
    assert "re-save the file as UTF-8" in message


def test_non_utf8_task_file(tmp_path):
    path = write(tmp_path, "")
    path.write_bytes(HEAD.encode() + b'# caf\xe9\n' + ROWS.encode())
    assert error_of(path).startswith(f"{path}:5: not valid UTF-8 (byte 0xe9")


def test_unknown_kind_suggests_the_close_one(tmp_path):
    path = write(tmp_path, HEAD.replace('"classify"', '"clasify"') + ROWS)
    assert error_of(path) == (f"{path}:2: kind: unknown kind 'clasify' (did you mean 'classify'?); "
                              "use one of classify, extract, generate")


def test_unknown_field_names_its_line(tmp_path):
    path = write(tmp_path, HEAD + "[budget]\nminutes = 5\ndownload_bg = 1\n" + ROWS)
    assert error_of(path).startswith(f"{path}:7: budget.download_bg: unknown field (did you mean 'download_gb'?)")
    path = write(tmp_path, HEAD + 'instructions = "x"\n' + ROWS)
    assert error_of(path).startswith(f"{path}:5: instructions: unknown field (did you mean 'instruction'?)")


def test_unknown_field_in_an_example(tmp_path):
    path = write(tmp_path, HEAD + ROWS + '[[examples]]\ntext = "x"\nlable = "a"\n')
    assert error_of(path).startswith(f"{path}:17: examples.lable: unknown field (did you mean 'label'?)")


def test_unknown_field_in_an_extract_reference(tmp_path):
    toml = ('kind = "extract"\nfields = ["name"]\n[[examples]]\ntext = "a"\nreference = { name = "A" }\n'
            '[[examples]]\ntext = "b"\nreference = { nmae = "B" }\n')
    path = write(tmp_path, toml)
    assert error_of(path).startswith(f"{path}:6: examples.reference.nmae: unknown field (did you mean 'name'?)")


def test_extract_values_must_be_plain(tmp_path):
    toml = 'kind = "extract"\nfields = ["day"]\n[[examples]]\ntext = "a"\nreference = { day = 2024-01-02 }\n'
    path = write(tmp_path, toml)
    assert error_of(path).startswith(f"{path}:3: examples.reference.day: must be a string, number or boolean")


def test_missing_kind(tmp_path):
    path = write(tmp_path, ROWS)
    assert error_of(path).startswith(f"{path}: kind: missing; add kind = \"classify\"")


def test_fields_and_labels_belong_to_their_kind(tmp_path):
    assert "only extract tasks have fields" in error_of(write(tmp_path, HEAD + 'fields = ["x"]\n' + ROWS))
    path = write(tmp_path, 'kind = "generate"\nlabels = ["a", "b"]\n')
    assert error_of(path).startswith(f"{path}:2: labels: only classify tasks have labels")


@pytest.mark.parametrize("target, expected", [
    ("target = 1.5", ":5: target: 1.5 is not a score between 0 and 1"),
    ('target = "high"', ":5: target: use target = 0.9"),
    ("[target]\nwithin = -0.1", ":6: target.within: -0.1 is not a margin between 0 and 1"),
    ("[target]\nwithin = 0.1\nabsolute = 0.9", ":5: target: set exactly one of absolute or within"),
    ("[target]\nmargin = 0.1", ":6: target.margin: unknown field"),
])
def test_bad_target(tmp_path, target, expected):
    path = write(tmp_path, HEAD + target + "\n" + ROWS)
    assert error_of(path).startswith(f"{path}{expected}")


def test_bad_metric_and_split(tmp_path):
    assert "unknown metric 'f1'" in error_of(write(tmp_path, HEAD + 'metric = "f1"\n' + ROWS))
    path = write(tmp_path, HEAD + "[split]\ntest = 1.0\n" + ROWS)
    assert error_of(path).startswith(f"{path}:6: split.test: must be a fraction between 0 and 1")
    path = write(tmp_path, HEAD + "[split]\ntest_size = 4\n" + ROWS)
    assert "split.test_size: must be a whole number from 1 to 3" in error_of(path)


def test_missing_documents(tmp_path):
    path = write(tmp_path, 'documents = ["handbook/"]\n' + HEAD + ROWS)
    assert error_of(path).startswith(f"{path}:1: documents: 'handbook/' not found")


def test_malformed_jsonl_names_the_line(tmp_path):
    toml = 'kind = "generate"\n[examples]\nfile = "d.jsonl"\n'
    path = write(tmp_path, toml, d__jsonl='{"text": "a", "reference": "b"}\n{"text": "c", \n')
    assert error_of(path).startswith(f"{tmp_path / 'd.jsonl'}:2: invalid JSON")


# ---- bad inputs the run survives: warnings that say what was dropped ----------------------

def test_duplicates_are_dropped_with_a_count(tmp_path):
    data = "text,label\nhello,a\nbye,b\nhello,a\nHello  ,a\nhi,b\nhey,a\n hey ,a\nwhat,a\nwhat,b\nok,b\n"
    events: list = []
    task = load_task(write(tmp_path, HEAD + '[examples]\nfile = "d.csv"\n', d__csv=data), sink=events.append)
    assert [e.text for e in task.examples] == ["hello", "bye", "Hello", "hi", "hey", "ok"]
    assert any("dropped 2 exact duplicate(s)" in w and "d.csv:4 repeats" in w for w in task.warnings)
    assert any("dropped 2 with the same text but different answers" in w and "d.csv:9" in w
               for w in task.warnings)
    assert [e.text for e in events] == list(task.warnings)
    assert all(isinstance(e, Message) and e.level == "warning" for e in events)
    train, test = split(task)
    assert not {e.text for e in train} & {e.text for e in test}


def test_blank_rows_are_dropped_with_their_lines(tmp_path):
    data = "text,label\nhello,a\n  ,b\nbye,\nhi,b\nyo,a\nhey,b\n"
    task = load_task(write(tmp_path, HEAD + '[examples]\nfile = "d.csv"\n', d__csv=data))
    assert [e.text for e in task.examples] == ["hello", "hi", "yo", "hey"]
    assert any("dropped 2 with empty text or an empty label" in w and "d.csv:3, " in w and "d.csv:4" in w
               for w in task.warnings)


def test_labels_with_too_few_examples_warn(tmp_path):
    toml = HEAD.replace('["a", "b"]', '["a", "b", "c", "d"]') + ROWS + '[[examples]]\ntext = "x"\nlabel = "c"\n'
    task = load_task(write(tmp_path, toml))
    assert any("no examples of d" in w for w in task.warnings)
    assert any("only one example of c" in w for w in task.warnings)
    train, _ = split(task)
    assert "x" in {e.text for e in train}


# ---- lengths and summaries ------------------------------------------------------------------

def _ex(text: str) -> Example:
    return Example(text, "a", None, "mem:1", example_id(text, "a", None))


def test_check_lengths_returns_the_over_long_ids():
    examples = [_ex("one two"), _ex("one two three four"), _ex("x")]
    words = lambda text: len(text.split())  # noqa: E731
    assert check_lengths(examples, words, 2) == [examples[1].id]
    assert check_lengths(examples, words, 10) == []
    with pytest.raises(SizerError, match=r"every example is longer than the 0|no room"):
        check_lengths(examples, words, 0)
    with pytest.raises(SizerError, match=r"every example is longer than the 1 tokens.*mem:1, 4 tokens"):
        check_lengths(examples[:2], words, 1)


def test_summary_counts_and_token_lengths():
    summary = summarize(load_task(DEMO), count_tokens=lambda text: len(text.split()))
    assert summary["split"] == {"train": 160, "test": 160, "test_fraction": 0.5, "test_size": None, "seed": 0,
                                "from": "drawn", "test_file": None}
    assert summary["labels"]["change_pin"] == {"total": 40, "train": 20, "test": 20}
    assert summary["lengths"]["tokens"]["min"] >= 1
    assert summary["lengths"]["chars"]["max"] >= summary["lengths"]["chars"]["median"]


# ---- sizer task new / check -----------------------------------------------------------------

def test_task_check_on_the_demo(capsys):
    assert main(["task", "check", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "320 examples" in out and "160 train / 160 test" in out
    assert re.search(r"lost_or_stolen_card\s+40\s+20\s+20", out)


def test_task_check_json(capsys):
    assert main(["task", "check", str(DEMO), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == 320 and len(summary["labels"]) == 8


def test_task_check_bad_input_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, HEAD.replace('"classify"', '"sort"') + ROWS)
    assert main(["task", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"sizer: error: {path}:2: kind:")


def test_task_check_prints_warnings_to_stderr(tmp_path, capsys):
    path = write(tmp_path, HEAD + ROWS + '[[examples]]\ntext = "one"\nlabel = "a"\n')
    assert main(["task", "check", str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning: examples: dropped 1 exact duplicate(s)" in captured.err
    assert "warning" not in captured.out


@pytest.mark.parametrize("kind", ["classify", "extract", "generate"])
def test_template_round_trip(tmp_path, capsys, kind):
    path = tmp_path / "sub" / f"{kind}.toml"
    assert main(["task", "new", "--kind", kind, str(path)]) == 0
    assert tomllib.loads(path.read_text(encoding="utf-8"))["kind"] == kind
    task = load_task(path)
    assert task.kind == kind and task.warnings == () and len(split(task)[1]) >= 2
    assert main(["task", "check", str(path)]) == 0


def test_template_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text("keep me", encoding="utf-8")
    assert main(["task", "new", str(path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == "keep me"
