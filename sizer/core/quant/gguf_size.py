"""The bytes of a GGUF file of a catalog model, tensor by tensor, as llama.cpp's quantizer writes it.

Every 2-D tensor takes the type `sizer.core.quant.gguf_types.tensor_type` gives it; 1-D tensors (norms,
biases) and anything the architecture fields do not describe stay F32. The result keeps the bytes
per block (layer) apart, because llama.cpp places whole layers on devices.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sizer.core.catalog.entry import ModelEntry
from sizer.core.quant.gguf_types import FILE_TYPES, Shape, tensor_bytes, tensor_type

# ggml's CPU backend copies matmul weights of these types into an interleaved layout at load time
# (the CPU_REPACK buffer: Q4_0 and IQ4_NL 4x4/4x8/8x8, Q4_K 8x8 with AVX2 or ARM NEON), for tensors
# whose row count is a multiple of 8. The copy sits beside the memory-mapped file's pages, which
# stay mapped: measured on a 2-layer SmolLM2-1.7B Q4_K_M (bench/estimator_accuracy.py).
REPACK_TYPES = ("Q4_0", "Q4_K", "IQ4_NL")


@dataclass(frozen=True)
class GGUFLayout:
    ftype: str
    token_embd: int            # bytes of the input embedding (kept in host memory by llama.cpp)
    output: int                # bytes of the output head; for tied embeddings a second copy of
                               # token_embd in the output type, which llama.cpp loads on the output device
    layers: tuple[int, ...]    # bytes of each block's tensors
    other: int                 # 1-D tensors (norms, biases), F32
    tied: bool
    params_by_type: tuple[tuple[str, int], ...]  # GGML type -> weights stored in it
    repack: tuple[int, ...] = ()  # per block: bytes of matmul weights the CPU backend repacks

    @property
    def file_bytes(self) -> int:
        """Tensor data in the file (a tied embedding is stored once)."""
        return self.token_embd + (0 if self.tied else self.output) + sum(self.layers) + self.other

    def explain(self, params: int) -> str:
        parts = ", ".join(f"{t} {n / 1e9:.2f}B" if n >= 1e8 else f"{t} {n / 1e6:.1f}M"
                          for t, n in self.params_by_type)
        bpw = self.file_bytes * 8 / max(params, 1)
        return f"{self.ftype} per tensor as llama-quantize writes it ({parts}) -> {bpw:.2f} bits/weight"


def model_shape(entry: ModelEntry) -> Shape:
    experts = int(getattr(entry, "experts", 0) or 0)
    size_70b = entry.layers == 80 and entry.model_type in ("llama", "qwen2")
    return Shape(entry.layers, max(entry.heads // max(entry.kv_heads, 1), 1), experts, size_70b)


def layer_tensors(entry: ModelEntry) -> list[tuple[str, int, int]]:
    """(role, rows, cols) of one block's 2-D tensors; cols is the row length (GGUF ne[0])."""
    h, i = entry.hidden_size, entry.intermediate_size
    q, kv = entry.heads * entry.head_dim, entry.kv_heads * entry.head_dim
    out = [("attn_q", q, h), ("attn_k", kv, h), ("attn_v", kv, h), ("attn_output", h, q)]
    if entry.kind != "encoder":
        out.append(("ffn_gate", i, h))
    return out + [("ffn_up", i, h), ("ffn_down", h, i)]


def gguf_layout(entry: ModelEntry, ftype: str) -> GGUFLayout:
    """Bytes of `entry` written as llama.cpp file type `ftype` (e.g. "Q4_K_M")."""
    from sizer.core.estimate.params import param_groups

    ftype = ftype.upper()
    if ftype not in FILE_TYPES:
        raise KeyError(ftype)
    shape, g = model_shape(entry), param_groups(entry)
    h, vocab = entry.hidden_size, entry.vocab_size
    counts: Counter[str] = Counter()
    tensors = layer_tensors(entry)
    described = entry.layers * sum(r * c for _, r, c in tensors)
    scale = g.linear / described if described else 1.0  # < 1 only when the fields over-count
    layers, repack = [], []
    for li in range(entry.layers):
        total = packed = 0
        for role, rows, cols in tensors:
            t = tensor_type(ftype, role, li, shape, cols)
            size = tensor_bytes(t, rows, cols)
            total += size
            packed += size if t in REPACK_TYPES and rows % 8 == 0 else 0
            counts[t] += rows * cols
        layers.append(int(total * scale))
        repack.append(int(packed * scale))
    tied = entry.tied_embeddings or entry.kind == "encoder"
    out_type = tensor_type(ftype, "output", 0, shape, h)
    embd_type = out_type if tied else tensor_type(ftype, "token_embd", 0, shape, h)
    token_embd = tensor_bytes(embd_type, vocab, h)
    counts[embd_type] += vocab * h
    output = tensor_bytes(out_type, vocab, h)
    if not tied:
        counts[out_type] += vocab * h
    counts["F32"] += g.other
    by_type = tuple(sorted(counts.items(), key=lambda kv: -kv[1]))
    return GGUFLayout(ftype, token_embd, output, tuple(layers), g.other * 4, tied, by_type, tuple(repack))
