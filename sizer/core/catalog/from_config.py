"""config.json + card fields -> `ModelEntry`, through the installed transformers.

The transformers config class fills keys a config.json leaves out (the Hub's Gemma 3 files list
only non-default keys), and the exact parameter count comes from building the checkpoint's own
model class on the meta device, so no weights are read.
"""

from __future__ import annotations

import re
from typing import Any

from sizer.core.catalog.entry import GGUFRepo, ModelEntry
from sizer.core.errors import SizerError


def config_object(config: dict[str, Any]) -> Any:
    """The transformers config for `config`, so that class defaults fill absent keys."""
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise SizerError(
            f"transformers {_transformers_version()} does not know model_type {model_type!r}; "
            "upgrade transformers or leave the model out"
        )
    return CONFIG_MAPPING[model_type].from_dict(dict(config))


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def transformers_knows(config: dict[str, Any]) -> bool:
    """Whether the installed transformers can build the model that `config` describes."""
    import transformers
    from transformers import CONFIG_MAPPING

    architecture = (config.get("architectures") or [""])[0]
    return config.get("model_type") in CONFIG_MAPPING and (
        not architecture or hasattr(transformers, architecture)
    )


def _model_class(config: dict[str, Any], kind: str) -> Any:
    import transformers

    architecture = (config.get("architectures") or [""])[0]
    if architecture and hasattr(transformers, architecture):
        return getattr(transformers, architecture)
    return transformers.AutoModelForCausalLM if kind == "causal" else transformers.AutoModel


def count_parameters(config: dict[str, Any], kind: str) -> int:
    """Exact parameter count: the model built from `config` on the meta device (no weights).

    The class is the checkpoint's own (`architectures[0]`), so multimodal models count their
    vision tower too; tied embeddings count once.
    """
    import torch

    cfg = config_object(config)
    cls = _model_class(config, kind)
    with torch.device("meta"):
        model = cls.from_config(cfg) if cls.__name__.startswith("Auto") else cls(cfg)
    return int(model.num_parameters())


def _dtype_name(config: dict[str, Any], card: dict[str, Any]) -> str:
    """The config's dtype; else the card's `torch_dtype` (read from the Hub's safetensors metadata
    where a config names none, as gpt-oss's does); else transformers' default, float32."""
    text = config.get("text_config") or {}
    for source in (config, text):
        for key in ("dtype", "torch_dtype"):
            if isinstance(source.get(key), str):
                return source[key]
    return str(card.get("torch_dtype", "float32"))


def _first(obj: Any, *names: str) -> int:
    """The first of the attributes `names` that `obj` sets to a positive number, else 0."""
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def _moe_fields(text: Any, layers: int) -> dict[str, int]:
    """Mixture-of-experts fields from a text config (all 0 for a dense model).

    Key names differ by family: Qwen2/3-MoE `num_experts`, `moe_intermediate_size`,
    `decoder_sparse_step`, `mlp_only_layers` (Qwen2-MoE: one shared expert of
    `shared_expert_intermediate_size`); Mixtral and gpt-oss `num_local_experts`, the expert width
    being `intermediate_size`; DeepSeek `n_routed_experts`, `n_shared_experts` (of the expert width),
    `first_k_dense_replace`, `moe_layer_freq`.
    """
    experts = _first(text, "num_experts", "num_local_experts", "n_routed_experts")
    if not experts:
        return {}
    width = _first(text, "moe_intermediate_size", "intermediate_size")
    shared = _first(text, "n_shared_experts")
    shared_width = width if shared else _first(text, "shared_expert_intermediate_size")
    shared = shared or (1 if shared_width else 0)
    dense = set(getattr(text, "mlp_only_layers", None) or [])
    step = _first(text, "decoder_sparse_step", "interleave_moe_layer_step") or 1  # Qwen, Llama 4
    first_sparse = _first(text, "first_k_dense_replace")
    freq = _first(text, "moe_layer_freq") or 1
    moe_layers = sum(
        1 for i in range(layers) if i not in dense and (i + 1) % step == 0 and i >= first_sparse and i % freq == 0
    )
    return {
        "experts": experts,
        "experts_per_token": _first(text, "num_experts_per_tok", "experts_per_token"),
        "expert_intermediate_size": width,
        "shared_experts": shared,
        "shared_expert_intermediate_size": shared_width,
        "moe_layers": moe_layers,
    }


def _sliding(text_cfg: Any, layers: int, max_context: int) -> tuple[int, int]:
    """(window, layers using it). `layer_types` covers Gemma 3's local/global pattern and Qwen's
    `use_sliding_window`; a null window, or one no shorter than the context, is full attention."""
    window = getattr(text_cfg, "sliding_window", None) or 0
    if getattr(text_cfg, "use_sliding_window", True) is False:
        window = 0
    if not window or window >= max_context:
        return 0, 0
    layer_types = getattr(text_cfg, "layer_types", None)
    if layer_types:
        count = sum(1 for t in layer_types if t == "sliding_attention")
        return (window, count) if count else (0, 0)
    return window, layers


def entry_from_config(repo_id: str, config: dict[str, Any], card: dict[str, Any]) -> ModelEntry:
    """Build an entry from a verbatim config.json and the model's card fields (see cards.toml).

    Absent config keys take the transformers config class's defaults (the Hub's Gemma 3 files
    list only non-default keys). A card `params` value, when present, is used instead of
    building the model again.
    """
    kind = card.get("kind", "causal")
    cfg = config_object(config)
    text = cfg.get_text_config()
    layers = int(text.num_hidden_layers)
    heads = int(text.num_attention_heads)
    hidden = int(text.hidden_size)
    max_context = int(getattr(text, "max_position_embeddings", 0) or 0)
    window, sliding_layers = _sliding(text, layers, max_context)
    return ModelEntry(
        id=repo_id,
        family=card["family"],
        kind=kind,
        params=int(card["params"]) if "params" in card else count_parameters(config, kind),
        published_params=float(card.get("published_params", 0.0)),
        model_type=str(text.model_type or config.get("model_type", "")),
        layers=layers,
        hidden_size=hidden,
        intermediate_size=int(getattr(text, "intermediate_size", 0) or 0),
        heads=heads,
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(text, "head_dim", None) or hidden // heads),
        vocab_size=int(text.vocab_size),
        tied_embeddings=bool(_tied(cfg, text)),
        max_context=max_context,
        sliding_window=int(window),
        sliding_layers=int(sliding_layers),
        torch_dtype=_dtype_name(config, card),
        license=card.get("license", ""),
        gated=bool(card.get("gated", False)),
        instruct=bool(card.get("instruct", False)),
        formats=_formats(card),
        gguf=_gguf_repos(card),
        source=card.get("offline_source", "hub"),
        revision=card.get("revision"),
        embedding_dim=hidden if kind == "encoder" else None,
        architecture=(config.get("architectures") or [""])[0],
        offline_file=card.get("offline_file", ""),
        config_source=card.get("config_source", ""),
        published_params_note=card.get("published_params_note", ""),
        **quantization_fields(config),
        **_moe_fields(text, layers),
    )


def quantization_fields(config: dict[str, Any]) -> dict[str, Any]:
    """`quantization_config` -> the entry's quant_method / quant_bits / quant_group_size ({} if none)."""
    from sizer.core.quant.prequant import read_quantization_config

    found = read_quantization_config(config.get("quantization_config"))
    if found is None:
        return {}
    method, bits, group = found
    return {"quant_method": method, "quant_bits": bits, "quant_group_size": group}


def _tied(cfg: Any, text: Any) -> bool:
    top = getattr(cfg, "tie_word_embeddings", None)
    return bool(top if top is not None else getattr(text, "tie_word_embeddings", False))


_QUANT_RE = re.compile(r"[.\-_]((?:I?Q\d\w*?)|BF16|FP?16|FP?32)(?:-\d{5}-of-\d{5})?\.gguf$", re.IGNORECASE)


def quant_of(filename: str) -> str | None:
    """The GGML type named in a GGUF file name ("...-q4_k_m.gguf" -> "Q4_K_M", "-fp16" -> "F16")."""
    match = _QUANT_RE.search(filename)
    return match.group(1).upper().replace("FP", "F") if match else None


def _gguf_repos(card: dict[str, Any]) -> tuple[GGUFRepo, ...]:
    repos = [GGUFRepo(g["repo"], dict(g.get("files", {})), dict(g.get("sizes_gb", {}))) for g in card.get("gguf", [])]
    offline, source = card.get("offline_file", ""), card.get("offline_source")
    if offline.endswith(".gguf") and source and all(r.repo != source for r in repos):
        repos.insert(0, GGUFRepo(source, {quant_of(offline) or "GGUF": offline}))
    return tuple(repos)


def _formats(card: dict[str, Any]) -> tuple[str, ...]:
    return ("safetensors", "gguf") if _gguf_repos(card) else ("safetensors",)
