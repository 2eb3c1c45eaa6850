"""`sizer trial TASK --model ID --strategy S`: one model, one strategy, scored with intervals."""

from __future__ import annotations

import argparse
import json
import sys

from sizer.core.engines import engine_name
from sizer.core.errors import SizerError
from sizer.core.events import stream_sink
from sizer.core.trials.strategies import STRATEGIES
from sizer.core.task.spec import load_task
from sizer.core.trials.served import run_trial_spec
from sizer.core.trials.types import TrialResult, TrialSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trial", help="run one model with one strategy on a task and score it")
    p.add_argument("task", help="task TOML file")
    p.add_argument("--model", required=True, help="catalog id or short name, a Hub repo id, a model folder or a .gguf file")
    p.add_argument("--strategy", choices=STRATEGIES, default="few-shot")
    p.add_argument("--shots", type=int, help="demonstrations per label (classify) or in all; default: as many as fit, up to 4 (8 for encoders)")
    p.add_argument("--limit", type=int, help="score at most N test examples (a stratified subset)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best here)")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="default: bf16 on GPUs that support it, else fp32 on CPU")
    p.add_argument("--seed", type=int, help="split and demonstration seed (default: the task's)")
    p.add_argument("--scoring", choices=("centroid", "knn"), default="centroid", help="encoders: how labelled examples vote")
    p.add_argument("--trust-remote-code", action="store_true", help="run model code from its repo (off by default)")
    p.add_argument("--allow-pickle", action="store_true", help="allow .bin/.pt weights (safetensors/GGUF only by default)")
    p.add_argument("--json", action="store_true", help="print the result as JSON; progress as JSON lines on stderr")
    p.add_argument("--engine",
                   help="run the model on transformers (default), llama.cpp (a GGUF file at its own quantization; "
                        "needs pip install 'sizer[llamacpp]'), fake (no weights: exercises the flow), openai (a "
                        "server at --endpoint; implied by it) or an engine another package registers")
    p.add_argument("--quant", default="", metavar="TYPE",
                   help="llama.cpp: the GGUF file type to run, e.g. Q4_1 (default: the model's own file)")
    remote = p.add_argument_group("remote candidate (an OpenAI-compatible server: vLLM, TGI, llama.cpp, Ollama)")
    remote.add_argument("--endpoint", metavar="URL", help="run the model on this server, e.g. http://host:8000/v1")
    remote.add_argument("--served-model", metavar="NAME", help="the model's name in the server's /v1/models (default: --model)")
    remote.add_argument("--api", choices=("completions", "chat"), help="extract/generate through /v1/completions (default) or /v1/chat/completions")
    remote.add_argument("--concurrency", type=int,
                        help="requests in flight at once (default: the server's slots where it says, else 4)")
    remote.add_argument("--serve", metavar="ENGINE", help="start a managed server for the model and stop it after: "
                        "vllm (CUDA GPUs; tensor parallel from the plan) or llama.cpp (a GGUF)")
    remote.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key (default: SIZER_API_KEY, then OPENAI_API_KEY)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.shots is not None and args.shots < 0:
        raise SizerError(f"--shots {args.shots}: give 0 or more demonstrations")
    from sizer.core.engines.serve_launcher import parse_serve_engine

    if args.serve and args.endpoint:
        raise SizerError("--serve starts a server here; --endpoint uses one already running: give one of them")
    serve = parse_serve_engine(args.serve)
    engine = engine_name(args.engine) if args.engine or not args.endpoint else "openai"
    task = load_task(args.task, sink=stream_sink(as_json=args.json))
    spec = TrialSpec(
        model=args.model, strategy=args.strategy, shots=args.shots, limit=args.limit, device=args.device,
        dtype=args.dtype, seed=args.seed, encoder_scoring=args.scoring,
        trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle,
        endpoint=args.endpoint, served_model=args.served_model, endpoint_api=args.api,
        endpoint_concurrency=args.concurrency, endpoint_api_key_env=args.api_key_env, serve=serve,
        engine=engine, quant=args.quant.upper(),
    )
    if spec.quant and spec.engine != "llama.cpp":
        raise SizerError("--quant picks a GGUF file type for --engine llama.cpp; with transformers use --dtype")
    result = run_trial_spec(task, spec, sink=stream_sink(as_json=args.json))
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(result))
    return 0


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def render(result: TrialResult) -> str:
    m = result.metric
    s = result.speed
    lines = [
        f"model     {result.model} ({result.settings.get('dtype')}, {result.memory['device']})",
        f"strategy  {result.strategy}  " + ", ".join(f"{k}={v}" for k, v in result.settings.items()
                                                     if k not in ("device", "dtype")),
        f"split     train {result.split['train']}, test {result.split['test']}",
        f"{m.name:<9} {m.value:.3f}  (95% CI {m.low:.3f}-{m.high:.3f}, {m.method}, n={m.n})",
    ]
    for other in result.other_metrics.values():
        lines.append(f"{other.name:<9} {other.value:.3f}  (95% CI {other.low:.3f}-{other.high:.3f})")
    if s.get("examples_per_s"):
        tokens = f", {s['tokens_per_s']:.0f} tokens/s" if s.get("tokens_per_s") else ""
        lines.append(
            f"speed     {s['examples_per_s']:.1f} examples/s, p50 {s['p50_latency_s'] * 1000:.0f} ms, "
            f"p95 {s['p95_latency_s'] * 1000:.0f} ms per example{tokens}; load {s['load_s']:.1f} s"
            + (" (measured when the trial first ran)" if s.get("measured_earlier") else "")
            + (f"; {s['cached']} predictions from the cache" if s["cached"] else "")
            + (f"; measured {s['measured']}" if s.get("measured") else "")
        )
    else:
        lines.append(f"speed     not measured: all {s['cached']} predictions came from the cache; load {s['load_s']:.1f} s")
    if result.memory["peak_bytes"] is None:
        mem = f"memory    not measured here ({result.memory['measured_by']}: {result.memory['device']})"
    else:
        mem = f"memory    peak {_gib(result.memory['peak_bytes'])} ({result.memory['measured_by']})"
    if result.memory.get("predicted_bytes"):
        mem += f", estimator predicted {_gib(result.memory['predicted_bytes'])}"
    lines.append(mem)
    lines += [f"warning   {w}" for w in result.warnings]
    if result.confusion:
        labels = list(result.confusion)
        width = max(len(l) for l in labels)
        lines.append("confusion (rows: gold, columns: predicted, in label order)")
        for gold in labels:
            lines.append(f"  {gold:<{width}} " + " ".join(f"{result.confusion[gold].get(p, 0):>3}" for p in labels))
    return "\n".join(lines) + "\n"
