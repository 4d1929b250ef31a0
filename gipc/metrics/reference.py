"""PSNR and SSIM against an all-in-focus ground truth (docs/paper.md section 7, synthetic test sets only).

Both use the same 0..255 integer luminance as the no-reference metrics, with data range 255.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255_same
from gipc.metrics.msssim import ssim_means


def psnr(fused: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB (N,) of the luminance; inf where the image equals the ground truth."""
    yf, yg = gray255_same(fused, gt)
    return peak_signal_noise_ratio(yf, yg, data_range=255.0, reduction="none", dim=(1, 2, 3))


def ssim(fused: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (N,) of the luminance: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03.

    torchmetrics' convention: the SSIM map is averaged over every pixel, the windows at the borders
    over a mirrored image, where Wang's ssim.m and scikit-image keep only windows inside the image
    (1.7e-3 apart on a 32 px test image; the gap shrinks as images grow). Computed as MS-SSIM's
    finest scale is (:func:`gipc.metrics.msssim.ssim_means`): a 12 MP pair in about a tenth of the
    memory torchmetrics' own function takes."""
    yf, yg = gray255_same(fused, gt)
    return ssim_means(yf, yg)[0]


def _require(gt: torch.Tensor | None, name: str) -> torch.Tensor:
    if gt is None:
        raise MetricInputError(f"{name} compares with the ground truth: pass gt= to update()")
    return gt


class ReferencePSNR(PerImageMean, symbol="PSNR", sequences=True):
    """Mean of per-image PSNRs against the ground truth (not PSNR of the pooled MSE)."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return psnr(fused, _require(gt, "PSNR"))


class ReferenceSSIM(PerImageMean, symbol="SSIM", sequences=True):
    """Mean of per-image SSIMs against the ground truth."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return ssim(fused, _require(gt, "SSIM"))
