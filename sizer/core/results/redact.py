"""Secrets out of everything sizer writes (the trial cache, reports, error lines): key names that
hold credentials are masked whole, token-shaped strings (Hugging Face tokens, sk- keys, bearer
values) are masked anywhere in a text."""

from __future__ import annotations

import re
from typing import Any, Mapping

MASK = "<redacted>"
# Whole key names only, so tokenizer settings (eos_token, max_new_tokens) survive.
_SECRET_KEY = re.compile(
    r"^(x[_-])?(hf|hugging[_-]?face|hub|openai|anthropic|azure)?[_-]?"
    r"(api[_-]?key|secret[_-]?key|private[_-]?key|access[_-]?token|auth[_-]?token|token|secret|"
    r"client[_-]?secret|password|passwd|authorization|cookie|bearer|credentials?)$",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}"  # Hugging Face access tokens
    r"|\bsk-[A-Za-z0-9_-]{16,}"  # sk-..., sk-proj-..., sk-ant-... API keys
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"
)


def is_secret_key(key: str) -> bool:
    """True for key names that hold credentials (token, api_key, HF_TOKEN, Authorization...)."""
    return bool(_SECRET_KEY.match(str(key).strip()))


def redact(obj: Any) -> Any:
    """A copy of `obj` with secret-named keys masked and token-like substrings masked anywhere."""
    if isinstance(obj, Mapping):
        return {k: (MASK if is_secret_key(k) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return _SECRET_VALUE.sub(MASK, obj)
    return obj
