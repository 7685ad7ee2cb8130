"""Device and precision: which torch device and number type a run uses, in one table.

Precisions have short names ("fp32", "bf16", "fp16") in options, the store and manifests, and a
torch dtype in code; "auto" picks bf16 where the hardware computes it natively (CUDA GPUs that
support it, CPUs with AVX-512-BF16 or AMX), fp16 on older GPUs, else fp32.
"""
from __future__ import annotations

import torch

from scar_core.errors import ScarError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" (a CUDA GPU when there is one), "cpu" or "cuda[:N]"; a clear error for CUDA without one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ScarError("CUDA was requested but no CUDA GPU is available on this machine "
                        "(or this torch build has no CUDA support); use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise ScarError(f"unknown device '{device}'; choose auto, cpu or cuda")
    return torch.device(device)


def cpu_supports_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype for a precision name on a device ("auto": see the module docstring)."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if precision not in PRECISIONS:
        raise ScarError(f"unknown precision '{precision}'; choose fp32, bf16, fp16 or auto")
    return PRECISIONS[precision]


def precision_name(dtype: torch.dtype) -> str:
    """The short name of a dtype ("fp32", "bf16", "fp16"), as the store and manifests record it."""
    return next(name for name, d in PRECISIONS.items() if d == dtype)


def resolve(device: str = "auto", precision: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Both at once, for a run's options."""
    dev = resolve_device(device)
    return dev, resolve_precision(precision, dev)


def gpu_name() -> str | None:
    """The first CUDA GPU's name, None when there is none."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
