"""MS-SSIM of the fused luminance against both sources (docs/paper.md section 7), as torchmetrics' MS-SSIM computes it."""

from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torchmetrics.utilities import rank_zero_warn

from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255_same
from gipc.windows import gaussian_taps, window_sums

#: Wang, Simoncelli and Bovik (2003) scale weights, finest first.
WANG_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW, _SIGMA = 11, 1.5  # the 11-tap Gaussian window of SSIM
_K1, _K2, _RANGE = 0.01, 0.03, 255.0  # SSIM's constants on the 0..255 scale


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


def ssim_means(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (N,) of two (N, 1, H, W) float64 luminances on the 0..255 scale: the mean SSIM over
    the whole map (torchmetrics' ``structural_similarity_index_measure``: the borders' windows over
    a reflected image) and the mean contrast-structure term over the map's inside (the part MS-SSIM
    reads at its finer scales)."""
    taps = gaussian_taps(_WINDOW, _SIGMA, x.dtype, x.device)
    pad = _WINDOW // 2
    c1, c2 = (_K1 * _RANGE) ** 2, (_K2 * _RANGE) ** 2
    mu_x, mu_y = window_sums(x, taps, "reflect"), window_sums(y, taps, "reflect")
    mu_xy = mu_x * mu_y
    mu_x.square_()
    mu_y.square_()
    var_x = (window_sums(x * x, taps, "reflect") - mu_x).clamp_(min=0.0)
    var_y = (window_sums(y * y, taps, "reflect") - mu_y).clamp_(min=0.0)
    upper = (window_sums(x * y, taps, "reflect") - mu_xy).mul_(2).add_(c2)
    lower = var_x.add_(var_y).add_(c2)
    del var_y
    contrast = upper / lower
    similarity = (2 * mu_xy + c1).mul_(upper).div_(mu_x.add_(mu_y).add_(c1).mul_(lower))
    inside = contrast[..., pad:-pad, pad:-pad]
    return similarity.flatten(1).mean(1), inside.flatten(1).mean(1)


def msssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image MS-SSIM (N,) of two (N, 1, H, W) luminance tensors on the 0..255 scale.

    torchmetrics' ``multiscale_structural_similarity_index_measure`` (Gaussian window of 11 taps,
    sigma 1.5, K1 0.01, K2 0.03, reflection padding, 2 x 2 average pooling between scales, ``relu``
    normalisation), in float64, its 11 x 11 window as two 11-tap passes and one window sum at a
    time: torchmetrics held about 90 planes of an image at once (4.3 GiB for one 12 MP pair in
    float32, 8.7 GiB and 3.4x the time for two in one batch). On the 20 Lytro pairs within 3e-9 of
    torchmetrics in float64 (its float32, used before, strayed by up to 1.1e-5).

    Images too small for 5 scales use the first k of Wang's weights renormalised (warned once per
    k). ``relu`` equals Wang's formula whenever all contrast terms are positive, and gives 0
    instead of NaN for anti-correlated images. The last scale's SSIM map is padded by reflection
    where Wang et al. use only windows inside the image: on lytro-01 the two differ by about 5e-5.
    """
    scales = msssim_scales(x.shape[-2], x.shape[-1])
    if scales < len(WANG_BETAS):
        _warn_fewer_scales(scales)
    # Scaled to the full set's sum (1.0001, not 1), so that 5 scales are exactly Wang's weights.
    betas = [beta * sum(WANG_BETAS) / sum(WANG_BETAS[:scales]) for beta in WANG_BETAS[:scales]]
    x, y = x.double(), y.double()
    terms = []
    for scale in range(scales):
        similarity, contrast = ssim_means(x, y)
        terms.append((similarity if scale == scales - 1 else contrast).relu())
        x, y = F.avg_pool2d(x, (2, 2)), F.avg_pool2d(y, (2, 2))
    return torch.stack(terms).pow(torch.tensor(betas, dtype=x.dtype, device=x.device).view(-1, 1)).prod(dim=0)


def fusion_msssim(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image ``(MS-SSIM(A, F) + MS-SSIM(B, F)) / 2`` (N,) on the 0..255 luminance."""
    return sources_msssim([a, b], fused)


def sources_msssim(sources: Sequence[torch.Tensor], fused: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``MS-SSIM(S, F)`` over two or more ``sources`` (a focus sequence's), on the 0..255 luminance."""
    *ys, yf = gray255_same(*sources, fused)
    return sum(msssim(yf, y) for y in ys) / len(ys)


class FusionMSSSIM(PerImageMean, symbol="MS-SSIM", sequences=True):
    """Mean MS-SSIM of fused images against both sources (every source of a focus sequence).

    Images under 176 px (e.g. 80x80 validation patches) get fewer scales: the first k of Wang et
    al.'s weights, renormalised, with a warning once; see :func:`msssim_scales`.
    """

    def per_image_sources(self, sources: Sequence[torch.Tensor], fused: torch.Tensor, gt: torch.Tensor | None) -> torch.Tensor:
        return sources_msssim(sources, fused)
