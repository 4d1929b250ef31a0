"""Separable window filters of the metrics (SSIM's Gaussian window, Q_Y's, Q_CB's blurs) and of the
dsift baseline's gradients, on (N, 1, H, W) float64 planes. Outside :mod:`gipc.metrics`, whose
import loads torchmetrics (1 s of every ``gipc-fuse`` start, which imports the baselines).

On the CPU OpenCV's separable filter: a 12 MP float64 plane through 11 taps in 0.1 s, where torch's
convolution took 0.9 s and unfolded the plane once per tap (11 planes of memory; a 12 MP pair's
MS-SSIM held 9.5 GiB through torchmetrics). Elsewhere (a GPU's training loop) torch's padding and
two 1-D convolutions: the same values to float64 rounding (a test).
"""

from __future__ import annotations

from typing import Literal

import cv2
import torch
import torch.nn.functional as F

from gipc.planes import each_plane

Border = Literal["reflect", "zeros", "valid"]
"""``reflect``: the image mirrored without repeating its edge (torch's "reflect", OpenCV's
REFLECT_101); ``zeros``: zeros outside (Matlab's ``filter2(..., 'same')``); ``valid``: only windows
inside the image (``filter2(..., 'valid')``), the output smaller by the taps less one."""

_OPENCV_BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "zeros": cv2.BORDER_CONSTANT, "valid": cv2.BORDER_REFLECT_101}


def gaussian_taps(size: int, sigma: float, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """(size,) Gaussian taps summing to 1, whose outer product is the normalised 2-D window (SSIM's,
    Matlab's ``fspecial('gaussian', size, sigma)``)."""
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    taps = torch.exp(-((x / sigma) ** 2) / 2)
    return taps / taps.sum()


def window_sums(x: torch.Tensor, taps: torch.Tensor, border: Border) -> torch.Tensor:
    """``x`` (N, 1, H, W) correlated with the separable window ``outer(taps, taps)`` (odd length)."""
    if x.device.type != "cpu":
        return convolved_sums(x, taps, border)
    kernel = taps.to(x.dtype).numpy()
    depth = cv2.CV_64F if x.dtype == torch.float64 else cv2.CV_32F
    out = each_plane(x, lambda plane, target: cv2.sepFilter2D(plane, depth, kernel, kernel, dst=target, borderType=_OPENCV_BORDERS[border]))
    if border == "valid":
        reach = taps.numel() // 2
        return out[..., reach:-reach, reach:-reach]
    return out


def local_moments(x: torch.Tensor, taps: torch.Tensor, border: Border) -> tuple[torch.Tensor, torch.Tensor]:
    """The local mean and variance of ``x`` (N, 1, H, W) in the window of ``taps``, the variance in
    one pass, ``E[x^2] - E[x]^2``, as the toolbox's metrics compute it."""
    mean = window_sums(x, taps, border)
    return mean, window_sums(x * x, taps, border) - mean**2


def convolved_sums(x: torch.Tensor, taps: torch.Tensor, border: Border) -> torch.Tensor:
    """:func:`window_sums` through torch: padding, then the taps down the columns and along the rows."""
    reach = taps.numel() // 2
    if border != "valid":
        x = F.pad(x, (reach,) * 4, mode="reflect" if border == "reflect" else "constant")
    taps = taps.to(x.dtype)
    return F.conv2d(F.conv2d(x, taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1))
