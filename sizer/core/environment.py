"""Environment variables read as numbers, checked before anything reads them: a bad value is one
line naming the variable, not a traceback from deep inside a library's import.

huggingface_hub parses these with `int()` when it is imported (huggingface_hub/constants.py).
"""

from __future__ import annotations

import os
from typing import Mapping

from sizer.core.errors import SizerError

WHOLE_SECONDS = ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT")


def check_numeric_settings(environ: Mapping[str, str] | None = None) -> None:
    """SizerError naming the first variable whose value is not a whole number of seconds."""
    environ = os.environ if environ is None else environ
    for name in WHOLE_SECONDS:
        value = environ.get(name)
        if value is None:
            continue
        try:
            int(value)
        except ValueError:
            raise SizerError(f"{name}={value!r} is not a whole number of seconds; set e.g. {name}=10, "
                             "or unset it") from None
