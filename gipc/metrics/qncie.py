"""Q_NCIE: Wang et al.'s nonlinear correlation information entropy of sources and fused image,
ported from the MFIF benchmark toolbox's ``metricWang.m`` and ``NCC.m``.

Each image's 0..255 luminance is stretched to its own full range and rounded (as for
:mod:`gipc.metrics.qmi`); the nonlinear correlation coefficient of two images is their mutual
information over 256 levels in units of log 256 (0..1). The three pairs' coefficients fill a 3 x 3
correlation matrix R (ones on its diagonal), and ``Q_NCIE = 1 + sum_i (r_i / 3) log_256 (r_i / 3)``
over R's eigenvalues r_i: 0 for unrelated images (R = I), 1 for identical ones holding every level
equally often. An eigenvalue of 0 adds 0; a negative one, which R can only have where an image
shares nearly all of its 8 bits with two unrelated others, leaves the score undefined (NaN).
"""

from __future__ import annotations

import math

import torch

from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255_same
from gipc.metrics.qmi import LEVELS, mutual_information, stretched

IMAGES = 3  # the two sources and the fused image: R is 3 x 3


def nonlinear_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image (N,) of two (N, 1, H, W) integer images on 0..255: mutual information in units of log 256."""
    return mutual_information(x, y)[0] / math.log2(LEVELS)


def qncie(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_NCIE (N,) in [0, 1] of (N, C, H, W) images in [0, 1]."""
    ya, yb, yf = (stretched(y) for y in gray255_same(a, b, fused))
    ab, af, bf = nonlinear_correlation(ya, yb), nonlinear_correlation(ya, yf), nonlinear_correlation(yb, yf)
    one = torch.ones_like(ab)
    r = torch.stack([torch.stack(row, dim=-1) for row in ((one, ab, af), (ab, one, bf), (af, bf, one))], dim=-2)
    share = torch.linalg.eigvalsh(r) / IMAGES
    share = torch.where(share.abs() < 1e-15, 0.0, share)  # an eigenvalue of 0, as eigvalsh rounds it
    return 1.0 + (torch.special.xlogy(share, share) / math.log(LEVELS)).sum(dim=-1)


class QNCIE(PerImageMean, symbol=r"$Q_{NCIE}$"):
    """Mean Q_NCIE (Wang et al.), matching the MFIF benchmark toolbox."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qncie(a, b, fused)
