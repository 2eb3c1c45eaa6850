"""The bad-input corpus: every case in `tests/bad_inputs/*.toml` runs `python -m sizer ...` in a
subprocess and must end with exit 2 and exactly one stderr line that names the file:line or the
field and says what to do, with no traceback, leaving every input file as it was.

A case is one `[[case]]` row:

    [[case]]
    id = "kind-misspelled"                 # unique in its file
    argv = ["task", "check", "task.toml"]  # after `python -m sizer`
    expect = ["task.toml:2", "did you mean 'classify'"]   # substrings of the one stderr line
    env = { SIZER_CACHE_DIR = "{dir}/cache-file" }         # optional, added to a clean environment
    files = { "task.toml" = "..." }        # text files, written into the case's folder
    hex = { "bad.csv" = "ff fe 00" }       # optional binary files

A file's `[base]` table gives files every case of that file starts from (a case's own files replace
them by name). `{dir}` is the case's folder (the working directory), `{repo}` the repository.
The cases never reach a model: `transformers` and `llama_cpp` cannot be imported in the child, so
a case that got that far fails loudly instead of slowly.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "bad_inputs"
TIMEOUT_S = 60

# Put first on the child's path: any import of a model library fails with this message.
_BLOCKER = '''\
import sys

class _NoModels:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("transformers", "llama_cpp", "sentence_transformers"):
            raise ImportError(f"bad-input case imported {name}: it must fail before loading a model")
        return None

sys.meta_path.insert(0, _NoModels())
'''


def _cases() -> list:
    params, seen = [], set()
    for path in sorted(CORPUS.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        base = data.get("base", {})
        for case in data["case"]:
            assert (path.stem, case["id"]) not in seen, f"{path.name}: case id {case['id']!r} used twice"
            seen.add((path.stem, case["id"]))
            merged = {**case, "files": {**base.get("files", {}), **case.get("files", {})},
                      "hex": {**base.get("hex", {}), **case.get("hex", {})}}
            params.append(pytest.param(merged, id=f"{path.stem}/{case['id']}"))
    return params


def _fill(text: str, folder: Path) -> str:
    return text.replace("{dir}", str(folder)).replace("{repo}", str(REPO))


def _write_inputs(case: dict, folder: Path) -> dict[Path, str]:
    """Write the case's files; return sha256 per file."""
    for name, text in case["files"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(_fill(text, folder), encoding="utf-8")
    for name, digits in case["hex"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(bytes.fromhex(digits))
    return _hashes(folder)


def _hashes(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _environment(case: dict, folder: Path, private: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIZER_", "HF_", "OPENAI_"))}
    (private / "blocker").mkdir()
    (private / "blocker" / "sitecustomize.py").write_text(_BLOCKER)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(private / "blocker"), str(REPO)]),
        "SIZER_CACHE_DIR": str(private / "cache"),
        "XDG_CACHE_HOME": str(private / "xdg"),
        "HF_HOME": str(private / "hf"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    })
    env.update({k: _fill(v, folder) for k, v in case.get("env", {}).items()})
    return {k: v for k, v in env.items() if v != "{unset}"}


@pytest.mark.parametrize("case", _cases())
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    before = _write_inputs(case, folder)
    private = tmp_path / "private"
    private.mkdir()
    argv = [_fill(a, folder) for a in case["argv"]]
    proc = subprocess.run([sys.executable, "-m", "sizer", *argv], cwd=folder, capture_output=True, text=True,
                          env=_environment(case, folder, private), timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    lines = proc.stderr.splitlines()
    shown = f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, shown
    assert proc.returncode == 2, shown
    assert len(lines) == 1 and lines[0].startswith("sizer: error: "), shown
    for needle in case["expect"]:
        assert _fill(needle, folder) in lines[0], f"{needle!r} not in the line; {shown}"
    assert proc.stdout == "", "results only on stdout, and there are none"
    after = {p: h for p, h in _hashes(folder).items() if p in before}
    assert after == before, "an input file was modified or removed"


def test_the_corpus_is_large_enough():
    ids = [p.id for p in _cases()]
    assert len(ids) >= 40, len(ids)
    kinds = {i.split("/")[0] for i in ids}
    assert {"task_files", "catalog", "profiles", "cli", "reports", "endpoints", "environment"} <= kinds, kinds
