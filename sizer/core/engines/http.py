"""A client for OpenAI-compatible servers (vLLM, TGI, llama.cpp's server, Ollama) on the
standard library: JSON over HTTP, a bounded pool of concurrent requests, retries with capped
exponential backoff on 429/5xx/timeouts, and one-line errors for what the user must fix.

The API key goes into the Authorization header and nowhere else: error messages carry the name
of the variable it came from, never its value.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Callable, Iterable, Sequence, TypeVar

from sizer.core.engines.endpoints import DEFAULT_CONCURRENCY, Endpoint
from sizer.core.errors import SizerError
from sizer.core.results.redact import redact

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 6
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


class Rejected(Exception):
    """The server understood the request and refused it (400/404/422): a capability probe's
    answer, or a bad request the caller turns into a one-line error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def backoff_delay(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S,
                  retry_after: float | None = None) -> float:
    """Seconds to wait before retry `attempt` (0-based): the server's Retry-After when it gives
    one, else base * 2**attempt with full jitter; never more than `cap`."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return min(cap, base * 2**attempt) * (0.5 + random.random() / 2)


class OpenAIClient:
    """Requests to one endpoint. Thread-safe: each request opens its own connection."""

    def __init__(self, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 backoff: float = BACKOFF_BASE_S, backoff_cap: float = BACKOFF_CAP_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._key = endpoint.api_key()
        self.concurrency = endpoint.concurrency or DEFAULT_CONCURRENCY  # RemoteLM.load may match the server's slots

    # --- requests --------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        return self._request("GET", path, None)

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        return self._request("POST", path, payload)

    def models(self) -> list[dict[str, Any]]:
        """The server's /v1/models list."""
        return list(self.get("/models").get("data") or [])

    def completion(self, prompt: str | Sequence[int], **params: Any) -> dict[str, Any]:
        """POST /v1/completions for the endpoint's served model."""
        body = {"model": self.endpoint.served_model, "prompt": prompt if isinstance(prompt, str) else list(prompt), **params}
        return self.post("/completions", body)

    def chat(self, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
        """POST /v1/chat/completions for the endpoint's served model."""
        return self.post("/chat/completions", {"model": self.endpoint.served_model, "messages": messages, **params})

    def probe(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """POST `payload` (GET without one) once, without retries: any refusal or server error
        raises Rejected, so a capability check does not wait out the backoff on a server that
        cannot do the thing."""
        try:
            return self._once("GET" if payload is None else "POST", path, payload)
        except _Transient as exc:
            raise Rejected(0, str(exc)) from None

    def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return self._once(method, path, payload)
            except _Transient as exc:
                if attempt == self.retries:
                    raise SizerError(f"{self.endpoint.url}{path}: still failing after {self.retries} retries ({exc}); "
                                     "check the server's load and logs, or lower the concurrency") from None
                self._sleep(backoff_delay(attempt, self.backoff, self.backoff_cap, exc.retry_after))
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        url = self.endpoint.url + path
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            self._raise_for(exc)
        except (TimeoutError, socket.timeout) as exc:
            raise _Transient(f"no answer within {self.timeout:.0f} s") from exc
        except urllib.error.URLError as exc:
            self._raise_unreachable(exc.reason)
        except (ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected,
                http.client.IncompleteRead) as exc:
            raise _Transient(f"connection dropped ({type(exc).__name__})") from exc
        except json.JSONDecodeError as exc:
            raise SizerError(f"{url}: the answer is not JSON; is this an OpenAI-compatible endpoint (…/v1)?") from exc

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _raise_for(self, exc: urllib.error.HTTPError) -> None:
        status = exc.code
        message = _server_message(exc)
        if status in (401, 403):
            if self._key:
                raise SizerError(f"{self.endpoint.url}: the server refused the API key from {self.endpoint.key_source()} "
                                 f"(HTTP {status}); export the right key") from None
            raise SizerError(f"{self.endpoint.url}: the server wants an API key (HTTP {status}); "
                             f"export it as {self.endpoint.key_source()}") from None
        if status in RETRY_STATUS:
            raise _Transient(f"HTTP {status}", _retry_after(exc)) from None
        raise Rejected(status, message) from None

    def _raise_unreachable(self, reason: Any) -> None:
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Transient(f"no answer within {self.timeout:.0f} s")
        if isinstance(reason, ConnectionRefusedError):
            raise SizerError(f"{self.endpoint.url}: connection refused; is the server running and listening there?") from None
        if isinstance(reason, (ConnectionResetError, ConnectionAbortedError)):
            raise _Transient(f"connection dropped ({type(reason).__name__})")
        raise SizerError(f"{self.endpoint.url}: cannot connect ({reason}); check the URL and the network") from None

    # --- concurrency -----------------------------------------------------------------------

    def map(self, fn: Callable[[T], R], items: Iterable[T], on_result: Callable[[T, R], None]) -> None:
        """Call `fn` on every item with at most `self.concurrency` calls in flight, and
        `on_result(item, result)` in this thread as each finishes. An exception from either
        stops the work: calls not yet started are dropped and the exception propagates."""
        pending: set[Future] = set()
        queue = iter(items)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sizer-http") as pool:
            try:
                for item in queue:
                    pending.add(_submit(pool, fn, item))
                    if len(pending) >= self.concurrency:
                        pending = _drain(pending, on_result, FIRST_COMPLETED)
                while pending:
                    pending = _drain(pending, on_result, FIRST_COMPLETED)
            finally:
                for future in pending:
                    future.cancel()


def _submit(pool: ThreadPoolExecutor, fn: Callable, item: Any) -> Future:
    future = pool.submit(fn, item)
    future.item = item  # type: ignore[attr-defined]
    return future


def _drain(pending: set[Future], on_result: Callable, how: str) -> set[Future]:
    done, rest = wait(pending, return_when=how)
    for future in done:
        on_result(future.item, future.result())  # type: ignore[attr-defined]
    return set(rest)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _server_message(exc: urllib.error.HTTPError) -> str:
    """The server's error text, first line, redacted and short."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    try:
        parsed = json.loads(body)
        error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        text = error.get("message") or error.get("detail") if isinstance(error, dict) else error
        text = json.dumps(text) if not isinstance(text, str) else text
    except (json.JSONDecodeError, AttributeError):
        text = body
    first = (text or exc.reason or "").strip().splitlines()[0] if (text or exc.reason) else ""
    return redact(first[:300])


def served_model_info(client: OpenAIClient) -> dict[str, Any]:
    """The server's /v1/models record of the endpoint's model; a one-line error when it is absent."""
    endpoint = client.endpoint
    try:
        models = client.models()
    except Rejected as exc:
        raise SizerError(f"{endpoint.url}/models: {exc}; is this an OpenAI-compatible endpoint (…/v1)?") from None
    for record in models:
        if record.get("id") == endpoint.served_model:
            return record
    names = ", ".join(str(m.get("id")) for m in models[:8]) or "none"
    raise SizerError(f"{endpoint.url}: the server does not serve {endpoint.served_model!r} (it serves: {names}); "
                     "pass --served-model with one of those names")


def server_slots(client: OpenAIClient, info: dict[str, Any]) -> int | None:
    """How many requests the server decodes at once, where it says so; None where unknown.

    A server with fewer slots than requests in flight queues the rest, and each slot keeps the
    KV cache of one prompt only: requests for different examples taking turns on one slot
    re-evaluate the shared prompt prefix every time (measured against llama-cpp-python's server,
    2 threads, SmolLM2-135M: 8 examples x 37 requests took 162 s at 4 in flight, 60 s at 1).
    llama-cpp-python's server (`owned_by` "me") serves one request at a time; llama.cpp's
    llama-server (`owned_by` "llamacpp") gives `total_slots` in GET /props (its `--parallel`)."""
    owner = info.get("owned_by")
    if owner == "me":
        return 1
    if owner == "llamacpp":
        root = OpenAIClient(replace(client.endpoint, url=client.endpoint.url.removesuffix("/v1")))
        try:
            slots = root.probe("/props").get("total_slots")
        except (Rejected, SizerError, AttributeError):
            return None
        return slots if isinstance(slots, int) and slots > 0 else None
    return None


def local_tokenizer(entry: Any) -> Any:
    """The tokenizer of the catalog entry's local files, or None when they are not here."""
    if entry is None:
        return None
    from sizer.core.catalog.resolve import locate

    try:
        local = locate(entry)
    except SizerError:
        return None
    from transformers import AutoTokenizer

    from sizer.core.engines.gguf_parse import gguf_parsed_once

    kwargs = {"gguf_file": local.gguf_file} if local.gguf_file else {}
    try:
        with gguf_parsed_once() if local.gguf_file else nullcontext():
            return AutoTokenizer.from_pretrained(local.path, **kwargs)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SizerError(f"{entry.id}: cannot load the tokenizer in {local.path}: {first}") from exc


def choice(response: dict[str, Any]) -> dict[str, Any]:
    """The first choice of a completion, or a one-line error when the answer has none."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices:
        raise SizerError(f"the server's answer has no choices: {redact(json.dumps(response)[:200])}")
    return choices[0]
