"""Bring your own test set: `[examples] test_file` or a `split` column. The test examples are exactly
the given rows, demonstrations never come from them, and `task check` and the report say which
split was given and which was drawn."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import pytest

from conftest import TINY
from sizer.cli import main
from sizer.core.trials import trial as trial_module
from sizer.core.errors import SizerError
from sizer.core.task.split import split
from sizer.core.task.spec import load_task
from sizer.core.trials.trial import run_trial
from sizer.core.trials.types import TrialSpec
from tiny_models import banking_rows

LABELS = ("card_arrival", "exchange_rate", "change_pin")
HEAD = f'name = "byo"\nkind = "classify"\nlabels = {json.dumps(list(LABELS))}\n'


def write_csv(path: Path, rows: list[dict[str, str]], header: tuple[str, ...] = ("text", "label")) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def byo(tmp_path) -> tuple[Path, list[dict], list[dict]]:
    """A task with 6 train and 2 test BANKING77 messages per intent, the test set in its own file."""
    rows = banking_rows(LABELS, 8)
    train = [r for i, r in enumerate(rows) if i % 8 < 6]
    test = [r for i, r in enumerate(rows) if i % 8 >= 6]
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "test.csv", test)
    path = tmp_path / "task.toml"
    path.write_text(HEAD + '[examples]\nfile = "train.csv"\ntest_file = "test.csv"\n[split]\nseed = 4\n',
                    encoding="utf-8")
    return path, train, test


def texts(examples) -> list[str]:
    return [e.text for e in examples]


def test_test_file_rows_are_exactly_the_test_split(byo):
    path, train, test = byo
    task = load_task(path)
    got_train, got_test = split(task)
    assert texts(got_test) == [r["text"] for r in test]
    assert texts(got_train) == [r["text"] for r in train]
    assert [e.source for e in got_test] == [f"{path.parent / 'test.csv'}:{n}" for n in range(2, 2 + len(test))]
    assert split(task, seed=99) == (got_train, got_test)  # nothing is drawn, so no seed moves it
    assert task.split_from == "test_file" and task.test_fraction == 6 / 24  # 2 of 8 per intent x 3


def test_a_split_column_gives_the_split(tmp_path):
    rows = [{**r, "split": "test" if i % 4 == 0 else "Train"} for i, r in enumerate(banking_rows(LABELS, 4))]
    write_csv(tmp_path / "all.csv", rows, header=("text", "label", "split"))
    path = tmp_path / "task.toml"
    path.write_text(HEAD + '[examples]\nfile = "all.csv"\n', encoding="utf-8")
    task = load_task(path)
    train, test = split(task)
    assert texts(test) == [r["text"] for r in rows if r["split"] == "test"]
    assert len(test) == 3 and len(train) == 9 and task.split_from == "split column"


def test_a_split_column_under_another_name(tmp_path):
    rows = [{**r, "part": "test" if i % 2 else "train"} for i, r in enumerate(banking_rows(LABELS, 2))]
    write_csv(tmp_path / "all.csv", rows, header=("text", "label", "part"))
    path = tmp_path / "task.toml"
    path.write_text(HEAD + '[examples]\nfile = "all.csv"\nsplit = "part"\n', encoding="utf-8")
    assert texts(split(load_task(path))[1]) == [r["text"] for r in rows if r["part"] == "test"]


def test_inline_rows_marked_test(tmp_path):
    rows = "".join(f'[[examples]]\ntext = "m{i}"\nlabel = "{LABELS[i % 3]}"\n' + ('split = "test"\n' if i >= 6 else "")
                   for i in range(9))
    path = tmp_path / "task.toml"
    path.write_text(HEAD + rows, encoding="utf-8")
    assert texts(split(load_task(path))[1]) == ["m6", "m7", "m8"]


def test_a_row_in_both_files_stays_in_the_test_set(byo):
    path, train, test = byo
    write_csv(path.parent / "train.csv", train + [test[0]])
    task = load_task(path)
    assert texts(split(task)[1]) == [r["text"] for r in test]
    assert test[0]["text"] not in texts(split(task)[0])
    assert any("exact duplicate" in w and "test.csv:2" in w for w in task.warnings)


def error_of(path: Path) -> str:
    with pytest.raises(SizerError) as info:
        load_task(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_drawn_share_contradicts_a_given_test_set(byo):
    path, _, _ = byo
    path.write_text(path.read_text().replace("seed = 4", "test = 0.3"), encoding="utf-8")
    message = error_of(path)
    assert message.startswith(f"{path}:8: split.test: the test examples are given by examples.test_file; remove test")


def test_a_split_value_other_than_train_or_test_names_its_line(tmp_path):
    rows = [{**r, "split": "validation" if i == 2 else "test" if i % 2 else "train"}
            for i, r in enumerate(banking_rows(LABELS, 2))]
    write_csv(tmp_path / "all.csv", rows, header=("text", "label", "split"))
    path = tmp_path / "task.toml"
    path.write_text(HEAD + '[examples]\nfile = "all.csv"\n', encoding="utf-8")
    assert error_of(path).startswith(f"{tmp_path / 'all.csv'}:4: examples.split: 'validation' is not train or test")


def test_an_empty_test_file_is_refused(byo):
    path, _, _ = byo
    (path.parent / "test.csv").write_text("text,label\n", encoding="utf-8")
    message = error_of(path)
    assert "no test examples" in message and "examples.test_file" in message


def test_a_missing_test_file_names_the_field(byo):
    path, _, _ = byo
    (path.parent / "test.csv").unlink()
    assert error_of(path).startswith(f"{path}:6: examples.test_file: 'test.csv' not found")


def test_task_check_says_given_or_drawn(byo, capsys):
    path, _, _ = byo
    assert main(["task", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"split: 18 train / 6 test, test set given by test_file {path.parent / 'test.csv'}" in out
    assert main(["task", "check", "examples/banking.toml"]) == 0
    assert "split: 160 train / 160 test, drawn (test 0.5, seed 0)" in capsys.readouterr().out
    assert main(["task", "check", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["split"]["from"] == "test_file" and summary["split"]["test"] == 6


# ---- trials: demonstrations never come from the given test set ------------------------------------


def test_few_shot_trial_scores_the_test_file_and_draws_demos_from_train_only(byo, trial_env, monkeypatch):
    path, train, test = byo
    task = load_task(path)
    seen: dict[str, list] = {}
    real = trial_module.make_runner

    def spying(*args, **kwargs):
        runner = real(*args, **kwargs)
        prepare = runner.prepare

        def recorded(task, train, test):
            seen["train"], seen["test"] = list(train), list(test)
            out = prepare(task, train, test)
            seen["prefix"] = runner.plan.prefix_text
            return out

        runner.prepare = recorded
        return runner

    monkeypatch.setattr(trial_module, "make_runner", spying)
    result = run_trial(task, TrialSpec(model=TINY, strategy="few-shot", shots=2))
    assert result.split == {"train": 18, "test": 6}  # 6 and 2 of each of 3 intents
    assert sorted(texts(seen["test"])) == sorted(r["text"] for r in test)
    assert not set(texts(seen["train"])) & {r["text"] for r in test}
    assert result.settings["demonstrations"] == 6  # 2 shots x 3 intents, all from train.csv
    shown = [r["text"] for r in train if r["text"] in seen["prefix"]]
    assert len(shown) == 6
    assert not [r["text"] for r in test if r["text"] in seen["prefix"]]


def test_the_report_task_table_says_the_split_was_given(byo, trial_env, tmp_path, capsys):
    path, _, _ = byo
    out = tmp_path / "rec.toml"
    code = main(["run", str(path), "--models", TINY, "--strategies", "zero-shot", "--out", str(out)])
    assert code in (0, 1), capsys.readouterr().err
    table = tomllib.loads(out.read_text(encoding="utf-8"))["task"]
    assert table["split"] == {"train": 18, "test": 6}
    assert table["split_from"] == "test_file" and table["test_file"] == str(path.parent / "test.csv")
