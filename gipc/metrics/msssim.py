"""MS-SSIM of the fused luminance against both sources (docs/paper.md section 7), on torchmetrics' MS-SSIM."""

from __future__ import annotations

import functools

import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure
from torchmetrics.utilities import rank_zero_warn

from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255_same

#: Wang, Simoncelli and Bovik (2003) scale weights, finest first.
WANG_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11  # the 11-tap Gaussian window (sigma 1.5) of SSIM


def msssim_scales(height: int, width: int) -> int:
    """How many of the 5 scales an image of this size supports (at least 1).

    The coarsest scale must still hold a whole window after the 2x2 poolings, and torchmetrics
    additionally demands ``side // (scales - 1)**2 > 10``: 5 scales need >= 176 px, 4 need >= 99,
    3 need >= 44, 2 need >= 22.
    """
    side = min(height, width)
    if side < _WINDOW:
        raise MetricInputError(f"MS-SSIM needs images of at least {_WINDOW}x{_WINDOW} px, got {height}x{width}")
    return max(
        k
        for k in range(1, len(WANG_BETAS) + 1)
        if side // 2 ** (k - 1) >= _WINDOW and side // max(1, k - 1) ** 2 >= _WINDOW
    )


@functools.cache
def _warn_fewer_scales(scales: int) -> None:
    rank_zero_warn(
        f"MS-SSIM on images under 176 px uses {scales} of Wang's 5 scales, weights renormalised;"
        " values are not comparable with 5-scale MS-SSIM"
    )


def msssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image MS-SSIM (N,) of two (N, 1, H, W) luminance tensors on the 0..255 scale.

    Images too small for 5 scales use the first k of Wang's weights renormalised (warned once per
    k). torchmetrics' ``relu`` normalisation is kept: it equals Wang's formula whenever all
    contrast terms are positive, and gives 0 instead of NaN for anti-correlated images.
    torchmetrics pads the last scale's SSIM map by reflection where Wang et al. use only windows
    inside the image: on lytro-01 the two differ by about 5e-5.
    """
    scales = msssim_scales(x.shape[-2], x.shape[-1])
    if scales < len(WANG_BETAS):
        _warn_fewer_scales(scales)
    # Scaled to the full set's sum (1.0001, not 1), so that 5 scales are exactly Wang's weights.
    betas = tuple(beta * sum(WANG_BETAS) / sum(WANG_BETAS[:scales]) for beta in WANG_BETAS[:scales])
    # float32 convolutions: about 3x faster than float64 on CPU, values within ~2e-6.
    return multiscale_structural_similarity_index_measure(
        x.float(), y.float(), kernel_size=_WINDOW, sigma=1.5, data_range=255.0, betas=betas, reduction="none", normalize="relu"
    ).double()


def fusion_msssim(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image ``(MS-SSIM(A, F) + MS-SSIM(B, F)) / 2`` (N,) on the 0..255 luminance."""
    ya, yb, yf = gray255_same(a, b, fused)
    n = yf.shape[0]
    both = msssim(torch.cat([yf, yf]), torch.cat([ya, yb]))
    return (both[:n] + both[n:]) / 2.0


class FusionMSSSIM(PerImageMean):
    """Mean MS-SSIM of fused images against both sources.

    Images under 176 px (e.g. 80x80 validation patches) get fewer scales: the first k of Wang et
    al.'s weights, renormalised, with a warning once; see :func:`msssim_scales`.
    """

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return fusion_msssim(a, b, fused)
