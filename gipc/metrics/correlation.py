"""CC: how linearly the fused luminance follows the sources (docs/paper.md section 7)."""

from __future__ import annotations

from typing import Sequence

import torch

from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255_same


def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson r (N,) of two (N, ...) tensors; 0 where either image is flat (r undefined).

    A flat fused image (an untrained generator saturating) must not turn a running mean into NaN.
    """
    xc = x.flatten(1) - x.flatten(1).mean(dim=1, keepdim=True)
    yc = y.flatten(1) - y.flatten(1).mean(dim=1, keepdim=True)
    den = torch.sqrt(xc.square().sum(dim=1) * yc.square().sum(dim=1))
    num = (xc * yc).sum(dim=1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))


def correlation_coefficient(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image ``(r(A, F) + r(B, F)) / 2`` (N,) on the 0..255 luminance."""
    return sources_correlation([a, b], fused)


def sources_correlation(sources: Sequence[torch.Tensor], fused: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``r(S, F)`` over two or more ``sources`` (a focus sequence's), on the 0..255 luminance."""
    *ys, yf = gray255_same(*sources, fused)
    return sum(pearson(y, yf) for y in ys) / len(ys)


class CorrelationCoefficient(PerImageMean, symbol="CC", sequences=True):
    """Mean CC of fused images against both sources (every source of a focus sequence)."""

    def per_image_sources(self, sources: Sequence[torch.Tensor], fused: torch.Tensor, gt: torch.Tensor | None) -> torch.Tensor:
        return sources_correlation(sources, fused)
