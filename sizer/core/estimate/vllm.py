"""vLLM: tensor parallel size, memory per GPU, and the KV cache pool it leaves.

vLLM takes `gpu_memory_utilization` (0.9 by default) of each GPU's TOTAL memory; from it go the
weights (split over the tensor-parallel ranks: every linear layer, the embedding and the head are
sharded), the activation peak of its profiling run, and the memory outside torch (CUDA context,
NCCL). The rest becomes the paged KV cache, in blocks of 16 tokens. What it logs at start-up, and
what this module reports: the KV cache size in tokens, the maximum concurrency at the context
(pool tokens / context) and the longest context a single sequence can have.

The tensor parallel size is the smallest of 1, 2, 4, 8... not above the GPU count that divides the
attention heads and leaves a KV pool for one sequence at the context (vLLM requires heads % tp == 0;
KV heads are replicated when tp exceeds them). Ranks run in parallel, so decode is bound by the
slowest rank's share; mixed GPUs are limited to the smallest card's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sizer.core.catalog.entry import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.estimate.memory import CUDA_CONTEXT_BYTES, MemoryEstimate, Term, fmt_bytes, weights_term, window_tokens
from sizer.core.hardware.devices import Device
from sizer.core.quant.precision import FLOAT_BYTES, Precision

GPU_MEMORY_UTILIZATION = 0.9
MAX_NUM_BATCHED_TOKENS = 8192  # vLLM's profiling batch (chunked prefill on)
MAX_NUM_SEQS = 256
BLOCK_TOKENS = 16
VLLM_KINDS = ("cuda", "rocm")


@dataclass(frozen=True)
class VllmPlan:
    tp: int
    gpus: tuple[Device, ...]
    memory: MemoryEstimate          # per GPU; kv_cache = the pool
    budget_bytes: int               # gpu_memory_utilization x total, per GPU
    kv_per_token: int               # bytes per token per GPU
    pool_tokens: int
    concurrency: float              # pool tokens / context
    max_context: int                # the longest single sequence (capped at the model's maximum)
    fits: bool
    reason: str = ""


def check_precision(precision: Precision) -> None:
    if precision.kind == "gguf":
        raise SizerError(f"--engine vllm serves safetensors checkpoints (fp16, bf16, AWQ, GPTQ, FP8, bitsandbytes); "
                         f"{precision.name} is a llama.cpp file type: use --engine llama.cpp")


def tp_sizes(entry: ModelEntry, n_gpus: int) -> list[int]:
    """Tensor parallel sizes vLLM accepts for this model on `n_gpus` GPUs, smallest first."""
    sizes, t = [], 1
    while t <= n_gpus:
        if entry.heads % t == 0:
            sizes.append(t)
        t *= 2
    return sizes


def activation_peak(entry: ModelEntry, tp: int, a: int) -> tuple[int, str]:
    """The profiling run's peak: MAX_NUM_BATCHED_TOKENS through a block (MLP 3 x width / tp and
    4 x hidden) plus the sampler's fp32 logits for MAX_NUM_SEQS sequences."""
    t, h, i = MAX_NUM_BATCHED_TOKENS, entry.hidden_size, entry.intermediate_size
    block = t * (4 * h + 3 * i // tp) * a
    logits = MAX_NUM_SEQS * entry.vocab_size * 4
    return block + logits, (f"{t:,} batched tokens x (4 x {h} + 3 x {i} / tp {tp}) x {a} bytes + sampler "
                            f"{MAX_NUM_SEQS} seqs x {entry.vocab_size:,} vocab x 4 bytes")


def kv_per_token(entry: ModelEntry, tp: int, a: int) -> tuple[int, str]:
    kv_heads = max(entry.kv_heads // tp, 1)
    tokens, _ = window_tokens(entry, 1)
    per = 2 * kv_heads * entry.head_dim * tokens * a
    return per, f"2 x {kv_heads} kv heads per GPU x {entry.head_dim} head dim x {tokens} layers x {a} bytes"


def plan(entry: ModelEntry, precision: Precision, context: int, devices: Sequence[Device],
         overhead_reserved: bool = False) -> VllmPlan | None:
    """The smallest workable tensor parallel size and its KV pool; None without CUDA GPUs.
    (`overhead_reserved` does not apply: vLLM's budget is a share of total memory, context included.)"""
    check_precision(precision)
    gpus = tuple(sorted((d for d in devices if d.kind in VLLM_KINDS), key=lambda d: (d.total_bytes, d.name)))
    if not gpus:
        return None
    sizes = tp_sizes(entry, len(gpus))
    plans = [_plan_tp(entry, precision, context, gpus[-t:], t) for t in sizes]
    return next((p for p in plans if p.fits), plans[-1])


def _plan_tp(entry: ModelEntry, precision: Precision, context: int, gpus: tuple[Device, ...], tp: int) -> VllmPlan:
    a = FLOAT_BYTES[precision.compute]
    smallest = min(gpus, key=lambda d: d.total_bytes)
    budget = int(smallest.total_bytes * GPU_MEMORY_UTILIZATION)
    w = weights_term(entry, precision)
    weights = Term("weights", w.bytes // tp, f"({w.formula}) / tp {tp}")
    act, act_how = activation_peak(entry, tp, a)
    # gpu_memory_utilization is a share of TOTAL memory: the CUDA context counts inside it
    outside = CUDA_CONTEXT_BYTES
    overhead = Term("runtime overhead", outside, "CUDA context and NCCL outside torch, ~0.5 GiB")
    pool = max(budget - weights.bytes - act - outside, 0)
    per, per_how = kv_per_token(entry, tp, a)
    tokens = pool // (per * BLOCK_TOKENS) * BLOCK_TOKENS
    kv = Term("kv cache", pool, f"pool = {GPU_MEMORY_UTILIZATION} x {fmt_bytes(smallest.total_bytes)} - weights - "
                                 f"activations - overhead = {tokens:,} tokens at {per:,} bytes each ({per_how})")
    memory = MemoryEstimate(
        device_kind=smallest.kind, precision=precision, context=context, batch=1, weights=weights, kv_cache=kv,
        activations=Term("activations", act, act_how),
        load_transient=Term("load transient", 0, "none: safetensors are loaded shard by shard onto each rank"),
        overhead=overhead,
    )
    fits = tokens >= context and smallest.free_bytes >= budget
    reason = "" if fits else (
        f"free memory {fmt_bytes(smallest.free_bytes)} is below gpu_memory_utilization {GPU_MEMORY_UTILIZATION} x total"
        if smallest.free_bytes < budget else f"KV pool holds {tokens:,} tokens, fewer than the context {context:,}")
    return VllmPlan(tp, gpus, memory, budget, per, tokens, tokens / context, min(tokens, entry.max_context), fits, reason)
