"""Spatial choose-max of a Laplacian focus measure with a consistency (majority) filter.

Focus measure: sum-modified-Laplacian (Nayar & Nakagawa 1994), the best spatial measure in
Huang & Jing 2007, "Evaluation of focus measures in multi-focus image fusion"; consistency
verification by majority filtering of the binary decision map as in Li, Manjunath & Mitra 1995.
"""

from __future__ import annotations

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F

from gipc.baselines.inputs import check_odd, check_pair
from gipc.baselines.rules import majority_filter
from gipc.planes import each_plane, opencv_takes

_SECOND_DIFFERENCE = np.array([[1.0, -2.0, 1.0]], dtype=np.float32)


def modified_laplacian(x: torch.Tensor) -> torch.Tensor:
    """``|d2I/dx2| + |d2I/dy2|`` per pixel, borders replicated (unlike the Laplacian, the two terms cannot cancel).

    On the CPU in float32 (without gradients), OpenCV's [1, -2, 1] filters: the same values to the
    bit as the shifted views below, 4.6x faster on two 520x520 planes (4.2x on two 4000x3000).
    Elsewhere the second differences ``I(x-1) - 2 I(x) + I(x+1)`` are taken from shifted views: 40x
    faster on two channels than kornia's filter2d."""
    if opencv_takes(x):
        return each_plane(x, _opencv_modified_laplacian)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    centre = padded[..., 1:-1, 1:-1]
    dx = padded[..., 1:-1, :-2] - 2 * centre + padded[..., 1:-1, 2:]
    dy = padded[..., :-2, 1:-1] - 2 * centre + padded[..., 2:, 1:-1]
    return dx.abs_() + dy.abs_()


def _opencv_modified_laplacian(plane: np.ndarray, out: np.ndarray) -> None:
    """One (H, W) float32 plane's modified Laplacian, written into ``out``."""
    cv2.filter2D(plane, cv2.CV_32F, _SECOND_DIFFERENCE, dst=out, borderType=cv2.BORDER_REPLICATE)
    across = cv2.filter2D(plane, cv2.CV_32F, _SECOND_DIFFERENCE.T, borderType=cv2.BORDER_REPLICATE)
    np.abs(out, out=out)
    out += np.abs(across, out=across)


def sum_modified_laplacian(x: torch.Tensor, window: int = 5) -> torch.Tensor:
    """Local focus energy: the modified Laplacian averaged over a ``window`` x ``window`` neighbourhood."""
    check_odd("window", window)
    return kornia.filters.box_blur(modified_laplacian(x), window, border_type="replicate")


def laplacian_energy_decision(a: torch.Tensor, b: torch.Tensor, window: int = 5, filter_size: int = 11) -> torch.Tensor:
    """Binary map (N, 1, H, W): 1 where ``a`` is in focus, after a ``filter_size`` majority filter.

    The majority filter removes isolated wrong decisions in flat areas, where both energies are near zero.
    Neither paper fixes the sizes for our images; 5 and 11 are this project's defaults, the best of a
    window 3-9 x filter 1-21 sweep by MSE on a synthetic pair (skimage camera, a sharp disc in A and
    the blurred rest sharp in B), not tuned on the Lytro test images.
    """
    check_pair(a, b)
    check_odd("filter_size", filter_size)
    raw = (sum_modified_laplacian(a, window) >= sum_modified_laplacian(b, window)).to(a.dtype)
    return majority_filter(raw, filter_size)


def laplacian_energy(a: torch.Tensor, b: torch.Tensor, window: int = 5, filter_size: int = 11) -> torch.Tensor:
    """Copy each pixel from the source with the larger sum-modified-Laplacian (see the module docstring)."""
    decision = laplacian_energy_decision(a, b, window, filter_size)
    return decision * a + (1 - decision) * b
