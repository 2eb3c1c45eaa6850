"""Where sizer's files are: the catalog and example tasks shipped inside the package, the user
data folder (the user catalog), the user cache directory and the Hugging Face cache.

sizer never writes into its own installation: what it builds goes to `data_dir()` or `cache_dir()`.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from sizer.core.errors import SizerError

# Package data: the repository's top-level folders are installed as these packages (setup.py maps them).
SHIPPED_PACKAGES = {"catalogs": "sizer._catalogs", "examples": "sizer._examples"}


def cache_dir() -> Path:
    """sizer's cache directory (trial cache, measured hardware figures); created on demand.

    `SIZER_CACHE_DIR` overrides it; otherwise `$XDG_CACHE_HOME/sizer` or `~/.cache/sizer`.
    """
    override = os.environ.get("SIZER_CACHE_DIR")
    if override:
        path, source = Path(override), "SIZER_CACHE_DIR"
    else:
        base = os.environ.get("XDG_CACHE_HOME")
        path, source = (Path(base) / "sizer", "XDG_CACHE_HOME") if base else (Path.home() / ".cache" / "sizer", "")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SizerError(f"{_named(source)}{path} is a file, not a folder; set SIZER_CACHE_DIR to a folder "
                         "sizer may write to") from None
    except OSError as exc:
        raise SizerError(f"{_named(source)}{path} cannot be created ({exc.strerror}); set SIZER_CACHE_DIR to a "
                         "folder sizer may write to") from None
    return path


def _named(variable: str) -> str:
    return f"{variable}: " if variable else "cache folder "


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (honours HF_HOME / HF_HUB_CACHE)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def shipped_dir(folder: str) -> Path:
    """The folder of package data `folder` ("catalogs" or "examples") that comes with sizer.

    Run from a source checkout (sizer/ beside pyproject.toml), that is the checkout's own folder;
    installed (wheel, `pip install .` or `-e .`), it is found through importlib.resources.
    """
    package = SHIPPED_PACKAGES[folder]
    checkout = source_checkout()
    if checkout is not None:
        return checkout / folder
    try:
        found = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise SizerError(f"this sizer installation lacks its {folder} ({package}); reinstall sizer") from None
    if not isinstance(found, Path):  # e.g. a zip import: the folder must be on disk
        raise SizerError(f"sizer's {folder} are inside an archive ({found}); install sizer as files (pip install)")
    return found


def source_checkout() -> Path | None:
    """The repository root when sizer runs from its source tree (sizer/ beside pyproject.toml,
    catalogs/ and examples/), else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and all((root / f / "__init__.py").is_file() for f in SHIPPED_PACKAGES):
        return root
    return None


def shipped_catalogs() -> Path:
    """The catalog shipped with sizer (the repository's `catalogs/`): read only."""
    return shipped_dir("catalogs")


def shipped_examples() -> Path:
    """The example tasks shipped with sizer (the repository's `examples/`): read only."""
    return shipped_dir("examples")


def demo_task() -> Path:
    """The built-in demo task (eight BANKING77 intents)."""
    return shipped_examples() / "banking.toml"




def data_dir() -> Path:
    """sizer's user data folder (the user catalog); not created here.

    `SIZER_HOME` overrides it; otherwise the platform's user data folder (platformdirs:
    ~/.local/share/sizer on Linux, ~/Library/Application Support/sizer on macOS).
    """
    override = os.environ.get("SIZER_HOME")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("sizer", appauthor=False))


def user_catalog_dir() -> Path:
    """The user catalog: family files of the entries sizer built here (`catalog add`, `refresh`,
    models named by repo id or path), layered over the shipped catalog."""
    return data_dir() / "catalog"
