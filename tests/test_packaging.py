"""sizer installed from its wheel, away from the source tree: the catalog and the example tasks come
with the package, every path to them resolves through the installed package, and nothing is ever
written into the install.

The wheel is built from a copy of the tree (`pip wheel --no-deps --no-build-isolation`) and
unpacked into a fresh virtual environment made `--without-pip`; a .pth file there points at the
running environment's site-packages for the dependencies only (a path line in a .pth file adds
that folder and nothing else: an editable sizer installed there is not picked up). The commands
run from an empty folder with no PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import tiny_models
from sizer.core.catalog.model_catalog import family_files, load_catalog
from sizer.core.paths import shipped_catalogs, shipped_examples

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "sizer", "catalogs", "examples")


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(src)], check=True, timeout=300)
    (wheel,) = dist.glob("sizer-*.whl")
    return wheel


def _venv_with(wheel: Path, tmp: Path) -> tuple[Path, Path]:
    """A fresh venv holding the unpacked wheel, its dependencies reachable; returns (python, site-packages)."""
    python, site = _venv_with_files(wheel, tmp)
    # bytecode now, as pip does at install time, so that running sizer writes nothing there
    subprocess.run([str(python), "-m", "compileall", "-q", str(site / "sizer")], check=True, timeout=300)
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, site


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_wheel_install_runs_catalog_fit_and_the_demo_without_the_source_tree(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "sizer/_catalogs/qwen2.5.toml" in names and "sizer/_examples/banking.toml" in names
    assert "sizer/_examples/banking77/README.md" in names  # the BANKING77 attribution travels with the data
    assert any(n.startswith("sizer/_catalogs/configs/") for n in names)
    python, site = _venv_with(wheel, tmp_path)
    installed = _tree(site / "sizer")

    work = tmp_path / "elsewhere"
    work.mkdir()
    home = tmp_path / "home"
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "SIZER_HOME": str(home / "sizer-data"),
           "SIZER_CACHE_DIR": str(home / "cache"), "HF_HOME": str(home / "hf"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}

    def sizer(*argv: str) -> str:
        done = subprocess.run([str(python), "-m", "sizer", *argv], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"sizer {' '.join(argv)}: {done.stderr}"
        return done.stdout

    where = subprocess.run([str(python), "-c", "import sizer, sizer.core.paths as p; "
                            "print(sizer.__file__); print(p.shipped_catalogs()); print(p.demo_task())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(w).is_relative_to(site) for w in where), where

    listed = json.loads(sizer("catalog", "list", "--json"))
    shipped = load_catalog(family_files(shipped_catalogs())).entries
    assert sorted(m["id"] for m in listed) == sorted(e.id for e in shipped)  # every entry

    fit = json.loads(sizer("fit", "Qwen/Qwen2.5-0.5B-Instruct", "--profile", "1x RTX 4090", "--json"))
    assert fit["params"] == 494_032_768  # catalogs/qwen2.5.toml

    summary = json.loads(sizer("task", "check", "--demo", "--json"))
    assert summary["examples"] == 320 and len(summary["labels"]) == 8
    examples = {e["name"]: e for e in json.loads(sizer("task", "examples", "--json"))}
    demo = next(e for e in examples.values() if e["demo"])
    assert Path(demo["path"]).is_relative_to(site) and Path(demo["path"]).name == "banking.toml"
    assert len(examples) == len(list(shipped_examples().glob("*.toml")))

    model = tmp_path / "my-model"  # a model outside the catalog goes to the user catalog
    model.mkdir()
    (model / "config.json").write_text(json.dumps(tiny_models.tiny_config()))
    sizer("catalog", "add", str(model))
    assert str(model) in [m["id"] for m in json.loads(sizer("catalog", "list", "--json"))]
    assert (home / "sizer-data" / "catalog" / "local.toml").is_file()

    assert _tree(site / "sizer") == installed  # nothing written into the install


@pytest.mark.slow
def test_editable_install_maps_the_top_level_folders(tmp_path):
    src = tmp_path / "src"
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        src.mkdir(exist_ok=True)
        copy(ROOT / name, src / name)
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_editable(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=src, check=True, timeout=300,
                   capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    python, site = _venv_with_files(wheel, tmp_path)
    probe = ("import importlib.resources as r; print(r.files('sizer._catalogs')); print(r.files('sizer._examples'))")
    out = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env={"PATH": os.environ["PATH"]},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(src / "catalogs"), str(src / "examples")]  # the source folders, not copies


def _venv_with_files(wheel: Path, tmp: Path) -> tuple[Path, Path]:
    """A fresh venv `--without-pip` with the wheel unpacked into its site-packages (nothing else)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return python, site


# ------------------------------------------------------------------ the shipped files, in process


def test_demo_and_examples_come_from_the_package(capsys):
    from sizer.cli import main

    assert main(["task", "check", "--demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 320  # 40 messages x 8 intents
    assert main(["task", "examples", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {Path(r["path"]).name for r in rows.values()} == {"banking.toml", "handbook.toml"}
    assert [Path(r["path"]).name for r in rows.values() if r["demo"]] == ["banking.toml"]
    assert all(Path(r["path"]).parent == shipped_examples() for r in rows.values())


def test_task_check_needs_a_path_or_demo(capsys):
    from sizer.cli import main

    assert main(["task", "check"]) == 2
    assert main(["task", "check", "x.toml", "--demo"]) == 2
    assert capsys.readouterr().err.splitlines() == ["sizer: error: name one task file PATH, or pass --demo (not both)"] * 2
