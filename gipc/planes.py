"""OpenCV's filters on the (H, W) planes of CPU tensors: the decision map's fast path on CPUs.

OpenCV filters one 2-D array at a time and keeps no gradients, so a (B, C, H, W) tensor goes
through it plane by plane, and only where nothing needs its gradients.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def opencv_takes(x: torch.Tensor) -> bool:
    """Whether OpenCV computes for ``x``: a float32 CPU tensor that needs no gradients."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad


def planes(x: torch.Tensor) -> np.ndarray:
    """(B * C, H, W): ``x``'s planes as one array, sharing its memory where ``x`` is contiguous."""
    return x.detach().contiguous().numpy().reshape(-1, *x.shape[-2:])


def each_plane(x: torch.Tensor, write: Callable[[np.ndarray, np.ndarray], object], dtype: np.dtype | None = None) -> torch.Tensor:
    """A tensor shaped as ``x`` whose every plane ``write(plane, out)`` filled from ``x``'s (``dtype``: ``x``'s)."""
    sources = planes(x)
    out = np.empty(sources.shape, dtype=sources.dtype if dtype is None else dtype)
    for source, target in zip(sources, out):
        write(source, target)
    return torch.from_numpy(out).view(x.shape)
