"""Where a trial runs and in which precision: the best device here, bf16 on GPUs that support it."""

from __future__ import annotations

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


def choose_dtype(device: str, requested: str | None = None) -> str:
    """A short dtype name ("fp32", "bf16", "fp16")."""
    if requested:
        if requested not in DTYPES:
            raise SizerError(f"--dtype {requested}: use one of {', '.join(DTYPES)}")
        return requested
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "mps":
        return "fp16"
    return "fp32"


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])
