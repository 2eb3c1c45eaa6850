"""Mixture-of-experts: which weights are always used and which only by the experts a token picks.

Memory holds every expert; a decode step reads the always-used weights (attention, embeddings and
head, norms, routers, shared experts, dense MLPs) plus the `experts_per_token` routed experts of
each MoE layer. A routed expert is a gated MLP: gate and up (hidden x width each) and down
(width x hidden), 3 x hidden x width weights. Its biases (gpt-oss has them) stay in the
always-used part: at most a few million parameters.
"""

from __future__ import annotations

from sizer.core.catalog.entry import ModelEntry
from sizer.core.quant.precision import BNB_BITS, Precision, gguf_type_bits

# MXFP4 (OCP Microscaling): 32 FP4 (E2M1) values share one E8M0 scale, 17 bytes per 32 weights
# (4.25 bits), as GGML's MXFP4 type and transformers' *_blocks/*_scales tensors store it.
MXFP4_BITS = gguf_type_bits("MXFP4")


def expert_params(entry: ModelEntry) -> tuple[int, int]:
    """(weights of all routed experts, weights of the experts one token uses), over all MoE layers.

    moe_layers x experts x 3 x hidden x width, and the same with experts_per_token; (0, 0) for a
    dense model.
    """
    if not entry.is_moe:
        return 0, 0
    per_expert = 3 * entry.hidden_size * entry.expert_intermediate_size
    return entry.moe_layers * entry.experts * per_expert, entry.moe_layers * entry.experts_per_token * per_expert


def active_params(entry: ModelEntry) -> int:
    """Parameters one token uses: all of them minus the routed experts it does not pick."""
    total, active = expert_params(entry)
    return entry.params - total + active


def expert_weight_bytes(entry: ModelEntry, precision: Precision, packed_gguf: bool = False) -> int:
    """Bytes of all routed experts' weights at `precision` (0 for a dense model).

    `packed_gguf`: a GGUF type held packed, as llama.cpp does (gate/up at the mix's base type, down
    with the mix's higher type in its share of layers); otherwise a GGUF type is de-quantized to
    the compute dtype, as transformers does. bitsandbytes quantizes expert linears like any other.
    """
    total, _ = expert_params(entry)
    if not total:
        return 0
    if precision.kind == "gguf" and packed_gguf:
        return int(total * _gguf_expert_bits(entry, precision.name) / 8)
    if precision.kind == "bnb":
        return int(total * BNB_BITS[precision.name] / 8)
    if precision.kind == "prequant" and entry.quant_method == "mxfp4":
        return int(total * MXFP4_BITS / 8)
    return total * precision.compute_bytes


def _gguf_expert_bits(entry: ModelEntry, quant: str) -> float:
    """Mean bits per block weight in a GGUF of `entry` typed as llama-quantize does
    (`sizer.core.quant.gguf_size`); expert tensors take the types of the block tensors they mirror."""
    from sizer.core.estimate.params import param_groups
    from sizer.core.quant.gguf_size import gguf_layout

    return sum(gguf_layout(entry, quant).layers) * 8 / max(param_groups(entry).linear, 1)


def decode_read_bytes(entry: ModelEntry, weight_bytes: int, expert_bytes: int) -> int:
    """Weight bytes one decode step reads: everything but the routed experts, and of those
    experts_per_token / experts."""
    if not expert_bytes or not entry.experts:
        return weight_bytes
    return weight_bytes - expert_bytes + expert_bytes * entry.experts_per_token // entry.experts


def shipped_weight_bytes(entry: ModelEntry) -> tuple[int, str] | None:
    """Bytes of a pre-quantized MoE checkpoint as published, and how; None when the entry's
    `quant_method` is not one this module knows.

    mxfp4 (gpt-oss): the routed experts in MXFP4, everything else (attention, embeddings, head,
    router, norms, expert biases: transformers' `modules_to_not_convert`) in the checkpoint dtype.
    """
    if entry.quant_method != "mxfp4" or not entry.is_moe:
        return None
    experts, _ = expert_params(entry)
    rest = entry.params - experts
    rest_bytes = 4 if entry.torch_dtype == "float32" else 2
    total = int(experts * MXFP4_BITS / 8) + rest * rest_bytes
    how = (
        f"{experts:,} routed-expert params x {MXFP4_BITS}/8 bytes (MXFP4) + {rest:,} other params x "
        f"{rest_bytes} bytes ({entry.torch_dtype})"
    )
    return total, how
