"""What a trial on the llama.cpp engine needs before its runner: the device, the GGUF file at the
quantization asked for, and the estimator's figure for it."""

from __future__ import annotations

from typing import Any

from sizer.core.catalog.model_catalog import ModelEntry
from sizer.core.catalog.from_config import quant_of
from sizer.core.errors import SizerError
from sizer.core.catalog.resolve import LocalModel, locate

STRATEGIES = ("zero-shot", "few-shot")


def prepare(entry: ModelEntry, spec: Any) -> tuple[str, LocalModel, str]:
    """(device, local GGUF file, its llama.cpp file type) for a llama.cpp trial of `entry`."""
    from sizer.core.engines.llama_cpp import llamacpp_device

    if entry.kind != "causal":
        raise SizerError(f"{entry.id}: the llama.cpp engine runs causal LMs (GGUF files), not {entry.kind} models")
    if spec.strategy not in STRATEGIES:
        raise SizerError(f"--engine llama.cpp runs {' and '.join(STRATEGIES)} trials, not {spec.strategy}")
    if spec.dtype:
        raise SizerError("--dtype applies to transformers; with --engine llama.cpp choose the file with --quant")
    device = llamacpp_device(spec.device)
    local = locate(entry, allow_pickle=spec.allow_pickle)
    if not local.gguf_file:
        raise SizerError(f"{entry.id}: no GGUF file here for llama.cpp (its files are in {local.path}); "
                         "give a .gguf file with --model or use --engine transformers")
    local = quant_file(entry, local, spec.quant)
    return device, local, quant_of(local.gguf_file) or "gguf"


def walk_engine(entry: ModelEntry, strategy: str, engine: str | None) -> str:
    """The engine a walk's local trial runs on: llama.cpp when the run asks for it and the
    candidate is a causal LM with a GGUF file here and the strategy is one llama.cpp runs;
    transformers otherwise (the estimate still assumes the run's engine)."""
    if engine != "llama.cpp" or entry.kind != "causal" or strategy not in STRATEGIES:
        return "transformers"
    try:
        return "llama.cpp" if locate(entry).gguf_file else "transformers"
    except SizerError:
        return "transformers"


def quant_file(entry: ModelEntry, local: LocalModel, quant: str) -> LocalModel:
    """`local` when `quant` is "" or its own file type; else a GGUF file of that type beside it."""
    if not quant or (quant_of(local.gguf_file or "") or "").upper() == quant.upper():
        return local
    found = sorted(p for p in local.path.glob("*.gguf") if (quant_of(p.name) or "").upper() == quant.upper())
    if not found:
        from sizer.core.quant.rungs import locate_quant

        try:
            return locate_quant(entry, quant)  # a published rung elsewhere, or one made in sizer's cache
        except SizerError:
            pass
        have = sorted({quant_of(p.name) or p.name for p in local.path.glob("*.gguf")})
        raise SizerError(f"--quant {quant}: no {quant.upper()} GGUF file of {entry.id} in {local.path} "
                         f"(there: {', '.join(have) or 'none'})")
    return LocalModel(local.path, found[0].name, f"{local.revision}:{found[0].name}", local.allow_pickle)


def predicted_peak(entry: ModelEntry, local: LocalModel, settings: dict) -> int | None:
    """The estimator's resident-memory figure for this file on the CPU at the trial's context
    (the shared prefix plus 2048 tokens, at most llama.cpp's allocated context)."""
    from sizer.core.engines.llama_cpp import DEFAULT_CONTEXT
    from sizer.core.estimate.llamacpp import llamacpp_parts, memory_on
    from sizer.core.quant.precision import parse_precision

    try:
        precision = parse_precision(quant_of(local.gguf_file or "") or "")
        context = DEFAULT_CONTEXT  # llama.cpp allocates its whole KV cache at load
        parts = llamacpp_parts(entry, precision, context, 1, "f16")
        return memory_on(parts, entry, precision, context, 1, "cpu").measured_bytes
    except SizerError:
        return None
