"""SD: contrast of the fused luminance as its standard deviation (docs/paper.md section 7)."""

from __future__ import annotations

import torch

from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255


def standard_deviation(fused: torch.Tensor) -> torch.Tensor:
    """Per-image population standard deviation (N,) of the 0..255 luminance.

    Eq. 22 as docs/paper.md section 7 reads it; the MFIF toolbox's ``SD.m`` instead averages column-wise sample deviations.
    """
    return gray255(fused).flatten(1).std(dim=1, correction=0)


class StandardDeviation(PerImageMean, symbol="SD", sequences=True):
    """Mean SD of the fused images; the sources do not enter."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return standard_deviation(fused)
