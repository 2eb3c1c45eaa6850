"""Precisions a model can be held in, and how many bits each weight takes.

Three kinds:
- float dtypes (fp32, bf16, fp16): every parameter takes the dtype's width;
- bitsandbytes (int8, int4): only the linear layers are quantized, everything else (embeddings,
  norms, the output head) stays in bf16, as transformers' bitsandbytes integration does;
- GGUF types (Q4_0, Q6_K, ...) and llama.cpp's mixes (Q4_K_M, ...): bits per weight from the
  format's block layout (`gguf.GGML_QUANT_SIZES`: bytes per block of N weights, scales included).
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from sizer.core.errors import SizerError

FLOAT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "f32": "fp32", "f16": "fp16", "half": "fp16"}

# bitsandbytes: int8 = LLM.int8 (1 byte + one fp32 scale per row, negligible); int4 = NF4 with
# double quantization (the QLoRA recipe): 4 bits + an 8-bit absmax per 64 weights + one fp32
# scale per 256 absmax blocks.
BNB_BITS = {"int8": 8.0, "int4": 4.0 + 8 / 64 + 32 / (64 * 256)}


@dataclass(frozen=True)
class GGUFMix:
    """llama.cpp's per-tensor choice for a named file type (simplified, see `GGUF_MIXES`).

    `more_bits` applies to attn_v and ffn_down in about half the layers (llama.cpp's
    `use_more_bits`: the first and last eighth, and every third layer between).
    """

    base: str
    output: str            # output.weight, or token_embd.weight when the embeddings are tied
    attn_v: str = ""       # "" = base
    ffn_down: str = ""     # "" = base
    attn_o: str = ""       # "" = base
    more_bits_share: float = 0.5  # share of layers whose attn_v / ffn_down get the higher type


# Assumption (stated in `sizer fit`): a simplification of llama.cpp's `llama_tensor_get_type`.
GGUF_MIXES: dict[str, GGUFMix] = {
    "Q2_K": GGUFMix("Q2_K", "Q6_K", attn_v="Q4_K", ffn_down="Q3_K", more_bits_share=1.0),
    "Q3_K_S": GGUFMix("Q3_K", "Q6_K"),
    "Q3_K_M": GGUFMix("Q3_K", "Q6_K", attn_v="Q4_K", ffn_down="Q4_K", attn_o="Q4_K"),
    "Q3_K_L": GGUFMix("Q3_K", "Q6_K", attn_v="Q5_K", ffn_down="Q5_K", attn_o="Q5_K", more_bits_share=1.0),
    "Q4_K_S": GGUFMix("Q4_K", "Q6_K", ffn_down="Q5_K", more_bits_share=0.125),
    "Q4_K_M": GGUFMix("Q4_K", "Q6_K", attn_v="Q6_K", ffn_down="Q6_K"),
    "Q5_K_S": GGUFMix("Q5_K", "Q6_K"),
    "Q5_K_M": GGUFMix("Q5_K", "Q6_K", attn_v="Q6_K", ffn_down="Q6_K"),
}
# Pure types whose output tensor llama.cpp still stores as Q6_K.
_OUTPUT_Q6K = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q3_K"}


@dataclass(frozen=True)
class Precision:
    """What the user asked for with `--dtype`. `compute` is the float dtype activations use."""

    name: str   # "bf16", "int4", "Q4_K_M", ...
    kind: str   # "float", "bnb" or "gguf"
    compute: str  # "fp32", "bf16" or "fp16"

    @property
    def compute_bytes(self) -> int:
        return FLOAT_BYTES[self.compute]


def gguf_type_bits(name: str) -> float:
    """Bits per weight of one GGML tensor type, from the format's block size and bytes per block."""
    try:
        qtype = GGMLQuantizationType[name.upper()]
    except KeyError:
        raise SizerError(f"unknown GGUF tensor type {name!r}; known: {', '.join(gguf_names())}") from None
    block, nbytes = GGML_QUANT_SIZES[qtype]
    return nbytes * 8 / block


def gguf_names() -> list[str]:
    """Every GGUF name `--dtype` accepts: the plain tensor types and llama.cpp's mixes."""
    plain = [t.name for t in GGML_QUANT_SIZES if t.name not in ("I8", "I16", "I32", "I64", "F64")]
    return sorted(set(plain) | set(GGUF_MIXES))


def gguf_mix(name: str) -> GGUFMix:
    """The per-tensor type choice for a GGUF file type; a plain type is used for every tensor."""
    upper = name.upper()
    if upper in GGUF_MIXES:
        return GGUF_MIXES[upper]
    gguf_type_bits(upper)  # raises for unknown names
    return GGUFMix(upper, "Q6_K" if upper in _OUTPUT_Q6K else upper)


def valid_dtypes() -> list[str]:
    return [*FLOAT_BYTES, *BNB_BITS, "<GGUF type: " + ", ".join(gguf_names()) + ">"]


def parse_precision(text: str) -> Precision:
    """`--dtype` value -> Precision; unknown -> SizerError listing the valid ones.

    A GGUF type computes in fp32: that is what transformers de-quantizes a GGUF file to unless
    another dtype is asked for.
    """
    key = text.strip()
    low = _ALIASES.get(key.lower(), key.lower())
    if low in FLOAT_BYTES:
        return Precision(low, "float", low)
    if low in BNB_BITS:
        return Precision(low, "bnb", "bf16")
    upper = key.upper()
    if upper in GGUF_MIXES or upper in {n.upper() for n in gguf_names()}:
        return Precision(upper, "gguf", "fp32")
    raise SizerError(
        f"unknown dtype {text!r}; use fp32, bf16, fp16, int8, int4 or a GGUF type ({', '.join(gguf_names())})"
    )
