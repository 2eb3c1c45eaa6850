"""Memory a model needs: weights, KV cache, activations, loading transients, training state.

Every figure is a `Term`: the bytes and the arithmetic that produced them, so a user can check it.
The model is transformers' loading and forward path (what sizer's trials run):
- safetensors in the checkpoint's own dtype are memory-mapped, so the weights count once;
  a dtype conversion keeps the mapped file resident while the converted copy is built;
- a GGUF file is de-quantized to float by transformers, so what is resident is float weights,
  plus, while loading, the mapped file and gguf-py's parsed metadata;
- a forward pass keeps a per-layer working set and, for causal LMs, logits for every position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sizer.core.catalog.entry import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.estimate.params import checkpoint_float, is_gated_mlp, param_groups
from sizer.core.quant.precision import BNB_BITS, FLOAT_BYTES, Precision, parse_precision

GIB = 1024**3
MIB = 1024**2
CUDA_CONTEXT_BYTES = int(0.5 * GIB)  # CUDA context and kernels; torch's allocator never sees it
# torch allocates cuBLAS's workspace through its caching allocator: 8 x 4 MiB on Hopper by default
# (CUBLAS_WORKSPACE_CONFIG=:4096:8); older GPUs take less, so this is the upper figure.
CUBLAS_WORKSPACE_BYTES = 32 * MIB
# What loading a model through transformers costs the process besides tensors: module objects,
# the loader's per-tensor records and its worker threads' heaps. Measured on CPU (transformers 5,
# glibc): 11.5 MiB + 0.5 MiB per layer, the same for hidden sizes 576 and 896 and for fp32/bf16.
LOAD_BOOKKEEPING_BYTES = int(11.5 * MIB)
LOAD_BOOKKEEPING_PER_LAYER = MIB // 2
# gguf-py's GGUFReader keeps a numpy view per metadata value part (~680 B each, measured on
# gguf 0.18); a BPE vocabulary has ~5 parts per token: token (2), token type (1), merge (2).
GGUF_READER_BYTES_PER_PART = 680
GGUF_PARTS_PER_VOCAB_ENTRY = 5
# One parse is alive through the load: sizer.core.engines.gguf_parse hands transformers' later
# parses the first one.
ADAPTER_BYTES_PER_PARAM = 16  # fp32 weight + fp32 grad + two fp32 AdamW moments


@dataclass(frozen=True)
class Term:
    """One figure of the estimate and the arithmetic behind it."""

    name: str
    bytes: int
    formula: str


@dataclass(frozen=True)
class MemoryEstimate:
    """Inference memory on one kind of device ("cpu", "cuda", "mps")."""

    device_kind: str
    precision: Precision
    context: int
    batch: int
    weights: Term
    kv_cache: Term
    activations: Term
    load_transient: Term
    overhead: Term
    notes: tuple[str, ...] = ()

    @property
    def steady_bytes(self) -> int:
        return self.weights.bytes + self.kv_cache.bytes + self.activations.bytes

    @property
    def peak_bytes(self) -> int:
        """Allocator-level peak: the larger of loading and a forward pass (overhead excluded)."""
        return max(self.weights.bytes + self.load_transient.bytes, self.steady_bytes)

    @property
    def total_bytes(self) -> int:
        """What the device must have free: peak plus runtime overhead."""
        return self.peak_bytes + self.overhead.bytes

    @property
    def measured_bytes(self) -> int:
        """The figure a measurement in the process sees: on CPU the resident-set increment holds the
        loading bookkeeping too; on CUDA torch's allocator never sees the context."""
        return self.total_bytes if self.device_kind == "cpu" else self.peak_bytes

    @property
    def terms(self) -> list[Term]:
        return [self.weights, self.kv_cache, self.activations, self.load_transient, self.overhead]


@dataclass(frozen=True)
class TrainingEstimate:
    mode: str  # "full", "lora" or "qlora"
    terms: tuple[Term, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.terms)


def fmt_bytes(n: float) -> str:
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / MIB:.1f} MiB"


def gguf_file_bytes(entry: ModelEntry, quant: str) -> tuple[int, str]:
    """Size of a GGUF file of `entry` in llama.cpp file type `quant`, and the per-tensor types behind it."""
    from sizer.core.quant.gguf_size import gguf_layout

    layout = gguf_layout(entry, quant)
    return layout.file_bytes, layout.explain(entry.params)


def prequant_weights(entry: ModelEntry) -> Term:
    """Bytes of a pre-quantized checkpoint (its config.json `quantization_config`) as loaded."""
    from sizer.core.estimate.experts import shipped_weight_bytes
    from sizer.core.quant.prequant import quantized_bits

    shipped = shipped_weight_bytes(entry)  # MXFP4 quantizes the routed experts only
    if shipped is not None:
        return Term("weights", *shipped)
    g = param_groups(entry)
    bits, how = quantized_bits(entry.quant_method, entry.quant_bits, entry.quant_group_size)
    source = checkpoint_float(entry)
    rest = entry.params - g.linear
    total = int(g.linear * bits / 8 + rest * FLOAT_BYTES[source])
    return Term(
        "weights",
        total,
        f"{g.linear:,} quantized linear params x {bits:.3f}/8 bytes ({entry.quant_method}: {how})"
        f" + {rest:,} other params x {FLOAT_BYTES[source]} bytes ({source}: embeddings, head, norms as stored)",
    )


def weights_term(entry: ModelEntry, precision: Precision) -> Term:
    """Resident weight bytes for the precision, as loaded by transformers."""
    p = entry.params
    if precision.kind == "prequant":
        return prequant_weights(entry)
    if precision.kind == "float":
        size = FLOAT_BYTES[precision.name]
        return Term("weights", p * size, f"{p:,} params x {size} bytes ({precision.name})")
    if precision.kind == "bnb":
        g = param_groups(entry)
        bits = BNB_BITS[precision.name]
        rest = p - g.linear
        total = int(g.linear * bits / 8 + rest * 2)
        return Term(
            "weights",
            total,
            f"{g.linear:,} linear params x {bits:.3f}/8 bytes ({precision.name}, bitsandbytes)"
            f" + {rest:,} other params x 2 bytes (bf16: embeddings, norms, head stay unquantized)",
        )
    size = precision.compute_bytes
    file_bytes, how = gguf_file_bytes(entry, precision.name)
    return Term(
        "weights",
        p * size,
        f"{p:,} params x {size} bytes: transformers de-quantizes the {precision.name} GGUF to "
        f"{precision.compute} (file ~{fmt_bytes(file_bytes)}; {how})",
    )


def window_tokens(entry: ModelEntry, context: int) -> tuple[int, str]:
    """Tokens held in the KV cache summed over layers; sliding-window layers are capped."""
    sliding = min(entry.sliding_layers, entry.layers) if entry.sliding_window else 0
    full = entry.layers - sliding
    total = full * context + sliding * min(context, entry.sliding_window)
    if sliding:
        how = f"({full} layers x {context:,} + {sliding} sliding layers x {min(context, entry.sliding_window):,})"
    else:
        how = f"{entry.layers} layers x {context:,} tokens"
    return total, how


def kv_cache_term(entry: ModelEntry, context: int, batch: int, dtype_bytes: int) -> Term:
    """2 (K and V) x kv_heads x head_dim x tokens-over-layers x batch x bytes."""
    if entry.kind == "encoder":
        return Term("kv cache", 0, "none (encoder: no generation cache)")
    tokens, how = window_tokens(entry, context)
    total = 2 * entry.kv_heads * entry.head_dim * tokens * batch * dtype_bytes
    return Term(
        "kv cache",
        total,
        f"2 x {entry.kv_heads} kv heads x {entry.head_dim} head dim x {how} x batch {batch} x {dtype_bytes} bytes",
    )


def layer_working_set(entry: ModelEntry, context: int, batch: int, a: int, attention: str) -> tuple[int, str]:
    """Bytes alive inside one block during a no-grad forward pass: the larger of its two phases.

    attention: residual, normed input, q/k/v, rotated q/k, attention output (+ scores or mask);
    MLP, gated (pre-norm decoders): residual, normed input, output, act(gate), up and their product;
    plain (post-norm encoders): the layer's input and the attention output with up and act(up),
    then, at the closing add-and-norm, those two with act(up), the projection, the sum and its norm.
    """
    tokens = batch * context
    h = entry.hidden_size
    qkv = (entry.heads + 2 * entry.kv_heads) * entry.head_dim
    rope = (entry.heads + entry.kv_heads) * entry.head_dim if entry.kind != "encoder" else 0
    mlp_width, mlp_how = _mlp_width(entry)
    if attention == "eager":
        extra = batch * entry.heads * context * context * (a + 4)  # scores + fp32 softmax
        extra_how = f"scores {batch} x {entry.heads} heads x {context:,}^2 x ({a}+4) bytes"
    elif entry.kind == "encoder":
        extra = batch * context * context * a  # additive padding mask in the compute dtype
        extra_how = f"padding mask {batch} x {context:,}^2 x {a} bytes"
    else:
        extra = batch * context * context  # the boolean causal mask the sdpa path builds
        extra_how = f"mask {batch} x {context:,}^2 x 1 byte"
    attn = tokens * (3 * h + qkv + rope) * a + extra
    mlp = tokens * mlp_width * a
    how = (
        f"max(attention {tokens:,} tokens x (3x{h} + {qkv} qkv + {rope} rope) x {a} bytes + {extra_how}, "
        f"mlp {tokens:,} tokens x ({mlp_how}) x {a} bytes)"
    )
    return max(attn, mlp), how


def _mlp_width(entry: ModelEntry) -> tuple[int, str]:
    """Per-token elements alive at the MLP's peak (see layer_working_set), and how."""
    h, i = entry.hidden_size, entry.intermediate_size
    if is_gated_mlp(entry):
        return 3 * h + 3 * i, f"3x{h} + 3x{i}"
    return max((2 * h + 2 * i, f"2x{h} + 2x{i}"), (5 * h + i, f"5x{h} + {i}"))


def activations_term(
    entry: ModelEntry, context: int, batch: int, a: int, device_kind: str, attention: str = "sdpa"
) -> Term:
    """Peak working set of one forward pass at `context` x `batch`.

    Causal LMs compute logits for every position (batch x context x vocab x bytes), as scoring does;
    encoders end in mean pooling. On CPU, glibc keeps freed blocks in its heap: once a large block
    is freed, its dynamic mmap threshold rises and later blocks of that size come from the heap,
    where the next layer cannot reuse all of the previous layer's holes. The resident set then
    holds about one and a half layers' working sets (measured over decoders and encoders, fp32 and
    bf16; one with the threshold pinned), and the head comes on top of them. torch's CUDA caching
    allocator reuses blocks, so there the larger of one working set and the head counts.
    """
    layer, how = layer_working_set(entry, context, batch, a, attention)
    tokens = batch * context
    if entry.kind == "encoder":
        # mean pooling: last hidden state, the mask expanded to it, and their product
        logits = 3 * tokens * entry.hidden_size * a
        logits_how = f"pooling 3 x {tokens:,} tokens x {entry.hidden_size} hidden x {a} bytes"
    else:
        logits = tokens * entry.vocab_size * a
        logits_how = f"logits {tokens:,} tokens x {entry.vocab_size:,} vocab x {a} bytes"
    if device_kind == "cpu":
        return Term("activations", layer * 3 // 2 + logits,
                    f"{logits_how} + 1.5 x layer working set, freed blocks kept in the C heap ({how})")
    if device_kind == "cuda":
        total = max(layer, logits) + CUBLAS_WORKSPACE_BYTES
        return Term("activations", total, f"max({logits_how}, layer working set: {how}) + cuBLAS workspace 32 MiB")
    return Term("activations", max(layer, logits), f"max({logits_how}, layer working set: {how})")


def load_transient_term(entry: ModelEntry, precision: Precision, device_kind: str) -> Term:
    """Extra bytes alive only while loading (on top of the resident weights)."""
    if precision.kind == "gguf":
        file_bytes, _ = gguf_file_bytes(entry, precision.name)
        parts = GGUF_PARTS_PER_VOCAB_ENTRY * entry.vocab_size
        meta = parts * GGUF_READER_BYTES_PER_PART
        if device_kind != "cpu":
            return Term("load transient", 0, "none on the GPU: tensors are de-quantized on the host, then copied")
        return Term(
            "load transient",
            file_bytes + meta,
            f"GGUF file mapped while de-quantizing ({fmt_bytes(file_bytes)}) + gguf-py metadata "
            f"{GGUF_PARTS_PER_VOCAB_ENTRY} x {entry.vocab_size:,} vocab entries x {GGUF_READER_BYTES_PER_PART} bytes "
            "(parsed once for the tokenizer, the config and the tensors)",
        )
    source = checkpoint_float(entry)
    if precision.kind == "prequant":
        return Term("load transient", 0, "none: the quantized safetensors are loaded as stored")
    if precision.kind == "float" and precision.name == source:
        return Term("load transient", 0, f"none: the {source} safetensors are memory-mapped in place")
    src_bytes = FLOAT_BYTES[source]
    if device_kind == "cpu":
        return Term(
            "load transient",
            entry.params * src_bytes,
            f"{source} checkpoint mapped while converting: {entry.params:,} params x {src_bytes} bytes",
        )
    return Term("load transient", 0, f"none on the GPU: tensors are converted from {source} on the host, then copied")


def overhead_term(entry: ModelEntry, device_kind: str, reserved: bool = False) -> Term:
    if device_kind == "cuda" and reserved:
        return Term("runtime overhead", 0, "already reserved: the device's free memory excludes the CUDA context")
    if device_kind == "cuda":
        return Term("runtime overhead", CUDA_CONTEXT_BYTES, "CUDA context + cuBLAS workspace, ~0.5 GiB")
    if device_kind == "cpu":
        return Term(
            "runtime overhead",
            LOAD_BOOKKEEPING_BYTES + entry.layers * LOAD_BOOKKEEPING_PER_LAYER,
            f"loading bookkeeping (module objects, loader records and threads): 11.5 MiB + {entry.layers} layers x 0.5 MiB",
        )
    return Term("runtime overhead", 0, "none counted: the framework's own memory is not part of the model's increment")


def inference_memory(
    entry: ModelEntry,
    precision: Precision,
    context: int,
    batch: int = 1,
    device_kind: str = "cpu",
    attention: str = "sdpa",
    overhead_reserved: bool = False,
) -> MemoryEstimate:
    """Inference memory of `entry` at `context` x `batch` on a device of `device_kind`.

    `overhead_reserved`: the device's free figure already excludes the CUDA context (simulated GPUs).
    """
    check_shape(context, batch)
    a = precision.compute_bytes
    notes = []
    if precision.kind == "gguf":
        notes.append(
            f"{precision.name} is a GGUF type: loaded through transformers it is de-quantized to "
            f"{precision.compute}; llama.cpp would keep it packed (~{fmt_bytes(gguf_file_bytes(entry, precision.name)[0])})"
        )
    if precision.kind == "bnb" and device_kind == "cpu":
        notes.append("bitsandbytes int8/int4 need a GPU; the CPU figure assumes they load anyway")
    return MemoryEstimate(
        device_kind=device_kind,
        precision=precision,
        context=context,
        batch=batch,
        weights=weights_term(entry, precision),
        kv_cache=kv_cache_term(entry, context, batch, a),
        activations=activations_term(entry, context, batch, a, device_kind, attention),
        load_transient=load_transient_term(entry, precision, device_kind),
        overhead=overhead_term(entry, device_kind, overhead_reserved),
        notes=tuple(notes),
    )


def check_shape(context: int, batch: int) -> None:
    if context <= 0:
        raise SizerError(f"--context {context}: must be a positive number of tokens")
    if batch <= 0:
        raise SizerError(f"--batch {batch}: must be a positive number of sequences")


def lora_params(entry: ModelEntry, rank: int) -> int:
    """Adapter parameters: rank x (in + out) for every linear layer of every block."""
    h, i = entry.hidden_size, entry.intermediate_size
    q_dim, kv_dim = entry.heads * entry.head_dim, entry.kv_heads * entry.head_dim
    shapes = [(h, q_dim), (h, kv_dim), (h, kv_dim), (q_dim, h), (h, i), (i, h)]
    if is_gated_mlp(entry):
        shapes.append((h, i))
    return entry.layers * rank * sum(a + b for a, b in shapes)


def training_activations_term(entry: ModelEntry, context: int, batch: int, a: int) -> Term:
    """Activations saved for backward, gradient checkpointing off.

    Per block and token: ~8 hidden-size tensors (norm inputs/outputs, residuals, attention output),
    q/k/v and their rotated copies, and the MLP's intermediate tensors (4 gated, 2 plain); plus
    the loss head: logits in the compute dtype, their fp32 copy for cross-entropy, and its gradient.
    """
    tokens = batch * context
    h, i = entry.hidden_size, entry.intermediate_size
    qkv = (entry.heads + 2 * entry.kv_heads) * entry.head_dim
    mlp = (4 if is_gated_mlp(entry) else 2) * i
    per_layer = tokens * (8 * h + 2 * qkv + mlp) * a
    head = tokens * entry.vocab_size * (a + 8) if entry.kind != "encoder" else 0
    return Term(
        "activations",
        entry.layers * per_layer + head,
        f"{entry.layers} layers x {tokens:,} tokens x (8x{h} + 2x{qkv} + {mlp}) x {a} bytes"
        + (f" + logits {tokens:,} x {entry.vocab_size:,} x ({a}+4+4) bytes" if head else ""),
    )


def training_memory(
    entry: ModelEntry, precision: Precision, context: int, batch: int, mode: str, lora_rank: int = 16
) -> TrainingEstimate:
    """Memory of one training step: full fine-tuning (AdamW), LoRA or QLoRA (4-bit base)."""
    check_shape(context, batch)
    p = entry.params
    if mode == "full":
        if precision.kind != "float":
            raise SizerError(f"--dtype {precision.name}: full fine-tuning needs fp32, bf16 or fp16; use QLoRA for a quantized base")
        a = precision.compute_bytes
        terms = [Term("weights", p * a, f"{p:,} x {a} bytes"), Term("gradients", p * a, f"{p:,} x {a} bytes")]
        if a < 4:
            terms.append(Term("fp32 master weights", p * 4, f"{p:,} x 4 bytes (mixed precision)"))
        terms.append(Term("AdamW moments", p * 8, f"{p:,} x 2 moments x 4 bytes (fp32)"))
        terms.append(training_activations_term(entry, context, batch, a))
        return TrainingEstimate("full", tuple(terms))
    if mode not in ("lora", "qlora"):
        raise SizerError(f"unknown training mode {mode!r}; use full, lora or qlora")
    base = parse_precision("int4") if mode == "qlora" else (precision if precision.kind == "float" else parse_precision("bf16"))
    adapters = lora_params(entry, lora_rank)
    terms = [
        Term("frozen weights", weights_term(entry, base).bytes, weights_term(entry, base).formula),
        Term(
            "adapters + grads + AdamW",
            adapters * ADAPTER_BYTES_PER_PARAM,
            f"{adapters:,} adapter params (rank {lora_rank} on q,k,v,o,gate,up,down) x 16 bytes (fp32 weight, grad, 2 moments)",
        ),
        training_activations_term(entry, context, batch, base.compute_bytes),
    ]
    return TrainingEstimate(mode, tuple(terms))
