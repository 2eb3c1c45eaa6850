"""The one planning estimate: which engine, which precision and which context a size estimate uses.

Every caller that sizes a model (`sizer fit`, `sizer catalog list --fits`, the walk's candidates,
the Models screen, the recommendation on a target profile) goes through `plan_estimate`, so the
same model on the same machine gets the same answer everywhere:
- engine: as asked; else llama.cpp for a llama.cpp file type (Q4_K_M, IQ3_M...), transformers otherwise;
- precision: as asked; else the checkpoint's own quantization (AWQ, GPTQ, FP8... from its
  `quantization_config`), else what the engine would run: transformers the dtype a trial picks on
  the machine (bf16 on GPUs that have it, fp16 on older GPUs and Apple, fp32 on the CPU; encoders
  fp32), llama.cpp the model's published GGUF or Q4_K_M, vLLM the checkpoint's 16-bit dtype.
  A GGUF file loaded by transformers is de-quantized to that same trial dtype, never fp32 on a GPU;
- context: as asked, else DEFAULT_CONTEXT, capped at the model's maximum.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

from sizer.core.catalog.entry import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.estimate.fit import ENGINES, FitReport, fit_report
from sizer.core.estimate.llamacpp import KV_TYPES
from sizer.core.quant.gguf_types import FILE_TYPES
from sizer.core.quant.precision import Precision, parse_precision, with_compute

DEFAULT_CONTEXT = 4096
DEFAULT_GGUF = "Q4_K_M"


def parse_engine(name: str | None) -> str | None:
    """`--engine` value -> engine name (None stays None); unknown -> SizerError naming the closest."""
    if name is None:
        return None
    key = name.strip().lower().replace("llamacpp", "llama.cpp").replace("llama-cpp", "llama.cpp")
    if key in ENGINES:
        return key
    close = difflib.get_close_matches(key, ENGINES, n=1, cutoff=0.4)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise SizerError(f"--engine {name}: unknown engine{hint}; use {', '.join(ENGINES)}")


def check_kv_cache(kv_cache: str | None) -> str:
    kv = (kv_cache or "f16").lower()
    if kv not in KV_TYPES:
        raise SizerError(f"--kv-cache {kv_cache}: use one of {', '.join(KV_TYPES)} (llama.cpp's cache types)")
    return kv


def check_gpu_layers(gpu_layers: int | None) -> int | None:
    if gpu_layers is not None and gpu_layers < 0:
        raise SizerError(f"--gpu-layers {gpu_layers}: must be 0 or more (layers llama.cpp puts on the GPUs)")
    return gpu_layers


def check_inputs(engine: str | None, dtype: str | None, kv_cache: str | None = None,
                 gpu_layers: int | None = None) -> tuple[str | None, Precision | None]:
    """Validate the planning flags before any profiling: (engine, precision or None)."""
    engine = parse_engine(engine)
    precision = parse_precision(dtype) if dtype else None
    check_kv_cache(kv_cache)
    check_gpu_layers(gpu_layers)
    if (kv_cache not in (None, "f16") or gpu_layers is not None) and engine_for(engine, precision) != "llama.cpp":
        raise SizerError("--kv-cache and --gpu-layers apply to --engine llama.cpp only")
    if precision is not None and engine:
        _compatible(engine, precision)
    return engine, precision


def engine_for(engine: str | None, precision: Precision | None) -> str:
    """The engine an estimate uses: the one asked for, else llama.cpp for a GGUF file type."""
    if engine:
        return engine
    return "llama.cpp" if precision is not None and precision.kind == "gguf" else "transformers"


def _compatible(engine: str, precision: Precision) -> None:
    if engine == "vllm" and precision.kind == "gguf":
        raise SizerError(f"--engine vllm serves safetensors checkpoints; {precision.name} is a llama.cpp file type: "
                         "use --engine llama.cpp or transformers")
    if engine == "llama.cpp" and precision.kind in ("bnb", "prequant"):
        raise SizerError(f"--engine llama.cpp runs GGUF files; {precision.name} is a bitsandbytes/pre-quantized "
                         "format: use a llama.cpp file type such as Q4_K_M")


def trial_dtype(profile: Any, kind: str) -> str:
    from sizer.core.trials.placement import planned_dtype

    return planned_dtype(profile, kind)


def plan_precision(entry: ModelEntry, profile: Any, engine: str, dtype: str | Precision | None) -> Precision:
    """The precision an estimate of `entry` on `profile` under `engine` uses (see the module docstring)."""
    from sizer.core.estimate.params import checkpoint_float
    from sizer.core.quant.prequant import prequant_precision

    asked = parse_precision(dtype) if isinstance(dtype, str) else dtype
    if entry.quant_method and engine != "llama.cpp" and (asked is None or asked.kind == "float"):
        compute = asked.name if asked is not None else None
        return prequant_precision(entry, compute)
    if asked is not None:
        _compatible(engine, asked)
        if asked.kind == "gguf":  # transformers de-quantizes to it; llama.cpp's GPU kernels compute in 16 bits
            return with_compute(asked, trial_dtype(profile, entry.kind))
        return asked
    if engine == "llama.cpp":
        return with_compute(parse_precision(_published_gguf(entry) or DEFAULT_GGUF), trial_dtype(profile, entry.kind))
    if engine == "vllm":
        source = checkpoint_float(entry)
        return parse_precision("bf16" if source == "fp32" else source)
    return parse_precision(trial_dtype(profile, entry.kind))


def _published_gguf(entry: ModelEntry) -> str | None:
    for repo in entry.gguf:
        for quant in repo.files:
            if quant.upper() in FILE_TYPES:
                return quant.upper()
    return None


def plan_context(entry: ModelEntry, context: int | None) -> int:
    """The context an estimate uses: as asked, else DEFAULT_CONTEXT, at most the model's maximum."""
    if context is not None and context <= 0:
        raise SizerError(f"--context {context}: must be a positive number of tokens")
    return min(context or DEFAULT_CONTEXT, entry.max_context)


def plan_estimate(
    entry: ModelEntry,
    profile: Any,
    engine: str | None = None,
    dtype: str | Precision | None = None,
    context: int | None = None,
    batch: int = 1,
    kv_cache: str | None = None,
    gpu_layers: int | None = None,
) -> FitReport:
    """The estimate of `entry` on `profile` (this machine or a simulated one), with the policy above."""
    asked = parse_precision(dtype) if isinstance(dtype, str) else dtype
    engine = engine_for(parse_engine(engine), asked)
    precision = plan_precision(entry, profile, engine, asked)
    return fit_report(entry, precision, plan_context(entry, context), batch, profile.devices(),
                      overhead_reserved=profile.simulated, engine=engine, kv_cache=check_kv_cache(kv_cache),
                      gpu_layers=check_gpu_layers(gpu_layers))


@dataclasses.dataclass(frozen=True)
class UsableContext:
    engine: str
    devices: str          # "GPUs" or the CPU's name
    precision: str
    tokens: int           # the largest context that fits; 0 = not even the smallest
    model_max: int


def usable_contexts(report: FitReport, profile: Any, kv_cache: str | None = None) -> list[UsableContext]:
    """Per engine that can run the report's precision and per device set (all GPUs; the CPU alone),
    the largest context whose estimate still fits there."""
    entry, devices = report.entry, profile.devices()
    gpus = [d for d in devices if d.kind != "cpu"]
    cpus = [d for d in devices if d.kind == "cpu"]
    out = []
    for engine in _engines_for(report):
        try:
            asked = None if report.precision.kind == "prequant" else report.precision
            precision = report.precision if engine == report.engine else plan_precision(entry, profile, engine, asked)
        except SizerError:
            continue
        kv = kv_cache if engine == "llama.cpp" else None
        sets = [("GPUs" if len(gpus) > 1 else gpus[0].name, gpus + cpus, ("fits",))] if gpus else []
        if engine != "vllm" and cpus and not any(d.kind == "mps" for d in gpus):
            sets.append((cpus[0].name, cpus, ("fits-cpu",)))
        for label, devs, ok in sets:
            def fits(c: int, devs: list = devs, ok: tuple = ok, engine: str = engine, precision: Precision = precision) -> bool:
                r = fit_report(entry, precision, c, report.batch, devs, profile.simulated, engine, check_kv_cache(kv))
                return r.level in ok
            if engine == "vllm":
                r = fit_report(entry, precision, 1, report.batch, devs, profile.simulated, "vllm")
                tokens = int(r.serving["max_single_context"]) if r.serving else 0
            else:
                tokens = largest(fits, entry.max_context)
            out.append(UsableContext(engine, label, precision.name, tokens, entry.max_context))
    return out


def _engines_for(report: FitReport) -> list[str]:
    kind = report.precision.kind
    engines = {"gguf": ["llama.cpp", "transformers"], "float": list(ENGINES), "bnb": ["transformers", "vllm"],
               "prequant": ["transformers", "vllm"]}[kind]
    return [report.engine] + [e for e in engines if e != report.engine]


def largest(fits: Callable[[int], bool], high: int) -> int:
    """The largest n in 1..high with fits(n), for a fits that stays false once false; 0 if none."""
    if not fits(1):
        return 0
    lo, hi = 1, high
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
