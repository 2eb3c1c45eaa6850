"""A stand-in for the Hugging Face Hub: a local HTTP server on 127.0.0.1 serving the recorded-shape
responses in tests/fixtures/hub/ (see its README). Tests use the `hub_server` fixture."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "hub"


@dataclass
class FakeHub:
    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)


def _repo_key(repo_id: str) -> str:
    return repo_id.replace("/", "__")


def _model_info(repo_id: str) -> dict | None:
    path = FIXTURES / "api" / f"{_repo_key(repo_id)}.json"
    return json.loads(path.read_text()) if path.exists() else None


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, with_body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api(f"{parts[2]}/{parts[3]}", with_body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._file(f"{parts[0]}/{parts[1]}", "/".join(parts[4:]), with_body)
        else:
            self._error(404, "EntryNotFound", "no such route", with_body)

    def _api(self, repo_id: str, with_body: bool) -> None:
        info = _model_info(repo_id)
        if info is None:
            self._error(404, "RepoNotFound", "Repository not found", with_body)
            return
        self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, with_body)

    def _file(self, repo_id: str, filename: str, with_body: bool) -> None:
        info = _model_info(repo_id)
        if info is None:
            self._error(404, "RepoNotFound", "Repository not found", with_body)
            return
        if info.get("gated") and not self.headers.get("Authorization"):
            self._error(401, "GatedRepo", "Access to this model is restricted", with_body)
            return
        path = FIXTURES / "files" / _repo_key(repo_id) / filename
        if not path.is_file():
            self._error(404, "EntryNotFound", "Entry not found", with_body)
            return
        body = path.read_bytes()
        headers = {
            "Content-Type": "application/json",
            "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
            "X-Repo-Commit": info["sha"],
        }
        self._send(200, body, headers, with_body)

    def _error(self, status: int, code: str, message: str, with_body: bool) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
        self._send(status, body, headers, with_body)

    def _send(self, status: int, body: bytes, headers: dict[str, str], with_body: bool) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)


@pytest.fixture
def hub_server(monkeypatch, tmp_path):
    """Start the fake Hub, point huggingface_hub at it (HF_ENDPOINT, a fresh HF cache), stop it after."""
    from huggingface_hub import constants

    hub = FakeHub(url="")
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
