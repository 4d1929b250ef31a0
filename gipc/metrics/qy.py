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
from gipc.metrics.windows import window_sums

WINDOW, SIGMA = 7, 1.5  # Matlab's fspecial('gaussian', 7, 1.5)
CONSTANT = 2e-16  # C1 = C2 of the toolbox's SSIM
ALIKE = 0.75  # SSIM(A, B) from which both sources are weighed
FLAT = 1e-6
"""A local variance under this is a flat window's rounding error (a window of 0..255 integers that is not flat has one of at least 1e-3)."""


def gaussian_taps(dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """(7,) taps summing to 1 whose outer product is Matlab's ``fspecial('gaussian', 7, 1.5)``."""
    r = torch.arange(WINDOW, dtype=dtype, device=device) - WINDOW // 2
    g = torch.exp(-(r**2) / (2 * SIGMA**2))
    return g / g.sum()


def ssim_maps(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 'valid' SSIM map of (N, 1, H, W) 0..255 integer images and each one's local variance there
    (a flat window's exactly 0)."""
    taps = gaussian_taps(x.dtype, x.device)

    def mean(z: torch.Tensor) -> torch.Tensor:
        return window_sums(z, taps, "valid")

    mu_x, mu_y = mean(x), mean(y)
    var_x, var_y = (torch.where(var.abs() < FLAT, 0.0, var) for var in (mean(x * x) - mu_x**2, mean(y * y) - mu_y**2))
    covariance = torch.where((var_x == 0) | (var_y == 0), 0.0, mean(x * y) - mu_x * mu_y)
    ssim = (2 * mu_x * mu_y + CONSTANT) * (2 * covariance + CONSTANT) / ((mu_x**2 + mu_y**2 + CONSTANT) * (var_x + var_y + CONSTANT))
    return ssim, var_x, var_y


def qy(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_Y (N,) of (N, C, H, W) images in [0, 1] (at least 7 x 7 px)."""
    ya, yb, yf = gray255_same(a, b, fused)
    if min(ya.shape[-2:]) < WINDOW:
        raise MetricInputError(f"Q_Y needs images of at least {WINDOW}x{WINDOW} px, got {ya.shape[-2]}x{ya.shape[-1]}")
    alike, var_a, var_b = ssim_maps(ya, yb)
    ssim_a, ssim_b = ssim_maps(ya, yf)[0], ssim_maps(yb, yf)[0]
    weight = ratio(var_a, var_a + var_b, 0.5)
    q = torch.where(alike >= ALIKE, weight * ssim_a + (1 - weight) * ssim_b, torch.maximum(ssim_a, ssim_b))
    return q.mean(dim=(1, 2, 3))


class QY(PerImageMean):
    """Mean Q_Y (Yang et al. 2008), matching the MFIF benchmark toolbox."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qy(a, b, fused)
