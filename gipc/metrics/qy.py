"""Q_Y: Yang et al.'s (2008) structural-similarity fusion metric, ported from the MFIF benchmark
toolbox's ``metricYang.m``.

Port details: SSIM maps of (A, B), (A, F) and (B, F) on the 0..255 luminance with a 7 x 7
Gaussian window (sigma 1.5, normalised), 'valid' filtering (the maps are 6 px smaller each way) and
both constants 2e-16. Where SSIM(A, B) >= 0.75 the sources are alike there and F is scored against
both, weighted by each source's local variance (``lambda = var_A / (var_A + var_B)``); elsewhere by
the better of SSIM(A, F) and SSIM(B, F). The score is the mean over the map.

Flat windows are scored as exact arithmetic scores them. The toolbox's one-pass variance
(``E[x^2] - E[x]^2``) leaves about 1e-11 of rounding in a flat window, which its constants of 2e-16
cannot outweigh: SSIM there becomes a ratio of rounding errors (values of 10^5 on Lytro pairs with
saturated areas). An integer window that is not flat has a variance of at least 1e-3 (one corner
pixel one level off), so variances under :data:`FLAT` are taken as 0 and so is the covariance of a
flat window with any other. Where both sources are flat the weight, 0 / 0, is 1/2.
"""

from __future__ import annotations

import torch

from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean, ratio
from gipc.metrics.luminance import gray255_same
from gipc.windows import gaussian_taps, local_moments, window_sums

WINDOW, SIGMA = 7, 1.5  # Matlab's fspecial('gaussian', 7, 1.5)
CONSTANT = 2e-16  # C1 = C2 of the toolbox's SSIM
ALIKE = 0.75  # SSIM(A, B) from which both sources are weighed
FLAT = 1e-6
"""A local variance under this is a flat window's rounding error (a window of 0..255 integers that is not flat has one of at least 1e-3)."""


def _local(y: torch.Tensor, taps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 'valid' local mean and variance of (N, 1, H, W) 0..255 integer luminance (a flat window's exactly 0)."""
    mean, variance = local_moments(y, taps, "valid")
    return mean, torch.where(variance.abs() < FLAT, 0.0, variance)


def _ssim(
    x: torch.Tensor, y: torch.Tensor, local_x: tuple[torch.Tensor, torch.Tensor], local_y: tuple[torch.Tensor, torch.Tensor], taps: torch.Tensor
) -> torch.Tensor:
    """The 'valid' SSIM map of two images whose :func:`_local` statistics are given."""
    (mu_x, var_x), (mu_y, var_y) = local_x, local_y
    covariance = torch.where((var_x == 0) | (var_y == 0), 0.0, window_sums(x * y, taps, "valid") - mu_x * mu_y)
    return (2 * mu_x * mu_y + CONSTANT) * (2 * covariance + CONSTANT) / ((mu_x**2 + mu_y**2 + CONSTANT) * (var_x + var_y + CONSTANT))


def qy(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_Y (N,) of (N, C, H, W) images in [0, 1] (at least 7 x 7 px)."""
    ya, yb, yf = gray255_same(a, b, fused)
    if min(ya.shape[-2:]) < WINDOW:
        raise MetricInputError(f"Q_Y needs images of at least {WINDOW}x{WINDOW} px, got {ya.shape[-2]}x{ya.shape[-1]}")
    taps = gaussian_taps(WINDOW, SIGMA, ya.dtype, ya.device)
    local_a, local_b, local_f = (_local(y, taps) for y in (ya, yb, yf))  # each image's once: three maps read them
    alike = _ssim(ya, yb, local_a, local_b, taps)
    ssim_a, ssim_b = _ssim(ya, yf, local_a, local_f, taps), _ssim(yb, yf, local_b, local_f, taps)
    var_a, var_b = local_a[1], local_b[1]
    weight = ratio(var_a, var_a + var_b, 0.5)
    q = torch.where(alike >= ALIKE, weight * ssim_a + (1 - weight) * ssim_b, torch.maximum(ssim_a, ssim_b))
    return q.mean(dim=(1, 2, 3))


class QY(PerImageMean, symbol=r"$Q_{Y}$"):
    """Mean Q_Y (Yang et al. 2008), matching the MFIF benchmark toolbox."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qy(a, b, fused)
