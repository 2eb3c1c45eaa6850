"""The core must stay free of Textual and Rich so the headless CLI runs anywhere."""

import subprocess
import sys
from pathlib import Path

import sizer.core

CORE = Path(sizer.core.__file__).parent


def core_modules() -> list[str]:
    """Every module under sizer/core, subpackages included, named from the file tree (walking
    packages by import would silently skip a subpackage whose name it cannot resolve)."""
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_core_module_list_covers_subpackages():
    modules = core_modules()
    # runners/ and backends/ hold most of the model code; the walk must reach into them.
    assert any(m.startswith("sizer.core.runners.") for m in modules), modules
    assert any(m.startswith("sizer.core.backends.") for m in modules), modules
    assert len(modules) == len(list(CORE.rglob("*.py")))


def test_core_imports_no_ui_libraries():
    modules = core_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('textual', 'rich') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"sizer.core pulled in UI libraries: {out.stdout}"
