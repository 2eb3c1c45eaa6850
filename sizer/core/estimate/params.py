"""A model's parameters by role (embeddings, head, attention, MLP), from its config fields, and
the float dtype its checkpoint is published in. The low floor the memory, MoE and GGUF estimates
all build on."""

from __future__ import annotations

from dataclasses import dataclass

from sizer.core.catalog.entry import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.quant.precision import parse_precision


@dataclass(frozen=True)
class ParamGroups:
    """The parameter count split by tensor role (totals over all layers)."""

    embed: int
    head: int  # untied output head; 0 when tied or for encoders
    attn_qo: int
    attn_k: int
    attn_v: int
    ffn_up: int  # gate + up (or the single up projection of a non-gated MLP); every expert of a MoE
    ffn_down: int
    other: int  # norms, biases, position embeddings, pooler: params minus everything above

    @property
    def linear(self) -> int:
        return self.attn_qo + self.attn_k + self.attn_v + self.ffn_up + self.ffn_down


def is_gated_mlp(entry: ModelEntry) -> bool:
    """Decoder LMs use a gated MLP (gate, up, down); BERT-style encoders a plain one (up, down)."""
    return entry.kind != "encoder"


def mlp_widths(entry: ModelEntry) -> int:
    """Sum over layers of the MLP widths a layer holds: intermediate_size in a dense layer; every
    routed and shared expert's width in a MoE layer. gate+up and down weights are this x hidden."""
    if not entry.is_moe:
        return entry.layers * entry.intermediate_size
    dense_layers = entry.layers - entry.moe_layers
    per_moe_layer = entry.experts * entry.expert_intermediate_size
    per_moe_layer += entry.shared_experts * entry.shared_expert_intermediate_size
    return dense_layers * entry.intermediate_size + entry.moe_layers * per_moe_layer


def param_groups(entry: ModelEntry) -> ParamGroups:
    """Split the exact count by role from the architecture fields; the rest is `other`."""
    h, layers = entry.hidden_size, entry.layers
    q_dim, kv_dim = entry.heads * entry.head_dim, entry.kv_heads * entry.head_dim
    embed = entry.vocab_size * h
    head = 0 if (entry.tied_embeddings or entry.kind == "encoder") else entry.vocab_size * h
    attn_qo, attn_k, attn_v = layers * 2 * h * q_dim, layers * h * kv_dim, layers * h * kv_dim
    widths = mlp_widths(entry)  # MoE layers hold every expert
    ffn_up = h * widths * (2 if is_gated_mlp(entry) else 1)
    ffn_down = h * widths
    groups = ParamGroups(embed, head, attn_qo, attn_k, attn_v, ffn_up, ffn_down, 0)
    other = entry.params - embed - head - groups.linear
    if other >= 0:
        return ParamGroups(embed, head, attn_qo, attn_k, attn_v, ffn_up, ffn_down, other)
    # The fields over-count (an architecture this split does not know): scale the blocks to fit.
    scale = max(entry.params - embed - head, 0) / groups.linear
    parts = [int(x * scale) for x in (attn_qo, attn_k, attn_v, ffn_up, ffn_down)]
    return ParamGroups(embed, head, *parts, 0)


def checkpoint_float(entry: ModelEntry) -> str:
    """The float dtype the safetensors checkpoint is published in ("bf16", "fp32", ...)."""
    try:
        return parse_precision(entry.torch_dtype).compute
    except SizerError:
        return "fp32"
