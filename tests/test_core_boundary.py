"""The core must stay free of Textual and Rich so the headless CLI runs anywhere."""

import pkgutil
import subprocess
import sys

import sizer.core


def test_core_imports_no_ui_libraries():
    modules = [f"sizer.core.{m.name}" for m in pkgutil.walk_packages(sizer.core.__path__)]
    assert modules, "found no core modules to check"
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('textual', 'rich') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"sizer.core pulled in UI libraries: {out.stdout}"
