"""Pre-quantized checkpoints: what a config.json's `quantization_config` says, and the bytes it implies.

Only the linear layers of the blocks are quantized (transformers and vLLM keep embeddings, the
output head and norms in the checkpoint's float dtype unless told otherwise). Per quantized
weight: `bits`, plus per group of `group_size` weights one fp16 scale and, for asymmetric
schemes, one packed zero point of `bits`:
- AWQ (AutoAWQ GEMM/GEMV, zero_point true): qweight int32-packed, scales fp16 and qzeros packed
  per group -> bits + (16 + bits) / group_size;
- GPTQ: the same layout (scales fp16, qzeros packed; g_idx adds 4 bytes per input channel, under
  0.01 bit per weight, left out);
- compressed-tensors (llm-compressor): `config_groups.*.weights` num_bits, group_size or strategy
  channel/tensor, symmetric -> no zero point;
- FP8 (quant_method "fp8"): 8 bits + one fp32 scale per 128x128 block (or per tensor);
- bitsandbytes: LLM.int8 (8 bits) or NF4 with double quantization (`sizer.core.quant.precision.BNB_BITS`);
- MXFP4 (gpt-oss): only the routed experts, 4-bit values + one 8-bit scale per 32
  (`sizer.core.estimate.experts.shipped_weight_bytes`).
"""

from __future__ import annotations

from typing import Any

from sizer.core.quant.precision import BNB_BITS, Precision

METHODS = ("awq", "gptq", "bitsandbytes", "fp8", "compressed-tensors", "mxfp4")
SCALE_BITS = 16


def read_quantization_config(qc: Any) -> tuple[str, int, int] | None:
    """(method, bits, group size) from a `quantization_config` dict; None when absent or unknown."""
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method", "")).lower()
    if method == "bitsandbytes" or qc.get("load_in_4bit") or qc.get("load_in_8bit"):
        return "bitsandbytes", 4 if qc.get("load_in_4bit") else 8, 64 if qc.get("load_in_4bit") else 0
    if method in ("awq", "gptq"):
        bits = int(qc.get("bits", qc.get("w_bit", 4)))
        group = int(qc.get("group_size", qc.get("q_group_size", 128)))
        return method, bits, max(group, 0)
    if method == "mxfp4":
        return "mxfp4", 4, 32
    if method == "fp8":
        block = qc.get("weight_block_size") or [0, 0]
        return "fp8", 8, int(block[0]) * int(block[1])
    if method == "compressed-tensors":
        for group in (qc.get("config_groups") or {}).values():
            weights = (group or {}).get("weights") or {}
            if weights.get("num_bits"):
                size = weights.get("group_size") if weights.get("strategy", "group") == "group" else 0
                return "compressed-tensors", int(weights["num_bits"]), int(size or 0)
    return None


def prequant_precision(entry: Any, compute: str | None = None) -> Precision:
    """The Precision of a pre-quantized entry: named for its method and bits, computing in the
    checkpoint's float dtype (AWQ and GPTQ checkpoints are published in fp16)."""
    from sizer.core.estimate.params import checkpoint_float

    name = entry.quant_method if entry.quant_method in ("fp8", "mxfp4") else f"{entry.quant_method}-int{entry.quant_bits}"
    return Precision(name, "prequant", compute or checkpoint_float(entry))


def quantized_bits(method: str, bits: int, group: int, symmetric: bool = False) -> tuple[float, str]:
    """Bits per quantized weight, scales and zero points included, and how."""
    if method == "bitsandbytes":
        b = BNB_BITS["int4" if bits == 4 else "int8"]
        return b, f"{b:.3f} (bitsandbytes {'NF4 + double quantization' if bits == 4 else 'LLM.int8'})"
    if method == "fp8":
        extra = 32 / group if group else 0.0
        return 8 + extra, "8 + one fp32 scale per " + (f"{group:,} weights" if group else "tensor")
    if not group:
        return float(bits), f"{bits} (one scale per row)"
    zero = 0 if (symmetric or method == "compressed-tensors") else bits
    extra = (SCALE_BITS + zero) / group
    how = f"{bits} + (16-bit scale" + (f" + {bits}-bit zero point" if zero else "") + f") / {group} weights"
    return bits + extra, how
