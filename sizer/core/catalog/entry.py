"""One catalog entry: `ModelEntry` and the GGUF repos it lists (re-exported by sizer.core.catalog.model_catalog).

The entry holds what the estimator and the trial engine need from a model's config.json and
its card; sizer.core.catalog.family_file reads and writes entries as family TOML files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("causal", "encoder")
# Fields a dense model leaves at 0 or "": family files leave them out.
MOE_FIELDS = ("experts", "experts_per_token", "expert_intermediate_size", "shared_experts",
              "shared_expert_intermediate_size", "moe_layers")


@dataclass(frozen=True)
class GGUFRepo:
    """A Hub repo (or installed package) with GGUF files of one model: quant name -> file name, and
    where the repo's file listing states it, quant name -> file size in GB (10^9 bytes, as listed)."""

    repo: str
    files: dict[str, str] = field(default_factory=dict)  # e.g. {"Q4_K_M": "qwen2.5-7b-instruct-q4_k_m.gguf"}
    sizes_gb: dict[str, float] = field(default_factory=dict)  # e.g. {"Q4_K_M": 4.68}; informational


@dataclass(frozen=True)
class ModelEntry:
    id: str                      # Hub repo id, e.g. "Qwen/Qwen2.5-7B-Instruct"
    family: str                  # file stem of the catalog TOML, e.g. "qwen2.5"
    kind: str                    # "causal" or "encoder"
    params: int                  # exact parameter count (meta-device build of config.json)
    published_params: float      # the model card's figure, for the cross-check
    model_type: str              # config.json model_type (text config for multimodal models)
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool
    max_context: int
    sliding_window: int = 0      # tokens; 0 = full attention everywhere
    sliding_layers: int = 0      # how many of `layers` use the sliding window
    torch_dtype: str = "bfloat16"  # dtype the weights are published in
    license: str = ""
    gated: bool = False
    instruct: bool = False
    formats: tuple[str, ...] = ("safetensors",)
    gguf: tuple[GGUFRepo, ...] = ()
    source: str = "hub"          # "hub", or "package:<module>" for the offline models
    revision: str | None = None
    embedding_dim: int | None = None  # encoders: sentence-embedding size
    architecture: str = ""       # config.json architectures[0], the class that loads the checkpoint
    offline_file: str = ""       # offline models: file or folder inside the package
    config_source: str = ""      # where the config.json the entry was built from came from
    published_params_note: str = ""  # where `published_params` was read
    # Mixture-of-experts (all 0 for a dense model), from config.json:
    experts: int = 0             # routed experts per MoE layer (num_experts / num_local_experts / n_routed_experts)
    experts_per_token: int = 0   # routed experts each token uses (num_experts_per_tok)
    expert_intermediate_size: int = 0  # one routed expert's MLP width (moe_intermediate_size)
    shared_experts: int = 0      # always-used experts per MoE layer
    shared_expert_intermediate_size: int = 0  # one shared expert's MLP width
    moe_layers: int = 0          # layers whose MLP is a MoE block; the rest use intermediate_size
    # pre-quantized checkpoints (config.json `quantization_config`): method ("awq", "gptq",
    # "bitsandbytes", "fp8", "compressed-tensors", "mxfp4"), bits per quantized weight, weights per
    # scale group (0 = one scale per row or tensor)
    quant_method: str = ""
    quant_bits: int = 0
    quant_group_size: int = 0

    @property
    def is_moe(self) -> bool:
        return self.experts > 0 and self.moe_layers > 0

    @property
    def short_name(self) -> str:
        return self.id.split("/", 1)[-1]
