"""What the hardware can do fast, detected at run time (CPU kinds change between machines)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "avx_ne_convert"})
"""CPU flags with which oneDNN computes bf16 natively (AVX512-BF16 and AMX dot products, AVX-NE-CONVERT's
conversions on AVX2-VNNI-2 cores); without them it emulates bf16, slower than fp32."""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


NATIVE_INT8_FLAGS = frozenset({"amx_int8", "avx512_vnni", "avx_vnni"})
"""CPU flags with which OpenVINO's int8 convolutions use int8 dot products (AMX tiles, AVX512-VNNI, AVX-VNNI)."""


def native_int8() -> str | None:
    """Why int8 convolutions are fast on this CPU, as a phrase for the first output line, or None."""
    flags = sorted(NATIVE_INT8_FLAGS & cpu_flags())
    return f"CPU has {', '.join(flags)}" if flags else None


def native_bf16(device: torch.device | str) -> str | None:
    """Why bf16 compute is native (so faster than fp32) on ``device``, as a phrase for the log, or None.

    The one place gipc decides precision from: training's ``trainer.precision=auto``
    (:func:`auto_precision`) and fusing's ``--precision auto`` (:func:`gipc.inference.choose_path`).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return "GPU has bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else None
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        flags = sorted(NATIVE_BF16_FLAGS & cpu_flags())
        return f"CPU has {', '.join(flags)}" if flags else None
    return None


def auto_precision(device: torch.device | str) -> str:
    """Lightning's precision for training on ``device``: bf16 mixed where it is native, fp32 elsewhere."""
    return "bf16-mixed" if native_bf16(device) else "32-true"
