"""Q^AB/F: Xydeas-Petrovic edge preservation, ported from the MFIF benchmark toolbox's ``metricXydeas.m``.

Port details that decide the last digits (Liu et al. 2020, revised Oct 2019):
Sobel kernels applied as correlation (``filter2``) with zero padding, 'same' size; strength
``sqrt(gx^2 + gy^2)``; orientation ``atan(gy / gx)`` with ``gx`` set to 1e-5 where it is 0; strength
ratio ``min/max`` of source and fused strengths, and weights ``g_A^L``, ``g_B^L``, with zero strengths
set to 1e-5 (so the weights of flat pixels are 1e-5, not 0). The toolbox guards the fused strength
in place while scoring source A, so source B meets the guarded value in its comparison and in the
numerator of its ratio; that asymmetry is kept (it moves a score by < 1e-7, but it is the reference).
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255_same
from gipc.planes import each_plane

_GUARD = 1e-5  # the toolbox's replacement for zero denominators


_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel responses of (N, 1, H, W): ``filter2`` with zero padding.

    On the CPU OpenCV's ``filter2D``; elsewhere (or with gradients) torch's convolution, which on the
    CPU unfolds a float64 plane into nine (0.9 GB for 12 MP). On the integer luminance the metrics
    read every sum is exact, so both give the same values (a test)."""
    if y.device.type == "cpu" and not y.requires_grad:
        return tuple(  # type: ignore[return-value]
            each_plane(y, lambda plane, out: cv2.filter2D(plane, -1, kernel, dst=out, borderType=cv2.BORDER_CONSTANT))
            for kernel in (_SOBEL_X, _SOBEL_X.T.copy())
        )
    kx = torch.from_numpy(_SOBEL_X).to(y)
    response = F.conv2d(y, torch.stack([kx, kx.T]).unsqueeze(1), padding=1)  # conv2d correlates
    return response[:, :1], response[:, 1:]


# The arithmetic below runs in place where a plane is not read again: the same float operations as
# the formulas written one new tensor a step (a test holds them to the bit), in a fraction of the
# memory (a 12 MP image's float64 planes are 96 MB each).


def _edges(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge strength ``sqrt(gx^2 + gy^2)`` and orientation ``atan(gy / gx)`` in (-pi/2, pi/2) of (N, 1, H, W) luminance."""
    gx, gy = sobel(y)
    strength = gx.square().add_(gy.square()).sqrt_()
    divisor = torch.where(gx == 0, _GUARD, gx)
    return strength, torch.div(gy, divisor, out=divisor).atan_()


def _guarded(strength: torch.Tensor) -> torch.Tensor:
    return torch.where(strength == 0, _GUARD, strength)


def _sigmoid_(x: torch.Tensor, gamma: float, k: float, sigma: float) -> torch.Tensor:
    """``gamma / (1 + exp(k (x - sigma)))`` in ``x``'s memory, the division as torch takes a number over
    a tensor (its reciprocal times the number)."""
    return x.sub_(sigma).mul_(k).exp_().add_(1.0).reciprocal_().mul_(gamma)


def qabf(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, **params: float) -> torch.Tensor:
    """Per-image Q^AB/F (N,) in [0, 1] of (N, C, H, W) images in [0, 1]; ``params``: the constants of
    :func:`sources_qabf`, whose defaults are the metric's definition."""
    return sources_qabf([a, b], fused, **params)


def sources_qabf(
    sources: Sequence[torch.Tensor],
    fused: torch.Tensor,
    *,
    gamma_g: float = 0.9994,
    k_g: float = -15.0,
    sigma_g: float = 0.5,
    gamma_a: float = 0.9879,
    k_a: float = -22.0,
    sigma_a: float = 0.8,
    weight_exponent: float = 1.0,
) -> torch.Tensor:
    """Per-image Q (N,) in [0, 1] of two or more ``sources`` (a focus sequence's) and ``fused``: Q^AB/F
    for a pair, to the bit.

    The defaults are the toolbox's (Xydeas and Petrovic 2000, Fig. 1): the metric's definition. The
    metric's sum over the pixels of each source's edge preservation, weighted by that source's edge
    strength, runs over every source: ``sum_n sum_p Q^{nF} w_n / sum_n sum_p w_n``. The toolbox's
    passes after the first see the guarded fused strength, as its B pass does.
    """
    *ys, yf = gray255_same(*sources, fused)
    g_f, angle_f = _edges(yf)
    g_f_safe = _guarded(g_f)

    def preservation(y_src: torch.Tensor, g_f_seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g_src, angle_src = _edges(y_src)
        g_src_safe = _guarded(g_src)
        # ratio: g_F / g_src where the source's edge is stronger, else g_src / g_F (each guarded as the toolbox guards it)
        stronger = g_src > g_f_seen
        del g_src
        ratio = torch.where(stronger, g_f_seen, g_src_safe).div_(torch.where(stronger, g_src_safe, g_f_safe))
        del stronger
        alignment = angle_src.sub_(angle_f).abs_().mul_(2.0).div_(math.pi).neg_().add_(1.0)  # 1 - |a_src - a_F| 2 / pi
        q = _sigmoid_(ratio, gamma_g, k_g, sigma_g).mul_(_sigmoid_(alignment, gamma_a, k_a, sigma_a))
        return q, g_src_safe.pow_(weight_exponent)

    q, weights = preservation(ys[0], g_f)
    del g_f
    preserved = q.mul_(weights)
    for y in ys[1:]:  # the toolbox's B pass sees the already guarded G_F
        q, w = preservation(y, g_f_safe)
        preserved.add_(q.mul_(w))
        weights.add_(w)
    return preserved.sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))


class QABF(PerImageMean, symbol=r"$Q^{AB/F}$", sequences=True):
    """Mean Q^AB/F (Xydeas-Petrovic), matching the MFIF benchmark toolbox (over every source of a focus
    sequence: :func:`sources_qabf`); keyword arguments as :func:`sources_qabf`."""

    def __init__(self, **params: float) -> None:
        super().__init__()
        inspect.signature(sources_qabf).bind(None, None, **params)  # a misspelt constant fails here, not mid-epoch
        self.params = params

    def per_image_sources(self, sources: Sequence[torch.Tensor], fused: torch.Tensor, gt: torch.Tensor | None) -> torch.Tensor:
        return sources_qabf(sources, fused, **self.params)
