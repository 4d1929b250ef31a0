"""Discrete wavelet transform fusion (Li, Manjunath & Mitra 1995) with the orthonormal Haar wavelet.

Detail sub-bands: area-based maximum selection (largest magnitude in a window) followed by consistency
verification (majority filter of the decision map), as in the paper; approximation: average.
"""

from __future__ import annotations

import torch

from gipc.baselines.inputs import check_odd, check_pair
from gipc.baselines.rules import area_activity, fitting_levels, majority_filter, pad_even


def haar_analysis(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Haar level of an even-sized image: approximation (N, C, H/2, W/2) and details (N, 3C, H/2, W/2)."""
    p, q = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    r, s = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    approx = (p + q + r + s) / 2
    details = torch.cat([(p + q - r - s) / 2, (p - q + r - s) / 2, (p - q - r + s) / 2], dim=1)
    return approx, details


def haar_synthesis(approx: torch.Tensor, details: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_analysis`."""
    v, h, d = details.chunk(3, dim=1)
    n, c, hh, ww = approx.shape
    x = approx.new_empty(n, c, 2 * hh, 2 * ww)
    x[..., 0::2, 0::2] = (approx + v + h + d) / 2
    x[..., 0::2, 1::2] = (approx + v - h - d) / 2
    x[..., 1::2, 0::2] = (approx - v + h - d) / 2
    x[..., 1::2, 1::2] = (approx - v - h + d) / 2
    return x


def dwt(a: torch.Tensor, b: torch.Tensor, levels: int = 4, window: int = 3, consistency: int = 3) -> torch.Tensor:
    """Fuse in a ``levels``-deep Haar DWT; fewer levels where the image is too small (coarsest >= 8 px).

    ``window`` is the activity window and ``consistency`` the majority-filter size (both 3x3 in the paper);
    ``levels`` = 4 matches :func:`gipc.baselines.laplacian_pyramid` (the paper does not fix it).
    """
    check_pair(a, b)
    check_odd("window", window)
    check_odd("consistency", consistency)
    depth = fitting_levels(levels, a.shape[-2], a.shape[-1])
    sizes, details = [], []
    for _ in range(depth):
        sizes.append(a.shape[-2:])
        a, det_a = haar_analysis(pad_even(a))
        b, det_b = haar_analysis(pad_even(b))
        pick_a = majority_filter((area_activity(det_a, window) >= area_activity(det_b, window)).to(a.dtype), consistency)
        details.append(pick_a * det_a + (1 - pick_a) * det_b)
    x = (a + b) / 2
    for (height, width), det in zip(reversed(sizes), reversed(details)):
        x = haar_synthesis(x, det)[..., :height, :width]
    return x.clamp(0.0, 1.0)
