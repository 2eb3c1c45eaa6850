"""Where sizer keeps its files: the user cache directory and the Hugging Face cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """sizer's cache directory (trial cache, measured hardware figures); created on demand.

    `SIZER_CACHE_DIR` overrides it; otherwise `$XDG_CACHE_HOME/sizer` or `~/.cache/sizer`.
    """
    override = os.environ.get("SIZER_CACHE_DIR")
    if override:
        path = Path(override)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "sizer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (honours HF_HOME / HF_HUB_CACHE)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_root_catalogs() -> Path:
    """The catalog folder shipped with sizer (the repository's `catalogs/`)."""
    return Path(__file__).resolve().parents[2] / "catalogs"
