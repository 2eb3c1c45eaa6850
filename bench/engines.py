"""Engines side by side: transformers fp32 vs llama.cpp at the GGUF file's own quantization.

    .venv/bin/python bench/engines.py [--task examples/banking.toml] [--limit 40] [--shots N]
        [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--threads N] [--json]

One few-shot classify trial per engine on the same task, model (the shipped SmolLM2-135M Q4_1
GGUF: transformers de-quantizes it to fp32, llama.cpp runs it as Q4_1), seed and test examples.
Each trial runs through `run_trial` in a fresh process with an empty trial cache, so nothing is
reused. Per engine it prints examples/s (the trial's scoring phase, after load) and the
process's peak resident set (`ru_maxrss`: the high-water mark of the whole child, imports and
load included), then llama.cpp / transformers ratios and how often the two predictions agree.
Nothing is asserted; the targets (llama.cpp peak RSS <= 1/3 of transformers fp32, examples/s >=)
are compared in the last lines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("transformers", "llama.cpp")


def child(payload: dict) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    sys.path.insert(0, str(ROOT))
    from sizer.core.results.store import TrialStore
    from sizer.core.task.spec import load_task
    from sizer.core.trials.trial import run_trial
    from sizer.core.trials.types import TrialSpec

    task = load_task(payload["task"])
    store = TrialStore.open(Path(payload["dir"]) / "trials.sqlite")
    spec = TrialSpec(model=payload["model"], strategy="few-shot", shots=payload["shots"], limit=payload["limit"],
                     device="cpu", dtype="fp32" if payload["engine"] == "transformers" else None,
                     engine=payload["engine"])
    result = run_trial(task, spec, store)
    done = store.done_examples(result.key)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({
        "engine": payload["engine"], "metric": result.metric.value, "metric_name": result.metric.name,
        "n": result.metric.n, "examples_per_s": result.speed["examples_per_s"], "seconds": result.speed["seconds"],
        "load_s": result.speed["load_s"], "peak_rss_bytes": rss, "settings": result.settings,
        "predictions": {i: r["prediction"] for i, r in done.items()},
    }))


def run_engine(engine: str, args: argparse.Namespace, workdir: str) -> dict:
    payload = {"engine": engine, "task": args.task, "model": args.model, "limit": args.limit, "shots": args.shots,
               "dir": tempfile.mkdtemp(dir=workdir)}
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(payload)], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default=str(ROOT / "examples" / "banking.toml"))
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--shots", type=int, default=None, help="demonstrations per label (default: sizer's auto)")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both children")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        results = {engine: run_engine(engine, args, workdir) for engine in ENGINES}
    hf, lc = results["transformers"], results["llama.cpp"]
    common = sorted(set(hf["predictions"]) & set(lc["predictions"]))
    agree = sum(hf["predictions"][i] == lc["predictions"][i] for i in common)
    summary = {
        "rss_ratio": lc["peak_rss_bytes"] / hf["peak_rss_bytes"],
        "speed_ratio": lc["examples_per_s"] / max(hf["examples_per_s"], 1e-9),
        "agreement": agree / max(len(common), 1), "agree": agree, "compared": len(common),
    }
    if args.json:
        for r in results.values():
            r.pop("predictions")
        print(json.dumps({"engines": results, **summary}, indent=2))
        return 0
    print(f"task {args.task}, model {args.model}, few-shot, {len(common)} test examples, CPU")
    print(f"{'engine':<14}{'weights':<9}{'accuracy':>9}{'examples/s':>12}{'peak RSS':>11}{'load s':>8}")
    for engine, r in results.items():
        weights = r["settings"].get("quant") or r["settings"].get("dtype")
        print(f"{engine:<14}{weights:<9}{r['metric']:>9.3f}{r['examples_per_s']:>12.2f}"
              f"{r['peak_rss_bytes'] / 2**20:>8.0f} MiB{r['load_s']:>8.1f}")
    print(f"llama.cpp / transformers: peak RSS x{summary['rss_ratio']:.2f} (target <= 0.33), "
          f"examples/s x{summary['speed_ratio']:.2f} (target >= 1)")
    print(f"same prediction on {agree} of {len(common)} examples ({summary['agreement']:.1%}; target >= 95%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
