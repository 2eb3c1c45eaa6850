"""The transformers engine: a trial's model loaded with transformers (sentence-transformers for
encoders) on one device, or over several GPUs with accelerate's device_map, at a float precision
(bf16 on GPUs that run it, fp32 on the CPU)."""

from __future__ import annotations

from typing import Any

from sizer.core.catalog.resolve import locate
from sizer.core.engines.protocol import Capabilities, LanguageModel, Placement
from sizer.core.errors import SizerError
from sizer.core.trials.placement import choose_device, choose_dtype


class TransformersEngine:
    capabilities = Capabilities(prefix_cache=True, trainable=True, exact_logprobs=True)
    strategies = ("zero-shot", "few-shot", "rag", "fine-tune")
    kinds = ("causal", "encoder")
    estimate_as = "transformers"

    @classmethod
    def device(cls, requested: str | None) -> str:
        return choose_device(requested)

    @classmethod
    def place(cls, entry: Any, spec: Any) -> Placement:
        """The best device here (or `spec.device`), its precision, and the model's files: the GGUF
        rung `spec.quant` names (sizer.core.quant.rungs), else its own."""
        device = choose_device(spec.device)
        dtype = choose_dtype(device, spec.dtype, entry.kind)
        if spec.quant:
            from sizer.core.quant.rungs import locate_quant

            return Placement(device, dtype, locate_quant(entry, spec.quant))
        return Placement(device, dtype, locate(entry, allow_pickle=spec.allow_pickle))

    @classmethod
    def for_trial(cls, entry: Any, placement: Placement, spec: Any) -> LanguageModel:
        """The causal LM on the placement's device; "cuda" without an index places it over every
        GPU as the plan does (accelerate's device_map)."""
        from sizer.core.engines.causal_lm import CausalLM
        from sizer.core.trials.placement import torch_dtype

        layout = None
        if placement.device == "cuda":
            from sizer.core.engines.device_map import planned_placement

            layout = planned_placement(spec.model, placement.dtype)
        return CausalLM.load(placement.local, placement.device, torch_dtype(placement.dtype),
                             spec.trust_remote_code, placement=layout)

    @classmethod
    def key_settings(cls, placement: Placement, spec: Any) -> dict[str, Any]:
        """A GGUF rung de-quantized by transformers is another trial than the model's own files."""
        return {"engine": "transformers", "quant": spec.quant.upper()} if spec.quant else {}

    @classmethod
    def predicted_peak(cls, entry: Any, placement: Placement, settings: dict[str, Any]) -> int | None:
        """The estimator's figure, as the trial's measurement sees it, for this trial's workload
        (the shared prefix plus one pack of 2048 tokens; encoders: batches of 64 at their window)."""
        from sizer.core.catalog.from_config import quant_of
        from sizer.core.estimate.memory import inference_memory
        from sizer.core.quant.precision import parse_precision

        device, dtype, local = placement.device, placement.dtype, placement.local
        kind = "cpu" if device == "cpu" else device.split(":")[0]
        try:
            if entry.kind == "encoder":
                return inference_memory(entry, parse_precision(dtype), min(entry.max_context, 128), 64, kind).measured_bytes
            name = (quant_of(local.gguf_file) or dtype) if local.gguf_file else dtype
            context = min(entry.max_context, int(settings.get("prefix_tokens", 0)) + 2048)
            # transformers de-quantizes a GGUF file to the dtype the trial runs in
            precision = parse_precision(name, compute=dtype if dtype in ("fp32", "bf16", "fp16") else None)
            return inference_memory(entry, precision, context, 1, kind).measured_bytes
        except SizerError:
            return None

    @classmethod
    def runs(cls, entry: Any) -> bool:
        return entry.kind in cls.kinds
