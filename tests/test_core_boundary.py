"""The core must stay free of Textual and Rich so the headless CLI runs anywhere."""

import ast
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
    # trials/runners/ and engines/ hold most of the model code; the walk must reach into them.
    assert any(m.startswith("sizer.core.trials.runners.") for m in modules), modules
    assert any(m.startswith("sizer.core.engines.") for m in modules), modules
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


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The sizer.core modules `path` imports at run time, top level or inside functions (an import
    under `if TYPE_CHECKING:` is for annotations only and is left out)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found & modules


def test_core_modules_import_each_other_without_cycles():
    """Each concept sits on the ones below it: no module reaches, however indirectly, back to itself."""
    names = core_modules()
    paths = sorted(CORE.rglob("*.py"))
    graph = {name: _imports(path, set(names)) - {name} for name, path in zip(names, paths)}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join(trail + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles))[:10])


def test_run_data_types_sit_at_a_low_floor():
    """The trial's and the run's data types import neither the machinery that produces them (the
    walk, the trial, the engines) nor a model library, so a report reader or the app's screens can
    hold them without torch."""
    code = (
        "import sys\n"
        "import sizer.core.trials.types, sizer.core.decide.types, sizer.core.hardware.devices\n"
        "heavy = ('torch', 'transformers', 'numpy', 'sizer.core.engines', 'sizer.core.decide.walk', 'sizer.core.trials.trial')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"the data types pulled in: {out.stdout}"
