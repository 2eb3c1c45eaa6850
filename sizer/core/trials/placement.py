"""Where a trial runs and in which precision: the best device here, bf16 on GPUs that support it."""

from __future__ import annotations

from typing import Any

from sizer.core.errors import SizerError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def choose_device(requested: str | None = None) -> str:
    import torch

    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise SizerError(f"--device {requested}: no CUDA GPU is visible to torch on this machine")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise SizerError("--device mps: Apple MPS is not available on this machine")
        if requested.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise SizerError(f"--device {requested}: use cpu, cuda, cuda:N or mps")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(device: str, requested: str | None = None, kind: str = "causal") -> str:
    """A short dtype name ("fp32", "bf16", "fp16"); sentence encoders always run in fp32."""
    if requested and requested not in DTYPES:
        raise SizerError(f"--dtype {requested}: use one of {', '.join(DTYPES)}")
    if kind == "encoder":
        return "fp32"
    if requested:
        return requested
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "mps":
        return "fp16"
    return "fp32"


def planned_dtype(profile: Any, kind: str = "causal") -> str:
    """The precision a trial would run in on `profile` (this machine or a simulated one), as
    `choose_dtype` picks it there: encoders fp32; causal LMs bf16 on a GPU that runs it (compute
    capability 8.0 or newer; for a simulated GPU, a datasheet that lists bf16), fp16 on older GPUs
    and Apple MPS, fp32 on the CPU."""
    gpus = [g for g in profile.gpus if g.usable]
    if kind == "encoder" or not gpus:
        return "fp32"
    gpu = gpus[0]
    if gpu.kind == "mps":
        return "fp16"
    if gpu.compute_capability:
        return "bf16" if int(gpu.compute_capability.split(".")[0]) >= 8 else "fp16"
    return "bf16" if not gpu.figures.flops or "bf16" in gpu.figures.flops else "fp16"


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])
