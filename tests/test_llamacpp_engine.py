"""The llama.cpp trial engine: the engine registry, load arguments from the estimator's placement,
the errors a user can meet (unknown engine, missing extra, a GGUF that does not load), and, with
the shipped SmolLM2-135M Q4_1 file, label log-likelihoods checked against a plain evaluation and
agreement with transformers on the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sizer.cli import main
from sizer.core.engines.llama_cpp_engine import offload_kwargs
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.engines import ENGINES, engine_name, get_engine
from sizer.core.errors import SizerError
from sizer.core.hardware.profile import simulated
from sizer.core.estimate.planning import plan_estimate

ROOT = Path(__file__).resolve().parent.parent
DEMO = str(ROOT / "examples" / "banking.toml")
SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _smol_gguf() -> Path:
    from sizer.core.catalog.resolve import locate

    local = locate(load_catalog().get(SMOL))
    return local.path / local.gguf_file


# ------------------------------------------------------------------ registry


def test_registry_imports_engines_lazily_and_names_the_known_ones():
    assert get_engine("llama.cpp").__name__ == "LlamaCppEngine"
    assert get_engine("llamacpp").__name__ == "LlamaCppEngine"
    assert get_engine(None).__name__ == "TransformersEngine"
    with pytest.raises(SizerError) as err:
        engine_name("tensorrt")
    assert str(err.value) == "--engine tensorrt: unknown engine for trials; use one of transformers, llama.cpp, fake, openai"
    assert set(ENGINES) == {"transformers", "llama.cpp", "fake", "openai"}


def test_trial_with_an_unknown_engine_is_one_line_exit_2(capsys):
    assert main(["trial", DEMO, "--model", SMOL, "--engine", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown engine" in err[0] and "llama.cpp" in err[0]


def test_quant_without_llama_cpp_is_refused(capsys):
    assert main(["trial", DEMO, "--model", SMOL, "--quant", "Q4_1"]) == 2
    assert "--quant" in capsys.readouterr().err


# ------------------------------------------------------------------ placement -> load arguments


def test_whole_model_on_one_gpu_offloads_every_layer_and_the_output():
    # Qwen2.5-32B Q4_K_M at 8192 tokens fits one RTX 4090 (tests/test_engines.py works it out:
    # 21,876,809,728 bytes <= 20.70 GiB usable), so llama.cpp gets -ngl 64 blocks + 1 output = 65,
    # one GPU: no tensor split. Threads: the simulated profile's cores.
    profile = simulated("2x RTX 4090")
    report = plan_estimate(load_catalog().get("Qwen/Qwen2.5-32B-Instruct"), profile, "llama.cpp", "Q4_K_M", 8192)
    kwargs = offload_kwargs(profile, report.shares)
    assert kwargs == {"n_gpu_layers": 65, "n_threads": profile.cpu.physical_cores}


def test_a_model_split_over_two_gpus_gets_llama_cpps_tensor_split():
    # Qwen2.5-32B Q8_0 (~8.5 bits x 32.8e9 weights ~ 32 GiB) cannot fit one 4090 (20.70 GiB usable)
    # but fits two. The estimator deals 65 items (64 blocks + output) by free memory, equal here:
    # item k goes to the first GPU while k < 65 x 1/2 = 32.5 -> items 0..32 (33) on GPU 0, 32 on
    # GPU 1 (blocks 33..63 and the output) -> tensor_split [33, 32], -ngl 65.
    profile = simulated("2x RTX 4090")
    report = plan_estimate(load_catalog().get("Qwen/Qwen2.5-32B-Instruct"), profile, "llama.cpp", "Q8_0", 4096)
    assert report.level == "fits", report.where
    kwargs = offload_kwargs(profile, report.shares)
    assert kwargs["n_gpu_layers"] == 65 and kwargs["tensor_split"] == [33.0, 32.0]


def test_a_partial_offload_keeps_the_first_blocks_on_the_cpu():
    # The same Q8_0 file on one 4090: it cannot hold all 65 items, so the estimator offloads the
    # last n that fit; llama.cpp gets that n as -ngl (the GPU's blocks + its output), no split.
    profile = simulated("1x RTX 4090")
    report = plan_estimate(load_catalog().get("Qwen/Qwen2.5-32B-Instruct"), profile, "llama.cpp", "Q8_0", 4096)
    gpu = [s for s in report.shares if s.device.kind != "cpu"]
    assert report.level == "split" and len(gpu) == 1 and gpu[0].output
    kwargs = offload_kwargs(profile, report.shares)
    assert kwargs["n_gpu_layers"] == gpu[0].layers + 1 < 65 and "tensor_split" not in kwargs


def test_cpu_only_placement_offloads_nothing():
    profile = simulated("16 vCPU 32GB")
    report = plan_estimate(load_catalog().get(SMOL), profile, "llama.cpp", "Q4_1", 2048)
    assert offload_kwargs(profile, report.shares) == {"n_gpu_layers": 0, "n_threads": 16}


# ------------------------------------------------------------------ errors a user can meet


def test_missing_llama_cpp_names_the_extra(tmp_path):
    # llama_cpp is installed here; a child process where importing it fails stands in for a
    # machine without the extra (sys.modules[name] = None makes `import llama_cpp` raise ImportError).
    code = ("import sys; sys.modules['llama_cpp'] = None\n"
            "from sizer.cli import main\n"
            f"sys.exit(main(['trial', {DEMO!r}, '--model', {SMOL!r}, '--engine', 'llama.cpp']))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIZER_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].endswith("install it with `pip install 'sizer[llamacpp]'`") and "Traceback" not in proc.stderr


def test_a_truncated_gguf_is_one_line_exit_2(tmp_path, capsys):
    data = _smol_gguf().read_bytes()
    broken = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    broken.write_bytes(data[: len(data) // 2])
    code = main(["trial", DEMO, "--model", str(broken), "--engine", "llama.cpp", "--limit", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(broken) in err[0] or broken.name in err[0]


def test_quant_that_is_not_here_lists_the_files_there(capsys):
    assert main(["trial", DEMO, "--model", SMOL, "--engine", "llama.cpp", "--quant", "Q8_0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Q8_0 GGUF file" in err and "Q4_1" in err


# ------------------------------------------------------------------ the real model


@pytest.mark.slow
def test_label_loglik_with_the_reused_prefix_equals_one_plain_evaluation():
    import numpy as np

    from sizer.core.engines.llama_cpp import LlamaCppLM, log_softmax_at
    from sizer.core.engines.packing import Request
    from sizer.core.catalog.resolve import locate

    lm = LlamaCppLM.load(locate(load_catalog().get(SMOL)), n_threads=1, n_ctx=512)
    prefix = lm.encode("Sort each message into card or transfer.\nMessage: my card is lost\nLabel: card\n")
    requests = [Request(tuple(lm.encode(f"Message: {t}\nLabel:")), (tuple(lm.encode(" card")), tuple(lm.encode(" transfer"))))
                for t in ("where is my money transfer", "the card never came")]
    scores = lm.score(prefix, requests)
    for request, per_label in zip(requests, scores):
        for cont, got in zip(request.continuations, per_label):
            ids = prefix + list(request.prompt) + list(cont)
            lm._truncate(0)  # a cold cache: one evaluation of the whole sequence
            rows = lm._decode(ids, 0, range(len(ids)))
            lm._ctx.kv_cache_seq_rm(-1, 0, -1)
            want = sum(log_softmax_at(rows[i - 1], ids[i])[0] for i in range(len(ids) - len(cont), len(ids)))
            assert np.isclose(got.logprob, want, atol=1e-3) and got.tokens == len(cont)
    # greedy generation from the shared prefix equals generation from a cold cache
    prompt = prefix + list(requests[0].prompt)
    shared = lm.prefix_cache(prefix)
    warm = lm.generate_ids(prompt, 8, shared)
    lm._truncate(0)
    assert warm == lm.generate_ids(prompt, 8) and len(warm) > 0


@pytest.mark.slow
@pytest.mark.timeout(1500)  # llama.cpp scores one example per decode: ~20 s each on a busy 2-core CPU
def test_llama_cpp_agrees_with_transformers_on_the_demo(tmp_path):
    """The shipped Q4_1 file run by llama.cpp and the same weights de-quantized to fp32 by
    transformers choose the same label on >= 95% of 20 few-shot test examples (19 of 20). The
    bench measures 40 (bench/README.md: 39 of 40)."""
    from sizer.core.results.store import TrialStore
    from sizer.core.task.spec import load_task
    from sizer.core.trials.trial import run_trial
    from sizer.core.trials.types import TrialSpec

    task = load_task(DEMO)
    store = TrialStore.open(tmp_path / "trials.sqlite")
    runs = {engine: run_trial(task, TrialSpec(model=SMOL, limit=20, device="cpu", engine=engine), store)
            for engine in ("transformers", "llama.cpp")}
    hf, lc = runs["transformers"], runs["llama.cpp"]
    assert hf.key != lc.key and lc.settings["engine"] == "llama.cpp" and lc.settings["quant"] == "Q4_1"
    a, b = store.done_examples(hf.key), store.done_examples(lc.key)
    assert len(a) == len(b) == 20
    agree = sum(a[i]["prediction"] == b[i]["prediction"] for i in a)
    assert agree / 20 >= 0.95, f"{agree} of 20"


def test_the_walk_runs_gguf_candidates_on_llama_cpp_only_when_asked():
    from sizer.core.engines import trial_engine

    catalog = load_catalog()
    smol = catalog.get(SMOL)
    assert trial_engine(smol, "few-shot", "llama.cpp") == "llama.cpp"
    assert trial_engine(smol, "zero-shot", "llama.cpp") == "llama.cpp"
    assert trial_engine(smol, "few-shot", None) == "transformers"          # estimates only
    assert trial_engine(smol, "few-shot", "vllm") == "transformers"        # vLLM trials go through --serve
    assert trial_engine(smol, "fine-tune", "llama.cpp") == "transformers"  # llama.cpp does not train
    encoder = next(e for e in catalog.entries if e.kind == "encoder")
    assert trial_engine(encoder, "few-shot", "llama.cpp") == "transformers"


def test_inside_a_run_a_gguf_that_does_not_load_is_an_error_trial_and_the_walk_goes_on(trial_env, tmp_path):
    from conftest import TINY

    from sizer.core.decide.walk import walk
    from sizer.core.decide.types import RunSpec
    from sizer.core.results.store import TrialStore
    from sizer.core.task.spec import load_task

    # A truncated copy is refused when the run reads the candidate's header (one line, see above);
    # this copy reads fine but names a tokenizer llama.cpp does not know, so it fails in the trial.
    data = bytearray(_smol_gguf().read_bytes())
    at = data.index(b"gpt2", data.index(b"tokenizer.ggml.model"))
    data[at:at + 4] = b"gpt9"
    broken = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    broken.write_bytes(bytes(data))
    spec = RunSpec(task=load_task(DEMO), models=(str(broken), TINY), strategies=("zero-shot",), limit=8,
                   engine="llama.cpp", download=False)
    with TrialStore.open(tmp_path / "t.sqlite") as store:
        # the whole grid, so the smaller candidate is tried too (a ladder walk skips sizes below a failure)
        run = walk(spec, store=store, here=simulated("8 vCPU 32GB"), exhaustive=True)
    by_model = {t.model: t for t in run.trials}
    gguf = next(t for m, t in by_model.items() if m.endswith(".gguf"))
    assert gguf.status == "error" and "llama.cpp cannot load" in gguf.reason
    assert by_model[TINY].status in ("ok", "stopped-early")  # the walk went on to the next candidate


def test_a_llama_cpp_trial_never_imports_torch_or_transformers(tmp_path):
    """A GGUF trial on llama.cpp needs neither library: the trial machinery imports them only
    where a transformers model loads (importing transformers alone took 1.6 s here)."""
    code = (
        "import sys\n"
        "from sizer.core.paths import shipped_examples\n"
        "from sizer.core.task.spec import load_task\n"
        "from sizer.core.trials.trial import run_trial\n"
        "from sizer.core.trials.types import TrialSpec\n"
        "spec = TrialSpec(model='HuggingFaceTB/SmolLM2-135M-Instruct', strategy='zero-shot', limit=8, engine='llama.cpp')\n"
        "result = run_trial(load_task(shipped_examples() / 'banking.toml'), spec)\n"
        "print(result.metric.n, sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    env = {**os.environ, "SIZER_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "8 []", out.stdout
