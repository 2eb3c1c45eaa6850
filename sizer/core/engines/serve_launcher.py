"""Managed serving engines: start a server for one candidate on 127.0.0.1 and a free port, wait
until it is healthy, hand its base URL to the OpenAI-compatible backend, and stop it afterwards.

Two recipes:
- vLLM: `vllm serve PATH --host 127.0.0.1 --port P --tensor-parallel-size N --max-logprobs 20
  --gpu-memory-utilization 0.9 --max-model-len C --served-model-name NAME`, N and C from the
  plan (`plan_estimate(engine="vllm").serving`); CUDA machines only.
- llama.cpp: `python -m llama_cpp.server --model F.gguf --host 127.0.0.1 --port P --logits_all true
  --model_alias NAME --n_gpu_layers L --n_ctx C --n_threads T`, L from the plan's placement
  (llama.cpp's -ngl), T the CPU cores this process may use.

The server never outlives sizer: it runs under `sizer.core.engines.serve_guard` as the leader of its own
process group; the guard dies with sizer (PR_SET_PDEATHSIG, set in `preexec_fn` and by the guard
itself) and takes the group with it; `stop()` runs in a `finally` and at exit. The death signal
follows the thread that started the server, so a server is started and stopped by the same thread.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sizer.core.errors import SizerError, TrialCancelled
from sizer.core.engines.serve_guard import death_signal_setter

SERVE_ENGINES = ("vllm", "llama.cpp")
HEALTH_TIMEOUT_S = {"vllm": 1200.0, "llama.cpp": 180.0}  # vLLM loads weights and captures CUDA graphs
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 3
MAX_LOGPROBS = 20  # vLLM's --max-logprobs: the top-N the classify runner asks for
GPU_MEMORY_UTILIZATION = 0.9

_live: set["ManagedServer"] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class Recipe:
    """How to start one server: the engine, the command (without host/port), the served name."""

    engine: str
    command: tuple[str, ...]
    served_name: str
    label: str                       # stable description for the trial key and reports (no port)
    settings: dict[str, Any] = field(default_factory=dict)

    def argv(self, port: int) -> list[str]:
        return [*self.command, "--host", "127.0.0.1", "--port", str(port)]


def parse_serve_engine(name: str | None) -> str | None:
    """`--serve` value -> "vllm" or "llama.cpp"; unknown -> one-line SizerError."""
    if name is None:
        return None
    key = name.strip().lower().replace("llamacpp", "llama.cpp").replace("llama-cpp", "llama.cpp")
    key = key.removesuffix("-server")
    if key not in SERVE_ENGINES:
        raise SizerError(f"--serve {name}: unknown serving engine; use {' or '.join(SERVE_ENGINES)}")
    return key


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedServer:
    """One running server. Use as a context manager, or call `start()` and `stop()`."""

    def __init__(self, recipe: Recipe, log_dir: Path, timeout_s: float | None = None,
                 cancel: Any = None, env: dict[str, str] | None = None) -> None:
        self.recipe = recipe
        self.timeout_s = timeout_s if timeout_s is not None else HEALTH_TIMEOUT_S[recipe.engine]
        self.cancel = cancel
        self.env = env
        self.port = 0
        self.process: subprocess.Popen | None = None
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"{recipe.engine}-{os.getpid()}-{id(self):x}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The process group id (the guard's pid): every process of the server is in it."""
        return self.process.pid if self.process else None

    def __enter__(self) -> "ManagedServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "ManagedServer":
        """Start the server and block until it answers /v1/models with its served name."""
        self.port = free_port()
        env = {**os.environ, **(self.env or {}), "SIZER_GUARD_PARENT": str(os.getpid())}
        argv = [sys.executable, "-m", "sizer.core.engines.serve_guard", *self.recipe.argv(self.port)]
        arm = death_signal_setter(signal.SIGTERM)  # the guard dies with sizer, even before it runs a line
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, env=env, preexec_fn=arm)
        with _live_lock:
            _live.add(self)
        self.peak_rss_bytes = 0
        self._sampling = threading.Event()
        threading.Thread(target=self._sample_rss, name="sizer-server-rss", daemon=True).start()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SizerError(f"{self._what()} exited with code {self.process.returncode} before it was healthy: "
                                 f"{self.tail()} (log: {self.log})")
            if self.cancel is not None and self.cancel.is_set():
                raise TrialCancelled(f"{self._what()}: stopped while starting")
            if healthy(self.url, self.recipe.served_name):
                return
            time.sleep(0.5)
        raise SizerError(f"{self._what()} was not healthy within {self.timeout_s:.0f} s: {self.tail()} (log: {self.log})")

    def _sample_rss(self, every_s: float = 0.2) -> None:
        """Track the peak resident set of the server's process group (bytes, from /proc; Linux)."""
        group = self.process.pid
        while not self._sampling.wait(every_s):
            total = sum(_rss_bytes(pid) for pid in _pids() if _in_group(pid, group))
            self.peak_rss_bytes = max(self.peak_rss_bytes, total)

    def _what(self) -> str:
        return f"the {self.recipe.engine} server for {self.recipe.served_name}"

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The server log's last non-empty lines, joined into one line."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(kept) or "(empty log)"

    def stop(self) -> None:
        """Terminate the whole process group: SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
        process = self.process
        with _live_lock:
            _live.discard(self)
        if process is None:
            return
        self._sampling.set()
        group = process.pid
        if process.poll() is None:
            _signal_group(group, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(group, signal.SIGKILL)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(group: int) -> bool:
    """Whether any process of the process group still exists (zombies aside)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(_in_group(pid, group) for pid in _pids())


def _pids() -> list[int]:
    try:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []


def _in_group(pid: int, group: int) -> bool:
    """A live (not zombie) process of `group`, from /proc/PID/stat (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0] != "Z" and int(fields[2]) == group


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def healthy(base_url: str, served_name: str, timeout: float = 2.0) -> bool:
    """Whether GET {base_url}/models answers with `served_name` among its models."""
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=timeout) as response:
            data = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, json.JSONDecodeError, OSError):
        return False
    return any(m.get("id") == served_name for m in (data.get("data") or []) if isinstance(m, dict))


@atexit.register
def stop_all() -> None:
    """Stop every server this process started and has not stopped yet."""
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.stop()


# --- recipes -----------------------------------------------------------------------------------


def llamacpp_recipe(gguf: Path, served_name: str, gpu_layers: int = 0, context: int = 4096,
                    threads: int | None = None, label: str = "") -> Recipe:
    """llama-cpp-python's server for one GGUF file (`pip install 'llama-cpp-python[server]'`)."""
    import importlib.util

    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            raise SizerError(f"--serve llama.cpp needs llama.cpp's server ({module} is not installed): "
                             "pip install 'llama-cpp-python[server]'")
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    command = (sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", served_name,
               "--logits_all", "true", "--n_gpu_layers", str(gpu_layers), "--n_ctx", str(context),
               "--n_threads", str(threads), "--n_threads_batch", str(threads), "--verbose", "false")
    settings = {"server": "llama.cpp", "n_gpu_layers": gpu_layers, "n_ctx": context, "n_threads": threads}
    return Recipe("llama.cpp", command, served_name, label or f"llama.cpp {gguf.name} ngl={gpu_layers} ctx={context}",
                  settings)


def vllm_recipe(model_path: Path | str, served_name: str, tensor_parallel: int, context: int,
                label: str = "") -> Recipe:
    """`vllm serve` for a safetensors checkpoint folder, tensor parallel over `tensor_parallel` GPUs."""
    exe = shutil.which("vllm") or str(Path(sys.executable).parent / "vllm")
    if not Path(exe).exists():
        raise SizerError("--serve vllm: vLLM is not installed in this environment (pip install vllm), "
                         "or point sizer at a running server with --endpoint")
    command = (exe, "serve", str(model_path), "--served-model-name", served_name,
               "--tensor-parallel-size", str(tensor_parallel), "--max-logprobs", str(MAX_LOGPROBS),
               "--gpu-memory-utilization", str(GPU_MEMORY_UTILIZATION), "--max-model-len", str(context))
    settings = {"server": "vllm", "tensor_parallel_size": tensor_parallel, "max_model_len": context,
                "gpu_memory_utilization": GPU_MEMORY_UTILIZATION}
    return Recipe("vllm", command, served_name, label or f"vllm tp={tensor_parallel} ctx={context}", settings)


def recipe_for(engine: str, entry: Any, local: Any, here: Callable[[], Any]) -> Recipe:
    """The recipe that serves `entry` (its files at `local`) with `engine`, placed by the plan
    for this machine (`here()` returns its hardware profile; only called when a GPU matters)."""
    from sizer.core.estimate.planning import DEFAULT_CONTEXT, plan_estimate

    if entry.kind != "causal":
        raise SizerError(f"{entry.id} is a {entry.kind} model: --serve runs causal LMs only")
    served = entry.id.split("/")[-1].lower()
    if engine == "llama.cpp":
        if not local.gguf_file:
            raise SizerError(f"{entry.id}: llama.cpp's server runs GGUF files and the files in {local.path} have none; "
                             "give a .gguf file with --model, or use --serve vllm")
        context = min(DEFAULT_CONTEXT, entry.max_context)
        layers = _llamacpp_gpu_layers(entry, local, here) if _has_gpu() else 0
        return llamacpp_recipe(Path(local.path) / local.gguf_file, served, layers, context,
                               label=f"llama.cpp {entry.id} {local.gguf_file} @{local.revision} ngl={layers}")
    require_cuda()
    if local.gguf_file:
        raise SizerError(f"{entry.id}: vLLM serves safetensors checkpoints, not the GGUF {local.gguf_file}; "
                         "use --serve llama.cpp")
    report = plan_estimate(entry, here(), engine="vllm")
    if report.level == "no" or not report.serving:
        raise SizerError(f"{entry.id}: vLLM cannot place it on this machine's GPUs ({report.where}); "
                         "try a smaller model or --serve llama.cpp")
    tp = int(report.serving["tensor_parallel_size"])
    return vllm_recipe(local.path, served, tp, report.context, label=f"vllm {entry.id} @{local.revision} tp={tp}")


def require_cuda() -> None:
    """One line, exit 2, where vLLM cannot run: a machine without CUDA GPUs."""
    if not _has_cuda():
        raise SizerError("--serve vllm: vLLM needs CUDA GPUs and this machine has none; use --serve llama.cpp, "
                         "or --endpoint with a vLLM server on a GPU box")


def _llamacpp_gpu_layers(entry: Any, local: Any, here: Callable[[], Any]) -> int:
    """llama.cpp's -ngl from the plan: the blocks (and the output layer) placed on GPUs."""
    from sizer.core.catalog.from_config import quant_of
    from sizer.core.estimate.planning import plan_estimate

    report = plan_estimate(entry, here(), engine="llama.cpp", dtype=quant_of(local.gguf_file))
    return sum(s.layers + (1 if s.output else 0) for s in report.shares if s.device.kind != "cpu")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available()) and torch.version.hip is None


def _has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available()) or bool(torch.backends.mps.is_available())
