"""Remote candidates: a model served by an OpenAI-compatible engine (vLLM, TGI, llama.cpp's
server, Ollama) rather than loaded here.

A candidate is the endpoint's base URL (".../v1"), the model name the server knows it by, and
optionally the catalog id of the same weights (for the tokenizer, the chat template and the
size). The API key is read from the
environment when a request is made; it never lives in the candidate, so it cannot be written
out with it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sizer.core.errors import SizerError

DEFAULT_KEY_VARS = ("SIZER_API_KEY", "OPENAI_API_KEY")
APIS = ("completions", "chat")
DEFAULT_CONCURRENCY = 4
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one served model."""

    url: str                          # base URL, ending in /v1
    served_model: str                 # the name in the server's /v1/models
    catalog_id: str | None = None     # the catalog entry of the same weights, if any
    api_key_env: str | None = None    # env var holding the key; None: SIZER_API_KEY, OPENAI_API_KEY
    api: str = "completions"          # "completions" or "chat" (for extract/generate)
    concurrency: int | None = None    # requests in flight; None: as many as the server has slots

    @property
    def id(self) -> str:
        """How reports name the candidate: the served model at its host."""
        return f"{self.served_model}@{urlsplit(self.url).netloc}"

    def key_source(self) -> str:
        """The variable the key comes from (or would), for messages; never the key itself."""
        if self.api_key_env:
            return f"${self.api_key_env}"
        found = next((name for name in DEFAULT_KEY_VARS if os.environ.get(name)), None)
        return f"${found}" if found else "$" + " or $".join(DEFAULT_KEY_VARS)

    def api_key(self) -> str | None:
        """The key from the environment, or None when the server needs none."""
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise SizerError(f"{self.id}: api_key_env names ${self.api_key_env}, which is not set; export it or drop api_key_env")
            return value
        return next((os.environ[name] for name in DEFAULT_KEY_VARS if os.environ.get(name)), None)

    def describe(self) -> dict[str, Any]:
        """What a report or the trial cache may record about the endpoint (no key, no userinfo)."""
        return {"endpoint": self.url, "served_model": self.served_model, "api": self.api,
                "api_key_from": self.key_source()}


def normalize_url(url: str, where: str = "--endpoint") -> str:
    """The base URL with /v1 at the end; credentials in the URL are refused (use an env var)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SizerError(f"{where}: {url!r} is not an http(s) URL; give e.g. http://127.0.0.1:8000/v1")
    try:
        parts.port
    except ValueError:
        raise SizerError(f"{where}: {url!r} has a port outside 1 to 65535; give e.g. http://127.0.0.1:8000/v1") from None
    if parts.username or parts.password:
        raise SizerError(f"{where}: put no credentials in the URL; export the key and name it with api_key_env")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def make_endpoint(url: str, served_model: str, where: str = "--endpoint", **options: Any) -> Endpoint:
    """A validated Endpoint; `options` are the optional fields (catalog_id, api_key_env, api, concurrency)."""
    if not served_model or not str(served_model).strip():
        raise SizerError(f"{where}: give the served model name (--served-model NAME, as in the server's /v1/models)")
    env = options.get("api_key_env")
    if env is not None and not _ENV_NAME.match(str(env)):
        raise SizerError(f"{where}: api_key_env = {env!r} is not an environment variable name; name the variable, not the key")
    api = options.get("api", "completions")
    if api not in APIS:
        raise SizerError(f"{where}: api = {api!r}; use one of {', '.join(APIS)}")
    concurrency = options.get("concurrency")
    if concurrency is not None and (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                                    or not 1 <= concurrency <= 256):
        raise SizerError(f"{where}: concurrency = {concurrency!r}; give a whole number from 1 to 256")
    return Endpoint(normalize_url(url, where), str(served_model).strip(), options.get("catalog_id"),
                    env, api, concurrency)


@dataclass(frozen=True)
class RemoteCandidate:
    """The model of a trial on the OpenAI-compatible engine: what `make_runner` dispatches on
    (`kind`, `id`, `instruct`) plus the endpoint and the catalog entry of its weights, if known."""

    endpoint: Endpoint
    entry: Any = None                 # catalog ModelEntry of the same weights, or None
    kind: str = "causal"              # servers here serve causal LMs

    @property
    def id(self) -> str:
        return self.entry.id if self.entry is not None else self.endpoint.served_model

    @property
    def instruct(self) -> bool:
        return bool(self.entry.instruct) if self.entry is not None else True

    @property
    def revision(self) -> str:
        """Part of the trial key: the same weights behind another server are another trial."""
        return f"remote:{self.endpoint.served_model}@{self.endpoint.url}"


def remote_candidate(spec: Any, catalog: Any) -> RemoteCandidate:
    """The candidate of a trial spec with `endpoint` set: `spec.model` is the catalog id of the
    served weights when the catalog knows it, else the served model name."""
    entry = catalog.find(spec.model) if spec.model else None
    served = spec.served_model or (entry.id if entry is not None else spec.model)
    options = {"catalog_id": entry.id if entry is not None else None}
    for name in ("api", "concurrency", "api_key_env"):
        value = getattr(spec, f"endpoint_{name}", None)
        if value is not None:
            options[name] = value
    return RemoteCandidate(make_endpoint(spec.endpoint, served, **options), entry)
