"""Input checks shared by the classic baselines, so a bad call fails with one clear line."""

from __future__ import annotations

import torch
from gipc.errors import BaselineInputError


def check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    """Both sources must be luminance batches (N, 1, H, W) of one shape."""
    if a.ndim != 4 or a.shape[1] != 1:
        raise BaselineInputError(f"baselines fuse luminance batches (N, 1, H, W), got {tuple(a.shape)}; use gipc.color.fuse_color for RGB")
    if a.shape != b.shape:
        raise BaselineInputError(f"sources differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def check_odd(name: str, size: int) -> None:
    """Window sizes must be odd so that every window has a centre pixel."""
    if size < 1 or size % 2 == 0:
        raise BaselineInputError(f"{name} must be a positive odd integer, got {size}")
