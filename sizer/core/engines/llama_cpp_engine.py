"""The llama.cpp engine: a trial's GGUF file loaded by llama.cpp (llama-cpp-python) at its own
quantization, on the CPU or offloaded to GPUs as the estimator places it."""

from __future__ import annotations

from typing import Any, Sequence

from sizer.core.catalog.entry import ModelEntry
from sizer.core.catalog.from_config import quant_of
from sizer.core.catalog.resolve import LocalModel, locate
from sizer.core.engines.protocol import Capabilities, LanguageModel, Placement
from sizer.core.errors import SizerError


class LlamaCppEngine:
    capabilities = Capabilities(prefix_cache=True, trainable=False, exact_logprobs=True)
    strategies = ("zero-shot", "few-shot")
    kinds = ("causal",)
    estimate_as = "llama.cpp"

    @classmethod
    def device(cls, requested: str | None) -> str:
        return llamacpp_device(requested)

    @classmethod
    def place(cls, entry: ModelEntry, spec: Any) -> Placement:
        """The device (as asked, else a GPU this build offloads to, else the CPU), the GGUF file at
        `spec.quant` (else the model's own) and its llama.cpp file type. The trial measures the
        process's resident memory: llama.cpp's buffers are outside torch's allocator."""
        if spec.dtype:
            raise SizerError("--dtype applies to transformers; with --engine llama.cpp choose the file with --quant")
        device = llamacpp_device(spec.device)
        local = locate(entry, allow_pickle=spec.allow_pickle)
        if not local.gguf_file:
            raise SizerError(f"{entry.id}: no GGUF file here for llama.cpp (its files are in {local.path}); "
                             "give a .gguf file with --model or use --engine transformers")
        local = quant_file(entry, local, spec.quant)
        return Placement(device, quant_of(local.gguf_file) or "gguf", local, measured_on="cpu")

    @classmethod
    def for_trial(cls, entry: ModelEntry, placement: Placement, spec: Any) -> LanguageModel:
        """Threads from this machine's profile; on a GPU, the layers and tensor split the
        estimator places there (sizer.core.estimate.planning)."""
        from sizer.core.engines.llama_cpp import LlamaCppLM

        return LlamaCppLM.load(placement.local, **trial_kwargs(entry, placement.local, placement.device))

    @classmethod
    def key_settings(cls, placement: Placement, spec: Any) -> dict[str, Any]:
        """In the key, so a llama.cpp trial never reuses a transformers one."""
        return {"engine": "llama.cpp", "quant": placement.dtype}

    @classmethod
    def predicted_peak(cls, entry: ModelEntry, placement: Placement, settings: dict[str, Any]) -> int | None:
        """The estimator's resident-memory figure for this file on the CPU at the trial's context
        (llama.cpp allocates its whole KV cache, DEFAULT_CONTEXT tokens, at load)."""
        from sizer.core.engines.llama_cpp import DEFAULT_CONTEXT
        from sizer.core.estimate.llamacpp import llamacpp_parts, memory_on
        from sizer.core.quant.precision import parse_precision

        try:
            precision = parse_precision(quant_of(placement.local.gguf_file or "") or "")
            parts = llamacpp_parts(entry, precision, DEFAULT_CONTEXT, 1, "f16")
            return memory_on(parts, entry, precision, DEFAULT_CONTEXT, 1, "cpu").measured_bytes
        except SizerError:
            return None

    @classmethod
    def runs(cls, entry: ModelEntry) -> bool:
        """Whether a walk can try `entry` here on llama.cpp: a causal LM with a GGUF file here."""
        try:
            return entry.kind == "causal" and bool(locate(entry).gguf_file)
        except SizerError:
            return False


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


def threads_for(profile: Any) -> int:
    """llama.cpp's threads: the profile's physical cores (llama.cpp's own default)."""
    return max(1, int(profile.cpu.physical_cores or profile.cpu.logical_cores or 1))


def offload_kwargs(profile: Any, shares: Sequence[Any]) -> dict[str, Any]:
    """llama.cpp load arguments from the estimator's placement (sizer.core.estimate.llamacpp.place):
    `n_gpu_layers` = blocks on GPUs + 1 when a GPU holds the output head (llama.cpp's -ngl counts
    the output as one more layer); `tensor_split` = each GPU's share of those, in CUDA device order
    (the profile's usable GPUs, by index). CPU-only placements give n_gpu_layers 0, no split."""
    gpus = [g for g in profile.gpus if g.usable]
    per_gpu = [0] * len(gpus)
    names = [g.name for g in gpus]
    taken: set[int] = set()
    for share in shares:
        if share.device.kind == "cpu":
            continue
        # placement orders GPUs by free memory; match each share to a GPU not yet matched
        index = next(i for i, g in enumerate(gpus)
                     if i not in taken and names[i] == share.device.name and g.free_bytes == share.device.free_bytes)
        taken.add(index)
        per_gpu[index] = share.layers + (1 if share.output else 0)
    n_gpu_layers = sum(per_gpu)
    kwargs: dict[str, Any] = {"n_gpu_layers": n_gpu_layers, "n_threads": threads_for(profile)}
    if n_gpu_layers and sum(1 for n in per_gpu if n) > 1:
        kwargs["tensor_split"] = [float(n) for n in per_gpu]
    return kwargs


def trial_kwargs(entry: Any, local: LocalModel, device: str) -> dict[str, Any]:
    """Load arguments for a trial here: on the CPU the profile's physical cores; on GPUs the
    estimator's placement of this file (its quantization, DEFAULT_CONTEXT tokens)."""
    from types import SimpleNamespace

    from sizer.core.engines.llama_cpp import DEFAULT_CONTEXT
    from sizer.core.hardware.profile import _detect_cpu

    if device == "cpu" or entry is None:
        return {"n_threads": threads_for(SimpleNamespace(cpu=_detect_cpu())), "n_gpu_layers": 0}
    from sizer.core.catalog.from_config import quant_of
    from sizer.core.hardware.profile import detect
    from sizer.core.estimate.planning import plan_estimate

    profile = detect()
    report = plan_estimate(entry, profile, "llama.cpp", quant_of(local.gguf_file or "") or None, DEFAULT_CONTEXT)
    if report.level == "no":
        raise SizerError(f"{entry.id}: the estimator finds no placement of {local.gguf_file} on this machine's devices")
    return offload_kwargs(profile, report.shares)


def llamacpp_device(requested: str | None) -> str:
    """The device a llama.cpp trial runs on: as asked (cpu, cuda, cuda:N, mps), else a GPU when
    this llama-cpp-python build can offload to one, else the CPU."""
    from sizer.core.engines.llama_cpp import import_llama_cpp

    llama_cpp = import_llama_cpp()
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    if requested:
        kind = requested.split(":")[0]
        if kind not in ("cpu", "cuda", "mps"):
            raise SizerError(f"--device {requested}: use cpu, cuda, cuda:N or mps")
        if kind != "cpu" and not offload:
            raise SizerError(f"--device {requested}: this llama-cpp-python build runs on the CPU only; "
                             "reinstall it with GPU support (e.g. CMAKE_ARGS=-DGGML_CUDA=on) or use --device cpu")
        return requested
    if not offload:
        return "cpu"
    import sys

    return "mps" if sys.platform == "darwin" else "cuda"
