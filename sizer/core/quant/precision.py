"""Precisions a model can be held in, and how many bits each weight takes.

Three kinds:
- float dtypes (fp32, bf16, fp16): every parameter takes the dtype's width;
- bitsandbytes (int8, int4): only the linear layers are quantized, everything else (embeddings,
  norms, the output head) stays in bf16, as transformers' bitsandbytes integration does;
- llama.cpp file types (Q4_0, Q6_K, Q4_K_M, IQ3_M, ...; `sizer.core.quant.gguf_types`): each tensor's
  GGML type from llama.cpp's quantizer rules, its bits from the format's block layout
  (`gguf.GGML_QUANT_SIZES`: bytes per block of N weights, scales included).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from sizer.core.errors import SizerError
from sizer.core.quant.gguf_types import FILE_TYPES, type_bits

FLOAT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "f32": "fp32", "f16": "fp16", "half": "fp16"}

# bitsandbytes: int8 = LLM.int8 (1 byte + one fp32 scale per row, negligible); int4 = NF4 with
# double quantization (the QLoRA recipe): 4 bits + an 8-bit absmax per 64 weights + one fp32
# scale per 256 absmax blocks.
BNB_BITS = {"int8": 8.0, "int4": 4.0 + 8 / 64 + 32 / (64 * 256)}


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
        return type_bits(name.upper())
    except KeyError:
        raise SizerError(f"unknown GGML tensor type {name!r}") from None


def gguf_names() -> list[str]:
    """Every GGUF name `--dtype` accepts: llama.cpp's file types, as `llama-quantize` names them."""
    return list(FILE_TYPES)


def with_compute(precision: Precision, compute: str) -> Precision:
    """The same weights, computing in `compute` ("fp32", "bf16", "fp16"): a GGUF file loaded by
    transformers is de-quantized to the dtype the load asks for."""
    return dataclasses.replace(precision, compute=compute)


def parse_precision(text: str, compute: str | None = None) -> Precision:
    """`--dtype` value -> Precision; unknown -> SizerError naming the closest valid names.

    A GGUF file type computes in `compute` when given, else fp32: that is what transformers
    de-quantizes a GGUF file to unless another dtype is asked for.
    """
    key = text.strip()
    low = _ALIASES.get(key.lower(), key.lower())
    if low in FLOAT_BYTES:
        return Precision(low, "float", low)
    if low in BNB_BITS:
        return Precision(low, "bnb", "bf16")
    upper = key.upper()
    if upper in FILE_TYPES:
        return Precision(upper, "gguf", compute or "fp32")
    names = [*FLOAT_BYTES, *BNB_BITS, *FILE_TYPES]
    close = difflib.get_close_matches(upper, [n.upper() for n in names], n=3, cutoff=0.5)
    hint = f"closest: {', '.join(close)}; " if close else ""
    raise SizerError(
        f"unknown dtype {text!r}; {hint}use fp32, bf16, fp16, int8, int4 or a llama.cpp file type "
        f"({', '.join(gguf_names())})"
    )
