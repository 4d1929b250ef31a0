"""Q_CB: Chen and Blum's (2009) perceptual fusion metric, ported from the MFIF benchmark toolbox's
``metricChenBlum.m``.

Each image's 0..255 luminance is stretched to its own full range and rounded (as for
:mod:`gipc.metrics.qmi`), filtered by a contrast sensitivity function in the frequency domain (a
difference of Gaussians of the radial frequency, f0 15.3870, f1 1.3456, a 0.7622, frequencies on
Matlab's ``freqspace`` grid scaled by the image's size over 30), and its local contrast taken as
the ratio of two Gaussian blurs (31 x 31 kernels of sigma 2 and 4, unnormalised, zero padding) less
1, in magnitude (the filtered image is complex where the grid is not symmetric). Contrast ``C``
becomes masked contrast ``C^3 / (C^2 + 1e-4)``; each source's preservation in F is the smaller of
its masked contrast and F's over the larger, weighted by the source's share of the squared masked
contrasts, and Q_CB is the mean over the image, 0..1.

Where the toolbox divides 0 by 0 (a flat image: it stretches to 0, and so do its blurs) the
contrast is 0, a contrast kept where source and F both have none counts 1, and two sources
without contrast weigh half and half: a flat F scores 0 against textured sources, not NaN.
"""

from __future__ import annotations

import math

import torch

from gipc.metrics.base import PerImageMean, ratio
from gipc.metrics.luminance import gray255_same
from gipc.metrics.qmi import stretched
from gipc.windows import window_sums

F0, F1, A = 15.3870, 1.3456, 0.7622  # the contrast sensitivity function's difference of Gaussians
SCALE = 30  # frequencies scaled by the image's side over this (the toolbox's "DoG1")
SIGMAS = (2.0, 4.0)  # the local contrast's two Gaussian blurs
REACH = 15  # their kernels span -15..15 px
P, Q, Z = 3.0, 2.0, 1e-4  # masked contrast C^P / (C^Q + Z)


def _frequencies(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Matlab ``freqspace`` along one side of ``n`` px: ((0..n-1) - floor(n / 2)) * 2 / n."""
    return (torch.arange(n, dtype=dtype, device=device) - n // 2) * (2.0 / n)


def sensitivity(height: int, width: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """(H, W) contrast sensitivity on the centred (``fftshift``) frequency grid."""
    v = _frequencies(height, dtype, device) * (height / SCALE)
    u = _frequencies(width, dtype, device) * (width / SCALE)
    r = torch.sqrt(u[None, :] ** 2 + v[:, None] ** 2)
    return torch.exp(-((r / F0) ** 2)) - A * torch.exp(-((r / F1) ** 2))


def _gaussian(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(31,) taps whose outer product is the toolbox's unnormalised 2-D Gaussian ``exp(-(x^2 + y^2) / 2 s^2) / (2 pi s^2)``."""
    x = torch.arange(-REACH, REACH + 1, dtype=dtype, device=device)
    return torch.exp(-x * x / (2 * sigma * sigma)) / math.sqrt(2 * math.pi * sigma * sigma)


def _blur(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``filter2(G, x, 'same')`` of a complex (N, 1, H, W) image with the separable Gaussian ``G`` of
    ``taps``: zero padding, the real and imaginary parts apart."""
    return torch.complex(*(window_sums(part.contiguous(), taps, "zeros") for part in (x.real, x.imag)))


def masked_contrast(y: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 0..255 luminance -> its masked local contrast after contrast sensitivity filtering."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(y), dim=(-2, -1)) * sensitivity(*y.shape[-2:], y.dtype, y.device)
    filtered = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)))
    narrow, wide = (_blur(filtered, _gaussian(sigma, y.dtype, y.device)) for sigma in SIGMAS)
    contrast = (ratio(narrow, wide, 1.0) - 1).abs()  # a flat image's blurs are 0: contrast 0
    return contrast**P / (contrast**Q + Z)


def qcb(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_CB (N,) in [0, 1] of (N, C, H, W) images in [0, 1]."""
    ca, cb, cf = (masked_contrast(stretched(y)) for y in gray255_same(a, b, fused))
    kept_a, kept_b = (ratio(torch.minimum(c, cf), torch.maximum(c, cf), 1.0) for c in (ca, cb))  # 1: no contrast to keep
    weight_a = ratio(ca * ca, ca * ca + cb * cb, 0.5)
    return (weight_a * kept_a + (1 - weight_a) * kept_b).mean(dim=(1, 2, 3))


class QCB(PerImageMean, symbol=r"$Q_{CB}$"):
    """Mean Q_CB (Chen and Blum 2009), matching the MFIF benchmark toolbox."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qcb(a, b, fused)
