"""Q_SF: Zheng et al.'s (2007) metric of extended spatial frequency, ported from the MFIF benchmark
toolbox's ``metricZheng.m``.

F's spatial frequency over four directions (rows, columns, and the two diagonals weighted by
sqrt(2)/2), each the sum of squared first differences over the image's M x N pixels, is set
against a reference made the same way from the larger of the two sources' absolute differences at
each place: ``Q_SF = (SF_F - SF_R) / SF_R``. 0 is best: below it F lost detail the sources hold,
above it F holds more than either (noise, ringing). The 0..255 luminance is read as it is (no
stretching). Sources with no differences at all leave it undefined (NaN).
"""

from __future__ import annotations

import math

import torch

from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255_same

DIAGONAL = math.sqrt(2) / 2  # weight of the diagonal differences


def _differences(y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """First differences of (N, 1, H, W) along rows, columns, the main and the secondary diagonal."""
    return y[..., :, :-1] - y[..., :, 1:], y[..., :-1, :] - y[..., 1:, :], y[..., 1:, 1:] - y[..., :-1, :-1], y[..., 1:, :-1] - y[..., :-1, 1:]


def _frequency(differences: tuple[torch.Tensor, ...], pixels: int) -> torch.Tensor:
    """sqrt of the weighted sum of squared differences over the pixel count, per image (N,)."""
    weights = (1.0, 1.0, DIAGONAL, DIAGONAL)
    return torch.sqrt(sum(w * d.square().sum(dim=(1, 2, 3)) for w, d in zip(weights, differences)) / pixels)


def qsf(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_SF (N,) of (N, C, H, W) images in [0, 1]: 0 best, negative where F lost detail."""
    ya, yb, yf = gray255_same(a, b, fused)
    pixels = yf.shape[-2] * yf.shape[-1]
    reference = tuple(torch.maximum(da.abs(), db.abs()) for da, db in zip(_differences(ya), _differences(yb)))
    sf_r = _frequency(reference, pixels)
    return (_frequency(_differences(yf), pixels) - sf_r) / sf_r


class QSF(PerImageMean, symbol=r"$Q_{SF}$", best_at=0.0):
    """Mean Q_SF (Zheng et al. 2007), matching the MFIF benchmark toolbox; 0 is best, not the highest."""

    higher_is_better = None

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qsf(a, b, fused)
