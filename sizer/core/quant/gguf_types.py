"""llama.cpp's file types (`llama-quantize` names) and the GGML type each tensor gets in them.

A file type such as Q4_K_M is a mix: most tensors take its default type (Q4_K), some take more bits
(attn_v and ffn_down in about half the layers take Q6_K), the output head takes Q6_K, and 1-D
tensors (norms, biases) stay F32. `tensor_type` follows llama.cpp's `llama_tensor_get_type_impl`
and `tensor_type_fallback` (src/llama-quant.cpp), so the bytes of a GGUF file can be worked out
from the architecture alone. Assumptions: no `--pure`, no per-tensor overrides, and an importance
matrix for the IQ1/IQ2/IQ3 types (they are practically always made with one) but not for others.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

# file type -> the GGML type most tensors take (llama.cpp's `llama_ftype_get_default_type`)
FILE_TYPES: dict[str, str] = {
    "F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q6_K": "Q6_K",
    "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q5_1": "Q5_1", "Q5_0": "Q5_0",
    "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q4_1": "Q4_1", "Q4_0": "Q4_0",
    "Q3_K_L": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_S": "Q3_K", "Q2_K": "Q2_K", "Q2_K_S": "Q2_K",
    "IQ4_XS": "IQ4_XS", "IQ4_NL": "IQ4_NL", "IQ3_M": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_XS": "IQ3_S",
    "IQ3_XXS": "IQ3_XXS", "IQ2_M": "IQ2_S", "IQ2_S": "IQ2_XS", "IQ2_XS": "IQ2_XS", "IQ2_XXS": "IQ2_XXS",
    "IQ1_M": "IQ1_M", "IQ1_S": "IQ1_S", "TQ1_0": "TQ1_0", "TQ2_0": "TQ2_0", "MXFP4": "MXFP4",
}
FLOAT_FILE_TYPES = ("F32", "F16", "BF16")
_IQ_LOW = {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"}
_IMATRIX = _IQ_LOW | {"IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"}
_FALLBACK = {
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL", "Q2_K": "Q4_0", "Q3_K": "Q4_0",
    "TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}


@dataclass(frozen=True)
class Shape:
    """What the type rules need to know about a model: layer count, GQA ratio, experts."""

    layers: int
    gqa: int = 1          # attention heads per KV head
    experts: int = 0      # routed experts per layer; 0 for a dense model
    size_70b: bool = False  # llama.cpp's LLM_TYPE_70B (80-layer Llama/Qwen 2): attn_v gets Q5_K


def block(ggml_type: str) -> tuple[int, int]:
    """(weights per block, bytes per block) of a GGML tensor type."""
    size = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type]]
    return int(size[0]), int(size[1])


def type_bits(ggml_type: str) -> float:
    """Bits per weight of a GGML tensor type, scales included."""
    n, nbytes = block(ggml_type)
    return nbytes * 8 / n


def tensor_bytes(ggml_type: str, rows: int, cols: int) -> int:
    """Bytes of a rows x cols tensor stored as `ggml_type` (cols = ne[0], the row length)."""
    n, nbytes = block(ggml_type)
    return rows * (cols // n) * nbytes


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(ftype: str, role: str, layer: int, shape: Shape, cols: int) -> str:
    """The GGML type llama.cpp gives a 2-D tensor of `role` in file type `ftype`.

    role: "token_embd", "output" (the tied embedding counts as output), "attn_q", "attn_k",
    "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"; `cols` = the tensor's row length.
    """
    default = FILE_TYPES[ftype]
    if ftype in FLOAT_FILE_TYPES:
        return default
    chosen = _mixed_type(ftype, default, role, layer, shape, cols)
    return _fallback(chosen, cols)


def _fallback(chosen: str, cols: int) -> str:
    if cols % block(chosen)[0] == 0:
        return chosen
    other = _FALLBACK.get(chosen, chosen)
    return other if cols % block(other)[0] == 0 else "F16"


def _mixed_type(ftype: str, t: str, role: str, i: int, s: Shape, cols: int) -> str:  # noqa: C901 - llama.cpp's table
    n, e8 = s.layers, s.experts == 8
    if role == "output":
        if ftype == "MXFP4" or cols % block(t)[0] != 0:
            return "Q8_0"
        if ftype in _IQ_LOW or ftype == "IQ3_XXS":
            return "Q5_K"
        return t if t == "Q8_0" else "Q6_K"
    if ftype == "MXFP4":
        return "MXFP4" if s.experts > 1 and role in ("ffn_gate", "ffn_up", "ffn_down") else "Q8_0"
    if role == "token_embd":
        if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        return "Q4_K" if ftype in ("TQ1_0", "TQ2_0") else t
    if ftype in _IQ_LOW:
        high = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
        if role == "attn_v":
            return "Q4_K" if s.gqa >= 4 or s.experts >= 4 else high
        if role == "attn_k" and e8:
            return "Q4_K"
        if role == "ffn_down":
            return high if i < n // 8 else t
        if role == "attn_output":
            if e8:
                return "Q5_K"
            return "IQ2_XXS" if ftype in ("IQ1_S", "IQ1_M") else ("IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else t)
        return t
    if role == "attn_v":
        return _attn_v(ftype, t, i, s)
    if role == "attn_k":
        return "Q8_0" if e8 else {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, t)
    if role == "attn_q":
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, t)
    if role == "ffn_down":
        return _ffn_down(ftype, t, i, s)
    if role == "attn_output":
        if e8:
            five = {"Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"}
            return "Q5_K" if ftype in five else t
        return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "IQ3_M": "Q4_K"}.get(ftype, t)
    if role in ("ffn_gate", "ffn_up") and ftype == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
        return "IQ3_XXS"
    return t


def _attn_v(ftype: str, t: str, i: int, s: Shape) -> str:
    n, gqa = s.layers, s.gqa
    if ftype == "Q2_K":
        t = "Q4_K" if gqa >= 4 else "Q3_K"
    elif ftype == "Q2_K_S" and gqa >= 4:
        t = "Q4_K"
    elif ftype == "IQ3_XXS":
        t = "Q4_K" if gqa >= 4 else "IQ3_XXS"  # with an importance matrix
    elif ftype in ("IQ3_XS", "IQ3_S") and gqa >= 4:
        t = "Q4_K"
    elif ftype == "IQ3_M":
        t = "Q4_K"
    elif ftype == "Q3_K_M":
        t = "Q5_K" if i < 2 else "Q4_K"
    elif ftype == "Q3_K_L":
        t = "Q5_K"
    elif ftype in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
        t = "Q5_K"
    elif ftype in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
        t = "Q6_K"
    elif ftype == "Q4_K_S" and i < 4:
        t = "Q5_K"
    if s.size_70b and t in ("Q3_K", "Q4_K"):
        t = "Q5_K"
    return "Q8_0" if s.experts == 8 else t


def _ffn_down(ftype: str, t: str, i: int, s: Shape) -> str:
    n = s.layers
    if ftype == "Q2_K":
        return "Q3_K"
    if ftype == "Q2_K_S":
        return "Q4_K" if i < n // 8 else t
    if ftype == "Q3_K_M":
        return "Q5_K" if i < n // 16 else "Q4_K"
    if ftype == "IQ3_M" and (i < n // 8 or (s.experts == 8 and _more_bits(i, n))):
        return "Q4_K"
    if ftype == "Q3_K_L":
        return "Q5_K"
    if ftype == "Q4_K_M":
        return "Q6_K" if _more_bits(i, n) else t
    if ftype in ("IQ4_NL", "IQ4_XS") and i < n // 8 and ftype not in _IMATRIX:
        return "Q5_K"
    if ftype == "Q5_K_M" and _more_bits(i, n):
        return "Q6_K"
    if ftype == "Q4_K_S" and i < n // 8:
        return "Q5_K"
    return t
