"""Device and precision: which torch device and number type a run uses, in one table.

Devices: "auto" takes a CUDA GPU, else Apple's GPU (MPS) where this torch build has it, else the
CPU; "mps" asked for on a machine without it falls back to the CPU with a message on stderr (a
laptop user's script keeps working), while "cuda" without a GPU is an error.

Precisions have short names ("fp32", "bf16", "fp16") in options, the store and manifests, and a
torch dtype in code; "auto" picks bf16 where the hardware computes it natively (CUDA GPUs that
support it, CPUs with AVX-512-BF16 or AMX), fp16 on older GPUs and on MPS, else fp32. MPS takes
fp32 and fp16 (its bf16 needs macOS 14 and is slower than fp16 there): bf16 asked for on MPS is refused.
"""
from __future__ import annotations

import sys

import torch

from scar_core.errors import ScarError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_CHOICES = ("auto", *PRECISIONS)


def mps_available() -> bool:
    """Whether this torch build can run on an Apple GPU (Metal Performance Shaders) here."""
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" (see the module docstring), "cpu", "cuda[:N]" or "mps"; a clear error for CUDA without one,
    a message and the CPU for MPS without one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ScarError("CUDA was requested but no CUDA GPU is available on this machine "
                        "(or this torch build has no CUDA support); use --device cpu or auto")
    if device == "mps" and not mps_available():
        print("note: --device mps asked for an Apple GPU, but this torch build or machine has none "
              "(torch.backends.mps.is_available() is False); scoring on the CPU instead", file=sys.stderr)
        return torch.device("cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ScarError(f"unknown device '{device}'; choose auto, cpu, cuda or mps")
    return torch.device(device)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where there is none, as on macOS)."""
    try:
        return set(open("/proc/cpuinfo").read().split())
    except OSError:
        return set()


def cpu_supports_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_vnni() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX), which the int8
    engine was measured with."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype for a precision name on a device ("auto": see the module docstring)."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if precision not in PRECISIONS:
        raise ScarError(f"unknown precision '{precision}'; choose fp32, bf16, fp16 or auto")
    if device.type == "mps" and precision == "bf16":
        raise ScarError("Apple GPUs (mps) score in fp32 or fp16 here; choose --precision fp16, fp32 or auto")
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
