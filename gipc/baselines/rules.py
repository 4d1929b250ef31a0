"""Fusion rules and helpers shared by the multiscale baselines."""

from __future__ import annotations

import math

import torch


def choose_max_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Keep, per coefficient, the source whose detail is larger in magnitude (ties go to ``a``)."""
    return torch.where(a.abs() >= b.abs(), a, b)


def fitting_levels(levels: int, height: int, width: int, coarsest: int = 8) -> int:
    """Largest number of halvings, at most ``levels``, that keeps the coarsest band at least ``coarsest`` pixels."""
    return max(0, min(levels, int(math.floor(math.log2(min(height, width) / coarsest)))))


def pad_even(x: torch.Tensor) -> torch.Tensor:
    """Replicate the last row / column where a side is odd, so that it halves exactly."""
    return torch.nn.functional.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate")
