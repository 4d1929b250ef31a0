"""Guided filtering fusion, GFF (Li, Kang & Hu 2013, IEEE TIP, "Image fusion with guided filtering").

Two-scale decomposition by an average filter; saliency = Gaussian-smoothed absolute Laplacian;
choose-max weight maps refined by guided filtering, coarse for the base layer and fine for the detail layer.
Defaults are the paper's parameters, for images in [0, 1].
"""

from __future__ import annotations

import cv2
import kornia
import numpy as np
import torch

from gipc.baselines.inputs import check_odd, check_pair
from gipc.color import luma
from gipc.planes import each_plane, opencv_takes
from gipc.windows import box_mean, gaussian_taps, guided_filter

# the 3x3 (4-neighbour) Laplacian of the paper's saliency step
_LAPLACIAN = torch.tensor([[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]])


def saliency(x: torch.Tensor, r_g: int = 5, sigma_g: float = 5.0) -> torch.Tensor:
    """``|L * x| * g``: local contrast, with a (2 r_g + 1)^2 Gaussian of std ``sigma_g`` (borders replicated).

    On CPUs in float32 OpenCV's filters, a plane at a time: kornia's convolutions held 0.8 GB more
    for one 12 MP plane (the values agree to float32 rounding, a test). Elsewhere kornia's."""
    if opencv_takes(x):
        laplacian, taps = _LAPLACIAN[0].numpy(), gaussian_taps(2 * r_g + 1, sigma_g, torch.float32).numpy()

        def write(plane: np.ndarray, out: np.ndarray) -> None:
            high = np.abs(cv2.filter2D(plane, -1, laplacian, borderType=cv2.BORDER_REPLICATE))
            cv2.sepFilter2D(high, -1, taps, taps, dst=out, borderType=cv2.BORDER_REPLICATE)

        return each_plane(x, write)
    high = kornia.filters.filter2d(x, _LAPLACIAN.to(x), border_type="replicate").abs()
    return kornia.filters.gaussian_blur2d(high, 2 * r_g + 1, (sigma_g, sigma_g), border_type="replicate")


def _normalized(w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
    """Share of ``a`` among non-negative weights; 1/2 where both vanish (guided filtering may overshoot below 0)."""
    w_a, w_b = w_a.clamp_min(0), w_b.clamp_min(0)
    total = w_a + w_b
    return torch.where(total > 0, w_a / total.clamp_min(torch.finfo(total.dtype).tiny), torch.full_like(total, 0.5))


def gff_weights(
    a: torch.Tensor, b: torch.Tensor, r_g: int = 5, sigma_g: float = 5.0, r1: int = 45, eps1: float = 0.3, r2: int = 7, eps2: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """A's weights (N, 1, H, W) for the base and the detail layer, from two luminance sources; each
    source guides the refinement of its own weight map."""
    check_pair(a, b)
    pick_a = (saliency(a, r_g, sigma_g) >= saliency(b, r_g, sigma_g)).to(a.dtype)
    w_base = _normalized(guided_filter(a, pick_a, r1, eps1), guided_filter(b, 1 - pick_a, r1, eps1))
    return w_base, _normalized(guided_filter(a, pick_a, r2, eps2), guided_filter(b, 1 - pick_a, r2, eps2))


def two_scale_fusion(a: torch.Tensor, b: torch.Tensor, w_base: torch.Tensor, w_detail: torch.Tensor, base_size: int = 31) -> torch.Tensor:
    """Sources (N, C, H, W) fused channel by channel: base layers (``base_size`` box means) under
    ``w_base``, the details under ``w_detail``."""
    check_odd("base_size", base_size)
    base_a, base_b = box_mean(a, base_size), box_mean(b, base_size)
    detail_a, detail_b = a - base_a, b - base_b
    base = base_a.sub_(base_b).mul_(w_base).add_(base_b)  # w B_a + (1 - w) B_b, in place: a 12 MP pair's RGB planes are 144 MB each
    return detail_a.sub_(detail_b).mul_(w_detail).add_(detail_b).add_(base).clamp_(0.0, 1.0)


def gff(
    a: torch.Tensor,
    b: torch.Tensor,
    base_size: int = 31,
    r_g: int = 5,
    sigma_g: float = 5.0,
    r1: int = 45,
    eps1: float = 0.3,
    r2: int = 7,
    eps2: float = 1e-6,
) -> torch.Tensor:
    """GFF of two luminance sources (:func:`gff_weights`, :func:`two_scale_fusion`)."""
    return two_scale_fusion(a, b, *gff_weights(a, b, r_g, sigma_g, r1, eps1, r2, eps2), base_size)


def gff_rgb(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GFF of two RGB sources (N, 3, H, W) as the authors' release fuses colour: the weights from the
    luminance, each channel's two layers fused under them."""
    return two_scale_fusion(a, b, *gff_weights(luma(a), luma(b)))
