"""Where sizer keeps its files: the user cache directory and the Hugging Face cache."""

from __future__ import annotations

import os
from pathlib import Path

from sizer.core.errors import SizerError


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


def repo_root_catalogs() -> Path:
    """The catalog folder shipped with sizer (the repository's `catalogs/`)."""
    return Path(__file__).resolve().parents[2] / "catalogs"
