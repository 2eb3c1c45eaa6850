"""The train/test split: seeded, stratified, deterministic, disjoint."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sizer.core.task.split import allocate, holdout_count, split, stratified_split
from sizer.core.task.model import Example, example_id, normalise
from sizer.core.task.spec import load_task

DEMO = Path(__file__).resolve().parents[1] / "examples" / "banking.toml"


def examples_for(counts: dict[str, int]) -> list[Example]:
    return [Example(f"{label} message {i}", label, None, f"mem:{i}", example_id(f"{label} message {i}", label, None))
            for label, n in counts.items() for i in range(n)]


def by_label(examples: list[Example]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in examples:
        out[e.label] = out.get(e.label, 0) + 1
    return out


def test_demo_split_is_stratified_disjoint_and_complete():
    task = load_task(DEMO)
    train, test = split(task)
    assert by_label(train) == by_label(test) == {label: 20 for label in task.labels}
    assert not {e.id for e in train} & {e.id for e in test}
    assert not {normalise(e.text) for e in train} & {normalise(e.text) for e in test}
    assert sorted(e.id for e in train + test) == sorted(e.id for e in task.examples)


def test_split_keeps_the_task_order():
    task = load_task(DEMO)
    train, test = split(task)
    position = {e.id: i for i, e in enumerate(task.examples)}
    assert [position[e.id] for e in train] == sorted(position[e.id] for e in train)
    assert [position[e.id] for e in test] == sorted(position[e.id] for e in test)


def test_unequal_strata_get_proportional_shares():
    counts = {"big": 50, "mid": 27, "small": 3, "pair": 2}
    train, test = stratified_split(examples_for(counts), 25, seed=0, stratum=lambda e: e.label)
    sizes = by_label(test)
    assert len(test) == 25 and len(train) == 57
    for label, n in counts.items():
        share = n * 25 / 82
        assert int(share) <= sizes[label] <= int(share) + 1 or sizes[label] == 1, (label, sizes)
        assert 1 <= sizes[label] <= n - 1


@pytest.mark.parametrize("counts, total", [
    ({"a": 7, "b": 5, "c": 1}, 6), ({"a": 10, "b": 10}, 7), ({"x": 3, "y": 4, "z": 5, "w": 9}, 10),
    ({"a": 100, "b": 1, "c": 2}, 30),
])
def test_allocate_bounds(counts, total):
    sizes = allocate(counts, total)
    assert abs(sum(sizes.values()) - total) <= len(counts)
    for label, n in counts.items():
        assert (sizes[label] == 0) if n < 2 else (1 <= sizes[label] <= n - 1)


def test_allocate_is_exact_when_no_stratum_is_clamped():
    assert allocate({"a": 10, "b": 10, "c": 10}, 15) == {"a": 5, "b": 5, "c": 5}
    assert sum(allocate({"a": 13, "b": 7, "c": 11}, 9).values()) == 9


def test_test_count_rounds_half_up():
    assert [holdout_count(5, 0.5), holdout_count(4, 0.5), holdout_count(10, 0.25), holdout_count(3, 0.1)] == [3, 2, 3, 0]


def test_same_seed_same_split_other_seed_other_split():
    task = load_task(DEMO)
    first, again = split(task), split(load_task(DEMO))
    assert [e.id for e in first[1]] == [e.id for e in again[1]]
    other = split(task, seed=1)
    assert {e.id for e in other[1]} != {e.id for e in first[1]}
    assert by_label(other[1]) == by_label(first[1])


def test_split_is_independent_of_file_order():
    task = load_task(DEMO)
    shuffled = dataclasses.replace(task, examples=tuple(reversed(task.examples)))
    assert {e.id for e in split(shuffled)[1]} == {e.id for e in split(task)[1]}


def test_split_is_the_same_in_a_fresh_interpreter_with_another_hash_seed():
    task = load_task(DEMO)
    here = [e.id for e in split(task)[1]]
    code = ("from sizer.core.task.spec import load_task, split\n"
            f"print(','.join(e.id for e in split(load_task({str(DEMO)!r}))[1]))\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().split(",") == here


def test_non_classify_tasks_split_without_strata(tmp_path):
    rows = "".join(f'[[examples]]\ntext = "q{i}"\nreference = "r{i}"\n' for i in range(10))
    path = tmp_path / "g.toml"
    path.write_text('kind = "generate"\n[split]\ntest = 0.3\n' + rows, encoding="utf-8")
    train, test = split(load_task(path))
    assert (len(train), len(test)) == (7, 3)
