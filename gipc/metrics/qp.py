"""Q_P: Zhao et al.'s (2007) phase-congruency fusion metric, ported from the MFIF benchmark
toolbox's ``metricZhao.m`` (``pc_assessFusion``).

Port details: three feature maps of each 0..255 luminance, its phase congruency and the maximum
and minimum moments of it (:mod:`gipc.metrics.phase_congruency`, edges and corners). A source's
features count where its PC exceeds 0.1; the "max" reference takes each map from the source of the
higher PC. For each map the local correlation (Gaussian window 11 x 11, sigma 1.5, zero padding,
``(cov + C) / (sqrt|var_S var_F| + C)``, C = 1e-4) of F with A, with B and with the reference, each
source's masked to its features (F's is not), 0 outside them; the best of the three at each pixel,
summed over the image and divided by the reference's feature count. Q_P is the product of the
three maps' scores, 1 at best.

The constants make a window where F is flat correlate 1 with any source (C / C), so a flat F
scores near 1 (0.999 on a Lytro pair, the toolbox's 0 / 0 aside): read Q_P beside other metrics.
Where neither source has a feature (0 / 0 in the toolbox) there is nothing F could lose: 1.
"""

from __future__ import annotations

from functools import reduce

import torch

from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean, ratio
from gipc.metrics.luminance import gray255_same
from gipc.metrics.phase_congruency import LogGabor, phase_congruency
from gipc.windows import gaussian_taps, local_moments, window_sums

FEATURE = 0.1  # fea_threshold: the PC above which a pixel holds a feature
WINDOW, SIGMA = 11, 1.5  # the local correlation's window, fspecial('gaussian', 11, 1.5)
CONSTANT = 1e-4  # C1 = C2 = C3


def _correlation(source: torch.Tensor, fused: torch.Tensor, fused_moments: tuple[torch.Tensor, torch.Tensor], taps: torch.Tensor) -> torch.Tensor:
    """``(cov + C) / (sqrt|var_S var_F| + C)`` of two (N, 1, H, W) maps in the Gaussian window (zero
    padding), F's :func:`~gipc.windows.local_moments` given."""
    (mean_s, var_s), (mean_f, var_f) = local_moments(source, taps, "zeros"), fused_moments
    cov = window_sums(source * fused, taps, "zeros") - mean_s * mean_f
    return (cov + CONSTANT) / (torch.sqrt((var_s * var_f).abs()) + CONSTANT)


def _preserved(maps: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], masks: tuple[torch.Tensor, ...], taps: torch.Tensor) -> torch.Tensor:
    """One feature map's score (N,): ``correlation_coeffcient`` of the toolbox (F's moments made once for the three sources)."""
    *sources, fused = maps
    fused_moments = local_moments(fused, taps, "zeros")
    best = reduce(
        torch.maximum,
        (torch.where(mask, _correlation(torch.where(mask, source, 0.0), fused, fused_moments, taps), 0.0) for source, mask in zip(sources, masks)),
    )
    return ratio(best.sum(dim=(1, 2, 3)), masks[-1].sum(dim=(1, 2, 3)).to(best.dtype), 1.0)


def qp(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_P (N,) of (N, C, H, W) images in [0, 1] (at least 2 x 2 px)."""
    ya, yb, yf = gray255_same(a, b, fused)
    if min(ya.shape[-2:]) < 2:  # the frequency grid of an odd side n is divided by n - 1
        raise MetricInputError(f"Q_P needs images of at least 2x2 px, got {ya.shape[-2]}x{ya.shape[-1]}")
    filters = LogGabor(*ya.shape[-2:], ya.device)
    (pc_a, max_a, min_a), (pc_b, max_b, min_b), (pc_f, max_f, min_f) = (
        tuple(torch.stack(maps).unsqueeze(1) for maps in zip(*(phase_congruency(image, filters) for image in y[:, 0]))) for y in (ya, yb, yf)
    )
    a_higher = pc_a > pc_b
    pc_max = torch.where(a_higher, pc_a, pc_b)
    masks = (pc_a > FEATURE, pc_b > FEATURE, pc_max > FEATURE)
    taps = gaussian_taps(WINDOW, SIGMA, ya.dtype, ya.device)
    pc, maximum, minimum = (
        _preserved((feature_a, feature_b, torch.where(a_higher, feature_a, feature_b), feature_f), masks, taps)
        for feature_a, feature_b, feature_f in ((pc_a, pc_b, pc_f), (max_a, max_b, max_f), (min_a, min_b, min_f))
    )
    return pc * maximum * minimum


class QP(PerImageMean, symbol=r"$Q_{P}$"):
    """Mean Q_P (Zhao et al. 2007), matching the MFIF benchmark toolbox; 1 at best."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qp(a, b, fused)
