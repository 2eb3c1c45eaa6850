"""A stand-in for the Hugging Face Hub: a local HTTP server on 127.0.0.1 serving the recorded-shape
responses in tests/fixtures/hub/ (see its README). Tests use the `hub_server` fixture.

Download tests also host real files with `hub.host(repo_id, folder_or_files)`: those repos answer
the model-info API with file sizes and LFS hashes (`?blobs=true`), and serve files with the
headers huggingface_hub reads (ETag, X-Repo-Commit, X-Linked-Size/X-Linked-Etag for LFS files,
Range requests). Faults on demand: `hub.refuse[repo] = 401|403`, `hub.drop_once.add(filename)`
(the next full GET of that file stops halfway and the connection closes), `hub.token` (a gated
hosted repo serves files only to `Authorization: Bearer <token>`)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "hub"


@dataclass
class HostedRepo:
    """Real files served under one repo id, at one commit."""

    files: dict[str, Path]   # repo file name -> file on disk
    sha: str
    gated: bool = False


@dataclass
class FakeHub:
    url: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    log: list[tuple[str, str, Message]] = field(default_factory=list)  # (method, path, headers)
    hosted: dict[str, HostedRepo] = field(default_factory=dict)
    refuse: dict[str, int] = field(default_factory=dict)      # repo id -> 401 or 403 on every request
    drop_once: set[str] = field(default_factory=set)          # file names whose next full GET stops halfway
    token: str | None = None                                  # what a gated hosted repo accepts

    def host(self, repo_id: str, files: Path | dict[str, Path], gated: bool = False,
             sha: str | None = None) -> HostedRepo:
        """Serve `files` (a folder, taken recursively, or name -> path) as the repo `repo_id`."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p for p in sorted(files.rglob("*")) if p.is_file()}
        sha = sha or hashlib.sha1(repo_id.encode()).hexdigest()
        self.hosted[repo_id] = HostedRepo(dict(files), sha, gated)
        return self.hosted[repo_id]

    def file_requests(self, method: str = "GET") -> list[str]:
        """Paths of the file (resolve) requests made with `method`."""
        return [path for m, path in self.requests if m == method and "/resolve/" in path]


def _repo_key(repo_id: str) -> str:
    return repo_id.replace("/", "__")


_LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")
_SHA256: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime): the GGUF is 135 MB."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(name: str) -> bool:
    return name.endswith(_LFS_SUFFIXES)


def _sibling(name: str, path: Path) -> dict:
    size = path.stat().st_size
    if _is_lfs(name):
        return {"rfilename": name, "size": size, "blobId": hashlib.sha1(name.encode()).hexdigest(),
                "lfs": {"sha256": _sha256(path), "size": size, "pointerSize": 134}}
    return {"rfilename": name, "size": size, "blobId": _git_blob_id(path)}


def _hosted_info(repo_id: str, repo: HostedRepo) -> dict:
    return {
        "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": repo.sha,
        "private": False, "disabled": False, "gated": "manual" if repo.gated else False,
        "tags": [], "siblings": [_sibling(name, path) for name, path in sorted(repo.files.items())],
    }


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
        self.hub.log.append((self.command, path, self.headers))
        parts = path.strip("/").split("/")
        repo_id = f"{parts[2]}/{parts[3]}" if parts[:2] == ["api", "models"] and len(parts) >= 4 else "/".join(parts[:2])
        if repo_id in self.hub.hosted:
            self._hosted(repo_id, parts, with_body)
        elif parts[:2] == ["api", "models"] and len(parts) >= 4:
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

    def _hosted(self, repo_id: str, parts: list[str], with_body: bool) -> None:
        repo = self.hub.hosted[repo_id]
        refused = self.hub.refuse.get(repo_id)
        if refused:
            self._refuse(refused, with_body)
            return
        api = parts[0] == "api"
        revision = parts[5] if api and len(parts) >= 6 else (parts[3] if not api and len(parts) >= 5 else "main")
        if revision not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", "Invalid rev id", with_body)
        elif api:
            self._send(200, json.dumps(_hosted_info(repo_id, repo)).encode(), {"Content-Type": "application/json"}, with_body)
        elif len(parts) < 5 or parts[2] != "resolve":
            self._error(404, "EntryNotFound", "no such route", with_body)
        elif repo.gated and self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            self._error(401, "GatedRepo", "Access to this model is restricted", with_body)
        else:
            self._hosted_file(repo, "/".join(parts[4:]), with_body)

    def _refuse(self, status: int, with_body: bool) -> None:
        if status == 401 and self.headers.get("Authorization"):
            self._error(401, "", "Invalid credentials in Authorization header", with_body)
        elif status == 401:
            self._error(401, "RepoNotFound", "Repository not found", with_body)
        else:
            self._error(status, "", "Your token does not have access to this resource", with_body)

    def _hosted_file(self, repo: HostedRepo, filename: str, with_body: bool) -> None:
        path = repo.files.get(filename)
        if path is None:
            self._error(404, "EntryNotFound", "Entry not found", with_body)
            return
        size = path.stat().st_size
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if _is_lfs(filename):
            etag = _sha256(path)
            headers.update({"X-Linked-Size": str(size), "X-Linked-Etag": f'"{etag}"'})
        else:
            etag = _git_blob_id(path)
        headers["ETag"] = f'"{etag}"'
        start = _range_start(self.headers.get("Range"))
        if start and start >= size:
            self._error(416, "", "Range not satisfiable", with_body)
            return
        status, stop = 200, size
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        elif with_body and filename in self.hub.drop_once:
            self.hub.drop_once.discard(filename)
            stop = size // 2
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(size - start)}.items():
            self.send_header(key, value)
        self.end_headers()
        if with_body:
            self._stream(path, start, stop)
        if stop < size:
            self.close_connection = True  # the client sees the body end early

    def _stream(self, path: Path, start: int, stop: int) -> None:
        with path.open("rb") as handle:
            handle.seek(start)
            left = stop - start
            try:
                while left > 0:
                    block = handle.read(min(1 << 20, left))
                    if not block:
                        break
                    self.wfile.write(block)
                    left -= len(block)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client went away (cancelled)
                self.close_connection = True

    def _error(self, status: int, code: str, message: str, with_body: bool) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, body, headers, with_body)

    def _send(self, status: int, body: bytes, headers: dict[str, str], with_body: bool) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)


def _range_start(header: str | None) -> int:
    """The first byte of an open-ended `Range: bytes=N-` header (huggingface_hub resumes that way)."""
    if not header or not header.startswith("bytes="):
        return 0
    first = header.removeprefix("bytes=").split("-", 1)[0]
    return int(first) if first.isdigit() else 0


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
