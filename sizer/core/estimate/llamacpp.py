"""llama.cpp: memory and placement of a GGUF model, the way llama.cpp loads it.

- weights: the GGUF file's tensors (`sizer.core.quant.gguf_size`), memory-mapped; the input embedding
  always stays in host memory (llama.cpp's `dev_input` is the CPU), every block and the output
  head go to the device their layer is assigned to;
- KV cache: 2 x kv_heads x head_dim x context x sequences per layer, f16 unless `--kv-cache
  q8_0|q4_0` (llama.cpp's `--cache-type-k/-v`; a quantized V cache needs flash attention), on the
  device of its layer;
- compute buffers (flash attention on, llama.cpp's `-fa auto` where the backend supports it): a GPU
  reserves the worst-case graph, n_ubatch (512, at most the context) x 4 bytes x max(vocab + hidden
  for the logits, 3 x MLP width + 2 x hidden inside a block) on the device holding the output head,
  the block part elsewhere; in host memory only the pages a forward pass touches become resident:
  the block part and the logits of the last token per sequence (measured, bench/estimator_accuracy.py);
- placement: every layer on one GPU when they fit there; otherwise the layers are split across the
  GPUs in proportion to their free memory (llama.cpp's default tensor split) and what the GPUs cannot
  hold stays on the CPU (`--gpu-layers N` forces how many of the last layers and the output go to
  the GPUs, as llama.cpp's `-ngl`). Apple unified memory is one pool: the model runs on the GPU
  when its working set holds it, else on the CPU cores from the same memory, never both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from sizer.core.catalog.entry import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.estimate.memory import CUDA_CONTEXT_BYTES, MIB, MemoryEstimate, Term, fmt_bytes, window_tokens
from sizer.core.quant.gguf_size import GGUFLayout, gguf_layout
from sizer.core.quant.gguf_types import block
from sizer.core.hardware.devices import Device
from sizer.core.quant.precision import Precision

KV_TYPES = ("f16", "q8_0", "q4_0")
UBATCH = 512
# What loading and running a model adds to a process besides tensors, KV cache and compute buffer:
# the ggml contexts, the vocabulary, the thread pool. Measured with llama-cpp-python 0.3 on CPU:
# 35-39 MiB for SmolLM2 135M and 360M (bench/estimator_accuracy.py).
HOST_BASE_BYTES = 36 * MIB


def kv_bytes_per_element(kv_type: str) -> float:
    """Bytes per cached K or V element: f16 2; q8_0 34/32; q4_0 18/32 (GGML block layouts)."""
    if kv_type not in KV_TYPES:
        raise SizerError(f"--kv-cache {kv_type}: use one of {', '.join(KV_TYPES)} (llama.cpp's cache types)")
    n, nbytes = block(kv_type.upper())
    return nbytes / n


@dataclass(frozen=True)
class LlamaParts:
    """What llama.cpp allocates for one model, before placement."""

    layout: GGUFLayout
    kv_total: int
    kv_how: str
    compute_out: int
    compute_block: int
    output_buffer: int
    ubatch: int

    def kv_layer(self, layers: int) -> float:
        return self.kv_total / max(layers, 1)


def llamacpp_parts(entry: ModelEntry, precision: Precision, context: int, batch: int, kv_type: str) -> LlamaParts:
    per = kv_bytes_per_element(kv_type)
    layout = gguf_layout(entry, precision.name if precision.kind == "gguf" else _float_ftype(precision.name))
    tokens, how = window_tokens(entry, context)
    kv = int(2 * entry.kv_heads * entry.head_dim * tokens * batch * per)
    kv_how = f"2 x {entry.kv_heads} kv heads x {entry.head_dim} head dim x {how} x {batch} seq x {per:g} bytes ({kv_type})"
    ub = min(UBATCH, context)
    h, i = entry.hidden_size, entry.intermediate_size
    compute_block = ub * 4 * (3 * i + 2 * h)
    compute_out = max(ub * 4 * (entry.vocab_size + h), compute_block)
    return LlamaParts(layout, kv, kv_how, compute_out, compute_block, batch * entry.vocab_size * 4, ub)


def _float_ftype(name: str) -> str:
    return {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}[name]


def memory_on(parts: LlamaParts, entry: ModelEntry, precision: Precision, context: int, batch: int,
              kind: str, overhead_reserved: bool = False) -> MemoryEstimate:
    """The whole model on one device of `kind` (what `fit` prints per device kind)."""
    lay = parts.layout
    gpu = kind != "cpu"
    repack = 0 if gpu else sum(lay.repack)
    weights = sum(lay.layers) + lay.output + lay.other + (0 if gpu else lay.token_embd - (lay.output if lay.tied else 0))
    weights += repack
    weights_how = (f"GGUF {fmt_bytes(lay.file_bytes)}: {lay.explain(entry.params)}"
                   + ("; the input embedding stays in host memory" if gpu else "")
                   + (f" + {fmt_bytes(repack)} of Q4_0/Q4_K/IQ4_NL matmul weights the CPU backend repacks "
                      "beside the mapped file (the file's pages of those stay resident but are clean: "
                      "the kernel can drop them under memory pressure)" if repack else ""))
    compute = parts.compute_out if gpu else parts.compute_block + parts.output_buffer
    if gpu:
        compute_how = (f"compute buffer n_ubatch {parts.ubatch} x 4 bytes x max({entry.vocab_size:,} vocab + "
                       f"{entry.hidden_size} hidden, 3 x {entry.intermediate_size} + 2 x {entry.hidden_size})")
    else:
        compute_how = (f"compute buffer, pages touched: n_ubatch {parts.ubatch} x 4 bytes x (3 x "
                       f"{entry.intermediate_size} + 2 x {entry.hidden_size}) + logits {batch} x {entry.vocab_size:,} x 4 bytes")
    if gpu and overhead_reserved:
        overhead = Term("runtime overhead", 0, "already reserved: the device's free memory excludes the runtime")
    elif gpu:
        overhead = Term("runtime overhead", CUDA_CONTEXT_BYTES, "GPU runtime context, ~0.5 GiB")
    else:
        overhead = Term("runtime overhead", HOST_BASE_BYTES, "ggml contexts, vocabulary, thread pool: ~36 MiB (measured)")
    return MemoryEstimate(
        device_kind=kind, precision=precision, context=context, batch=batch,
        weights=Term("weights", weights, weights_how),
        kv_cache=Term("kv cache", parts.kv_total, parts.kv_how),
        activations=Term("activations", compute, compute_how),
        load_transient=Term("load transient", 0, "none: the GGUF file is memory-mapped, its pages are the weights"),
        overhead=overhead,
    )


@dataclass(frozen=True)
class Placed:
    """One device's share: blocks, whether it holds the output head, and the bytes it needs."""

    device: Device
    layers: int
    output: bool
    weight_bytes: int   # weights held (and read per token, except the host's input embedding)
    read_bytes: int     # weights read per generated token
    kv_bytes: int
    need_bytes: int
    usable_bytes: int

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.usable_bytes


def _gpu_share(parts: LlamaParts, device: Device, layer_ids: Sequence[int], output: bool, usable: int,
               overhead: int) -> Placed:
    lay = parts.layout
    n = len(lay.layers) or 1
    w = sum(lay.layers[i] for i in layer_ids) + (lay.output + lay.other if output else 0)
    kv = int(parts.kv_layer(n) * len(layer_ids))
    compute = parts.compute_out if output else (parts.compute_block if layer_ids else 0)
    need = w + kv + compute + (overhead if (layer_ids or output) else 0)
    return Placed(device, len(layer_ids), output, w, w, kv, need, usable)


def _cpu_share(parts: LlamaParts, device: Device, layer_ids: Sequence[int], output: bool, usable: int) -> Placed:
    lay, n = parts.layout, len(parts.layout.layers)
    embd = lay.token_embd
    w = embd + sum(lay.layers[i] for i in layer_ids) + (0 if not output else (0 if lay.tied else lay.output) + lay.other)
    repack = sum(lay.repack[i] for i in layer_ids) if lay.repack else 0
    read = w - embd + (lay.output if output and lay.tied else 0)  # a token reads one embedding row only
    kv = int(parts.kv_layer(n) * len(layer_ids))
    compute = parts.compute_block if layer_ids else 0
    need = w + repack + kv + compute + parts.output_buffer + HOST_BASE_BYTES
    return Placed(device, len(layer_ids), output, w, read, kv, need, usable)


def split_counts(n_items: int, free: Sequence[int]) -> list[int]:
    """How llama.cpp deals `n_items` consecutive layers to devices in proportion to `free`:
    item k goes to the first device whose cumulative share exceeds k / n_items."""
    total = float(sum(free)) or 1.0
    bounds, acc = [], 0.0
    for f in free:
        acc += f
        bounds.append(acc / total)
    counts = [0] * len(free)
    for k in range(n_items):
        x = k / n_items
        counts[next((j for j, b in enumerate(bounds) if b > x), len(free) - 1)] += 1
    return counts


@dataclass(frozen=True)
class LlamaPlacement:
    level: str
    where: str
    shares: tuple[Placed, ...]
    gpu_layers: int  # blocks + output offloaded (llama.cpp's -ngl count)


def place(parts: LlamaParts, devices: Sequence[Device], usable: Callable[[Device], int], gpu_layers: int | None,
          overhead_reserved: bool) -> LlamaPlacement:
    """Where llama.cpp puts the layers on `devices` (see the module docstring)."""
    n_layers = len(parts.layout.layers)
    items = n_layers + 1
    gpus = sorted((d for d in devices if d.kind != "cpu"), key=lambda d: (-d.free_bytes, d.name))
    cpus = [d for d in devices if d.kind == "cpu"]
    overhead = 0 if overhead_reserved else CUDA_CONTEXT_BYTES
    unified = any(d.kind == "mps" for d in gpus)
    if gpu_layers is not None and gpu_layers < 0:
        raise SizerError(f"--gpu-layers {gpu_layers}: must be 0 or more (llama.cpp's -ngl)")
    forced = None if gpu_layers is None else min(gpu_layers, items)
    if gpus and forced in (None, items):
        for g in sorted(gpus, key=lambda d: (-usable(d), d.name)):
            share = _gpu_share(parts, g, range(n_layers), True, usable(g), overhead)
            host = _cpu_share(parts, cpus[0], (), False, usable(cpus[0])) if cpus else None
            if share.fits and (host is None or host.fits or unified):
                shares = (share,) + ((host,) if host and not unified else ())
                return LlamaPlacement("fits", g.name, shares, items)
    if gpus and not unified and forced != 0:
        candidates = [forced] if forced is not None else range(items, 0, -1)
        for n in candidates:
            placed = _split(parts, gpus, cpus, usable, n, overhead)
            if placed is not None:
                return placed
        if forced:
            return LlamaPlacement("no", f"--gpu-layers {forced} does not fit the GPUs' free memory", (), forced)
    if cpus:
        share = _cpu_share(parts, cpus[0], range(n_layers), True, usable(cpus[0]))
        if share.fits:
            return LlamaPlacement("fits-cpu", cpus[0].name, (share,), 0)
    return LlamaPlacement("no", "", (), 0)


def _split(parts: LlamaParts, gpus: Sequence[Device], cpus: Sequence[Device], usable: Callable[[Device], int],
           n: int, overhead: int) -> LlamaPlacement | None:
    n_layers = len(parts.layout.layers)
    items = n_layers + 1
    start = items - n  # llama.cpp offloads the last n of blocks 0..n_layers-1 and the output (index n_layers)
    counts = split_counts(n, [g.free_bytes for g in gpus])
    shares, k = [], start
    for g, c in zip(gpus, counts):
        ids = list(range(k, min(k + c, n_layers)))
        holds_out = k + c > n_layers
        k += c
        if ids or holds_out:
            share = _gpu_share(parts, g, ids, holds_out, usable(g), overhead)
            if not share.fits:
                return None
            shares.append(share)
    cpu_ids = list(range(0, start if start <= n_layers else n_layers))
    if not cpus:
        return None if cpu_ids else LlamaPlacement("fits", _where(shares), tuple(shares), n)
    host = _cpu_share(parts, cpus[0], cpu_ids, start == items, usable(cpus[0]))
    if not host.fits:
        return None
    level = "fits" if not cpu_ids else "split"
    return LlamaPlacement(level, _where(shares + ([host] if cpu_ids else [])), tuple(shares + [host]), n)


def _where(shares: Sequence[Placed]) -> str:
    parts = [f"{s.device.name}: {s.layers} layers" + (" + output" if s.output and s.device.kind != "cpu" else "")
             for s in shares]
    return ", ".join(parts)
