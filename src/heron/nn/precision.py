"""Numeric precision: what this machine runs natively, and autocast for it.

heron speaks of three precisions: "fp32", "bf16" and "fp16", plus "auto",
which picks the fastest one the hardware runs natively:

- a CPU with native bf16 (AVX512-BF16 or AMX, e.g. Intel Sapphire Rapids,
  AMD Zen 4) -> "bf16";
- a CUDA GPU -> "bf16" where it supports it (Ampere and later), else "fp16";
- anything else (a CPU with AVX2 only, MPS) -> "fp32".

A CPU without native bf16 still runs "bf16" when it is asked for explicitly,
but emulated and several times slower than fp32; "auto" never picks it there.
"fp16" needs a GPU: on the CPU it is refused with a message saying what to use.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from heron.errors import HeronError

__all__ = [
    "PRECISIONS",
    "PrecisionError",
    "autocast",
    "cpu_supports_bf16",
    "precision_dtype",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(HeronError, ValueError):
    """A precision that is unknown or that the device cannot run."""


@functools.lru_cache(maxsize=1)
def _cpuinfo_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):  # every core lists the same flags: the first is enough
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def _torch_reports_bf16() -> bool:
    """Whether torch's own CPU probe sees AMX or AVX512-BF16 (covers machines without /proc)."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    if "AMX" in capability or "AVX512_BF16" in capability:
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 is faster than fp32."""
    return bool(_cpuinfo_flags() & _BF16_FLAGS) or _torch_reports_bf16()


def device_type(device: str | torch.device) -> str:
    """"cuda" or "cpu" (or another torch device type); "auto" is CUDA when there is one."""
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """"auto" | "fp32" | "bf16" | "fp16" -> the precision to run on `device`: "fp32", "bf16" or "fp16".

    Raises `PrecisionError` for an unknown name and for fp16 on the CPU.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}; "
                             "use auto to pick the fastest native one")
    kind = device_type(device)
    if precision == "auto":
        if kind == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if kind == "cpu" and cpu_supports_bf16():
            return "bf16"
        return "fp32"
    if precision == "fp16" and kind == "cpu":
        raise PrecisionError("precision fp16 needs a GPU: CPUs have no fast fp16 arithmetic; "
                             "use --precision bf16 or fp32 (or auto) on the CPU")
    return precision


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision: "bf16" -> torch.bfloat16, ..."""
    try:
        return _DTYPES[precision]
    except KeyError:
        raise PrecisionError(f"precision {precision!r} is not resolved; call resolve_precision first") from None


def autocast(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager:
    """Autocast to a resolved precision on `device`; "fp32" is a no-op context (nothing changes)."""
    dtype = precision_dtype(precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type(device), dtype=dtype)
