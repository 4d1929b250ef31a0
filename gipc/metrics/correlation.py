"""CC: how linearly the fused luminance follows the sources (docs/paper.md section 7)."""

from __future__ import annotations

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
    ya, yb, yf = gray255_same(a, b, fused)
    return (pearson(ya, yf) + pearson(yb, yf)) / 2.0


class CorrelationCoefficient(PerImageMean, symbol="CC"):
    """Mean CC of fused images against both sources."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return correlation_coefficient(a, b, fused)
