"""`sizer run TASK`: walk the size ladder and recommend a model and an adaptation, headless.

stdout carries the recommendation only; progress goes to stderr. Exit 0 with a recommendation,
1 when nothing meets the target, 2 on bad input, 130 on interrupt (the partial report is written).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sizer.core.engines.endpoints import normalize_url
from sizer.core.errors import SizerError
from sizer.core.events import stream_sink
from sizer.core.hardware.profile import simulated
from sizer.core.results.report import ReportWriter, read_report, to_dict, trials_from_report
from sizer.core.decide.walk import walk
from sizer.core.decide.types import RemoteModel, RunSpec
from sizer.core.results.store import TrialStore
from sizer.core.trials.strategies import STRATEGIES
from sizer.core.task.spec import load_task
from sizer.commands.show import render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="walk the model sizes and recommend a model and an adaptation")
    p.add_argument("task", nargs="?", help="task TOML file (not needed with --resume)")
    p.add_argument("--models", help="comma-separated catalog ids or short names, Hub repo ids, model folders or .gguf files "
                   "(default: the whole catalog)")
    p.add_argument("--family", help="only this catalog family")
    p.add_argument("--strategies", help=f"comma-separated, cheapest first (default: {','.join(STRATEGIES)})")
    p.add_argument("--target", type=float, help="absolute metric to reach (overrides the task's target)")
    p.add_argument("--budget", help="time budget, e.g. 10m, 90s, 1h (default: the task's)")
    p.add_argument("--download-budget", metavar="GB",
                   help="download at most this much (decimal GB) of missing candidates (default: the task's "
                        "[budget] download_gb)")
    p.add_argument("--no-download", action="store_true",
                   help="walk only the models already on this machine; download nothing")
    p.add_argument("--profile", help="also report fit and speed on this machine, e.g. \"1x H100 80GB\" or a file")
    p.add_argument("--limit", type=int, help="score at most N test examples per trial")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--engine", help="the engine candidates' memory and speed estimates assume: transformers "
                   "(default), llama.cpp or vllm; under llama.cpp, candidates with a GGUF file here also run "
                   "their zero-/few-shot trials (and quantization rungs) on llama.cpp. Any other trial engine "
                   "(`sizer trial --engine`) runs the trials it can and is estimated as it declares")
    p.add_argument("--serve", metavar="ENGINE", help="run the causal LM candidates on a managed server that sizer "
                   "starts and stops for each: vllm (CUDA GPUs) or llama.cpp (GGUF files); zero-shot and few-shot only")
    p.add_argument("--endpoint", help="also walk a model served at this OpenAI-compatible URL (e.g. http://gpu-box:8000/v1)")
    p.add_argument("--served-model", help="the name the server serves it under (default: --endpoint-model)")
    p.add_argument("--endpoint-model", help="catalog id of the served weights (places it on the ladder by size)")
    p.add_argument("--out", help="write the TOML report here (atomically, after every trial)")
    p.add_argument("--resume", metavar="REPORT", help="continue the walk recorded in an earlier report")
    p.add_argument("--json", action="store_true", help="print the report as JSON; progress as JSON lines")
    p.set_defaults(func=run)


def _run_engine(name: str | None) -> str | None:
    """`--engine`: an engine sizes are estimated for (transformers, llama.cpp, vllm), or another
    registered trial engine (sizer.core.engines), which runs the trials it can."""
    from sizer.core.engines import get_engine, registered
    from sizer.core.estimate.planning import parse_engine

    key = (name or "").strip().lower()
    if key and key not in ("transformers", "llama.cpp") and key in registered():
        if not get_engine(key).capabilities.measured_here:
            raise SizerError(f"--engine {name}: a run reaches a model a server serves with --endpoint URL "
                             "--endpoint-model ID, or starts one with --serve")
        return key
    return parse_engine(name)


def parse_budget(text: str | None) -> float | None:
    """"10m" / "90s" / "1h" / "15" (minutes) -> minutes."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise SizerError(f"--budget {text!r}: use a positive duration like 90s, 10m or 1h")
    value, unit = float(match.group(1)), match.group(2) or "m"
    return value * {"s": 1 / 60, "m": 1, "h": 60}[unit]


def parse_download_budget(text: str | None) -> float | None:
    """"5" / "0.5" (decimal GB) -> GB; 0 downloads nothing."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise SizerError(f"--download-budget {text}: give the most to download in GB, 0 or more (e.g. 5)")
    return value


def _split_list(text: str | None) -> tuple[str, ...] | None:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else None


def spec_from_args(args: argparse.Namespace, sink) -> tuple[RunSpec, dict | None]:
    previous = read_report(args.resume) if args.resume else None
    if previous is not None:
        saved = previous.get("run", {})
        args.task = args.task or previous["task"].get("path")
        args.models = args.models or ",".join(saved.get("models", [])) or None
        args.family = args.family or saved.get("family")
        args.strategies = args.strategies or ",".join(saved.get("strategies", [])) or None
        args.target = args.target if args.target is not None else saved.get("target")
        args.limit = args.limit if args.limit is not None else saved.get("limit")
        args.profile = args.profile or saved.get("profile")
        for remote in saved.get("remote", [])[:1]:
            args.endpoint = args.endpoint or remote["url"]
            args.endpoint_model = args.endpoint_model or remote["model"]
            args.served_model = args.served_model or remote.get("served_model")
        args.out = args.out or args.resume
        if args.download_budget is None and saved.get("download_budget_gb") is not None:
            args.download_budget = str(saved["download_budget_gb"])
        args.engine = args.engine or saved.get("engine")
        args.serve = args.serve or saved.get("serve")
        if args.budget is None and saved.get("budget_minutes"):
            args.budget = f"{saved['budget_minutes']}m"
    if not args.task:
        raise SizerError("give a task file (sizer run TASK.toml) or --resume REPORT")
    if previous is not None and not Path(args.task).is_file():
        raise SizerError(f"{args.resume}: the report's task {args.task} is not there; give it: "
                         f"sizer run TASK.toml --resume {args.resume}")
    if args.models and args.family:
        raise SizerError("use --models or --family, not both")
    strategies = _split_list(args.strategies) or STRATEGIES
    for s in strategies:
        if s not in STRATEGIES:
            raise SizerError(f"--strategies: unknown strategy {s!r}; use some of {', '.join(STRATEGIES)}")
    if args.limit is not None and args.limit <= 0:
        raise SizerError(f"--limit {args.limit}: give a positive number of examples")
    if args.target is not None and not 0 < args.target <= 1:
        raise SizerError(f"--target {args.target}: give a metric between 0 and 1")
    engine = _run_engine(args.engine)
    from sizer.core.engines.serve_launcher import parse_serve_engine

    serve = parse_serve_engine(getattr(args, "serve", None))
    if serve == "vllm":
        from sizer.core.engines.serve_launcher import require_cuda

        require_cuda()
    engine = engine or serve
    if bool(args.endpoint) != bool(args.endpoint_model):
        raise SizerError("--endpoint and --endpoint-model go together: the URL and the catalog id of the served weights")
    download_budget = parse_download_budget(args.download_budget)
    if args.endpoint:
        normalize_url(args.endpoint)  # a bad URL fails now, not after the local trials
    remote = (RemoteModel(args.endpoint_model, args.endpoint, args.served_model),) if args.endpoint else ()
    task = load_task(args.task, sink=sink)
    spec = RunSpec(remote=remote, task=task, models=_split_list(args.models), family=args.family, strategies=strategies,
                   limit=args.limit, target=args.target, budget_minutes=parse_budget(args.budget),
                   profile=simulated(args.profile) if args.profile else None, device=args.device, dtype=args.dtype,
                   download=not args.no_download, download_budget_gb=download_budget, engine=engine,
                   serve=serve)
    return spec, previous


def run(args: argparse.Namespace) -> int:
    sink = stream_sink(as_json=args.json)
    spec, previous = spec_from_args(args, sink)
    if args.out and Path(args.out).is_dir():
        raise SizerError(f"--out {args.out} is a folder; give a file path such as rec.toml")
    report = ReportWriter(args.out, sink) if args.out else None
    with TrialStore.open(sink=sink) as store:
        reuse = trials_from_report(previous, spec.task, store) if previous else []
        try:
            result = walk(spec, store=store, sink=report or sink, reuse=reuse)
        except KeyboardInterrupt:
            if report is not None and report.written:
                print(f"sizer: interrupted; partial report in {args.out} (continue with --resume {args.out})", file=sys.stderr)
            raise
    data = to_dict(result)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(data))
        if args.out:
            print(f"report written to {args.out}", file=sys.stderr)
    return 0 if result.recommendation.met else 1
