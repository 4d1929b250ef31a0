"""Q_M: Wang and Liu's (2008) multiscale edge-preservation metric, ported from the MFIF benchmark
toolbox's ``metricPWW.m``.

Port details: a two-level orthonormal Haar pyramid of the 0..255 luminance (Simoncelli's
``buildWpyr(im, 2, 'haar')``: each level sums and differences disjoint pairs of rows, then of
columns, over sqrt 2; a side of odd length loses its last row or column, as the toolbox's sampling
drops it). At each level the three detail bands of F are compared with each source's:
``EP = exp(-|H_S - H_F|) + exp(-|V_S - V_F|) + exp(-|D_S - D_F|)`` (0..3), weighted by the
source's detail energy ``W = H_S^2 + V_S^2 + D_S^2``; ``Q_l = sum(EP_A W_A + EP_B W_B) / sum(W_A + W_B)``
and ``Q_M = Q_1^(2/3) Q_2^(1/3)``. Its range is therefore 0..3, 3 where F keeps every detail
coefficient of the sources (a brightness offset changes none).

Where both sources hold no detail at a level (0 / 0 in the toolbox) nothing can be lost there:
that level scores its maximum, 3.
"""

from __future__ import annotations

import math

import torch

from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean, ratio
from gipc.metrics.luminance import gray255_same

LEVELS = 2  # decomposition levels
EXPONENTS = (2 / 3, 1 / 3)  # alpha1, alpha2: each level's weight in the product
SMALLEST = 2**LEVELS  # buildWpyr's limit: a side halves to at least the Haar filter's 2 taps at the last level


def _pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Haar low and high pass of ``x`` along its last dimension: disjoint pairs
    ``(x0 + x1) / sqrt 2`` and ``(x1 - x0) / sqrt 2``, an odd last sample dropped."""
    even = x.shape[-1] // 2 * 2
    x0, x1 = x[..., 0:even:2], x[..., 1:even:2]
    return (x0 + x1) / math.sqrt(2), (x1 - x0) / math.sqrt(2)


def haar_level(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One level of ``buildWpyr``'s Haar pyramid of (N, 1, H, W): the low pass (half each side) and
    the three detail bands (high pass down the columns, along the rows, both)."""
    low, high = (band.transpose(-1, -2) for band in _pairs(x.transpose(-1, -2)))
    low_low, low_high = _pairs(low)
    high_low, high_high = _pairs(high)
    return low_low, (high_low, low_high, high_high)


def _preservation(source: tuple[torch.Tensor, ...], fused: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """EP of one level's bands: sum over the bands of exp(-|S - F|), 0..3 at every coefficient."""
    return sum(torch.exp(-(s - f).abs()) for s, f in zip(source, fused))


def qm(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_M (N,) in [0, 3] of (N, C, H, W) images in [0, 1] (at least 4 x 4 px)."""
    images = gray255_same(a, b, fused)
    if min(images[0].shape[-2:]) < SMALLEST:
        raise MetricInputError(f"Q_M needs images of at least {SMALLEST}x{SMALLEST} px, got {images[0].shape[-2]}x{images[0].shape[-1]}")
    score = torch.ones(images[0].shape[0], dtype=torch.float64, device=images[0].device)
    for exponent in EXPONENTS:
        (ya, bands_a), (yb, bands_b), (yf, bands_f) = (haar_level(y) for y in images)
        images = (ya, yb, yf)
        energy_a, energy_b = (sum(band * band for band in bands) for bands in (bands_a, bands_b))
        kept = _preservation(bands_a, bands_f) * energy_a + _preservation(bands_b, bands_f) * energy_b
        level = ratio(kept.sum(dim=(1, 2, 3)), (energy_a + energy_b).sum(dim=(1, 2, 3)), 3.0)
        score = score * level**exponent
    return score


class QM(PerImageMean, symbol=r"$Q_{M}$"):
    """Mean Q_M (Wang and Liu 2008), matching the MFIF benchmark toolbox; 0..3."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qm(a, b, fused)
