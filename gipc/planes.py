"""OpenCV's filters on the (H, W) planes of CPU tensors: the decision map's fast path on CPUs.

OpenCV filters one 2-D array at a time and keeps no gradients, so a (B, C, H, W) tensor goes
through it plane by plane (large planes several at once, on torch's threads), and only where
nothing needs its gradients.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch


def opencv_takes(x: torch.Tensor) -> bool:
    """Whether OpenCV computes for ``x``: a float32 CPU tensor that needs no gradients."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad


def planes(x: torch.Tensor) -> np.ndarray:
    """(B * C, H, W): ``x``'s planes as one array, sharing its memory where ``x`` is contiguous."""
    return x.detach().contiguous().numpy().reshape(-1, *x.shape[-2:])


PARALLEL_PIXELS = 1 << 20
"""Planes from this size are written on torch's CPU threads at once (OpenCV's filters release the GIL):
two 4000x3000 box filters took 33 ms on two threads against 66 ms on one. Below it the threads'
start costs what they save (a 520x520 pair's map gained nothing, benchmarks/README.md)."""


def each_plane(x: torch.Tensor, write: Callable[[np.ndarray, np.ndarray], object], dtype: np.dtype | None = None) -> torch.Tensor:
    """A tensor shaped as ``x`` whose every plane ``write(plane, out)`` filled from ``x``'s (``dtype``: ``x``'s)."""
    sources = planes(x)
    out = np.empty(sources.shape, dtype=sources.dtype if dtype is None else dtype)
    threads = min(len(sources), torch.get_num_threads()) if len(sources) > 1 and sources[0].size >= PARALLEL_PIXELS else 1
    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="gipc-planes") as pool:
            list(pool.map(write, sources, out))
    else:
        for source, target in zip(sources, out):
            write(source, target)
    return torch.from_numpy(out).view(x.shape)
