"""SF: spatial frequency of the fused luminance (docs/paper.md section 7)."""

from __future__ import annotations

import torch

from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255


def spatial_frequency(fused: torch.Tensor) -> torch.Tensor:
    """Per-image ``sqrt(RF^2 + CF^2)`` (N,), both sums of squared first differences divided by M*N.

    Dividing by M*N (not by the number of differences) is the MFIF toolbox's ``SF.m``.
    """
    y = gray255(fused)
    pixels = y.shape[-2] * y.shape[-1]
    rf2 = y.diff(dim=-1).square().sum(dim=(1, 2, 3)) / pixels
    cf2 = y.diff(dim=-2).square().sum(dim=(1, 2, 3)) / pixels
    return torch.sqrt(rf2 + cf2)


class SpatialFrequency(PerImageMean, symbol="SF", sequences=True):
    """Mean SF of the fused images; the sources do not enter."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return spatial_frequency(fused)
