"""The ladder walk against the exhaustive grid, on the same task, candidates and strategies.

Prints how many trials each ran (and how many examples each scored), the recommendation each
picked, and the ratio. Target (DESIGN.md): the walk runs <= 50% of the grid's trials and picks the
same recommendation.

    .venv/bin/python bench/search_efficiency.py [--task examples/banking.toml] [--limit 80]
        [--models ID,ID] [--strategies zero-shot,few-shot,rag,fine-tune] [--json]

Both runs use a fresh trial cache of their own, so neither reuses the other's predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def run_once(exhaustive: bool, args: argparse.Namespace) -> dict:
    from sizer.core.decide.walk import walk
    from sizer.core.decide.types import RunSpec
    from sizer.core.results.store import TrialStore
    from sizer.core.trials.strategies import STRATEGIES
    from sizer.core.task.spec import load_task

    strategies = tuple(args.strategies.split(",")) if args.strategies else STRATEGIES
    models = tuple(args.models.split(",")) if args.models else None
    spec = RunSpec(task=load_task(args.task), models=models, strategies=strategies, limit=args.limit)
    with tempfile.TemporaryDirectory() as cache, TrialStore.open(os.path.join(cache, "trials.sqlite")) as store:
        began = time.perf_counter()
        run = walk(spec, store=store, exhaustive=exhaustive)
        seconds = time.perf_counter() - began
    ran = [t for t in run.trials if t.status not in ("skipped",)]
    rec = run.recommendation
    return {
        "mode": "grid" if exhaustive else "walk",
        "trials": len(ran),
        "examples_scored": sum(t.result.speed.get("scored", 0) for t in ran if t.result),
        "seconds": round(seconds, 1),
        "recommendation": f"{rec.model} {rec.strategy}" if rec.met else "none met the target",
        "trial_list": [f"{t.model.split('/')[-1]} {t.strategy} {t.status}" for t in run.trials],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="examples/banking.toml")
    parser.add_argument("--limit", type=int, default=80)
    parser.add_argument("--models")
    parser.add_argument("--strategies")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    walk_r, grid_r = run_once(False, args), run_once(True, args)
    summary = {"walk": walk_r, "grid": grid_r, "trial_ratio": round(walk_r["trials"] / grid_r["trials"], 3),
               "same_recommendation": walk_r["recommendation"] == grid_r["recommendation"]}
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
        return 0
    for r in (walk_r, grid_r):
        print(f"{r['mode']:<5} {r['trials']:>3} trials  {r['examples_scored']:>5} examples scored  "
              f"{r['seconds']:>7.1f} s  -> {r['recommendation']}")
        for line in r["trial_list"]:
            print(f"        {line}")
    print(f"walk/grid trials: {summary['trial_ratio']:.2f} (target <= 0.50); "
          f"same recommendation: {'yes' if summary['same_recommendation'] else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
