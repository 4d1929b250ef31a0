"""Pixel averaging: the trivial baseline every other method must beat."""

from __future__ import annotations

import torch

from gipc.baselines.inputs import check_pair


def average(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(A + B) / 2`` of two luminance sources; keeps both sources' blur, which is why it is the floor of any comparison."""
    check_pair(a, b)
    return mean_of(a, b)


def mean_of(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(A + B) / 2`` channel by channel: the average of two RGB sources."""
    return (a + b) / 2
