"""Window filters outside :mod:`gipc.metrics` (whose import loads torchmetrics, 1 s of every
``gipc-fuse`` start, which imports the baselines): box means and the guided filter built on them (the
decision map's evidence, the GFF and GFDF baselines), and the separable windows of the metrics (SSIM's
Gaussian window, Q_Y's, Q_CB's blurs) and of the dsift baseline's gradients.

On the CPU OpenCV: its box filter keeps running sums in double, whose cost does not grow with the
window (a 91 px guided filter of a 12 MP plane in 0.5 s, where kornia's took 4.3 s), and its separable
filter takes a 12 MP float64 plane through 11 taps in 0.1 s, where torch's convolution took 0.9 s and
unfolded the plane once per tap (11 planes of memory; a 12 MP pair's MS-SSIM held 9.5 GiB through
torchmetrics). Elsewhere (a GPU, a training loop) summed-area tables in float64 and torch's padding and
two 1-D convolutions: the same values to float rounding (tests).
"""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

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


BoxBorder = Literal["replicate", "inside"]
"""``replicate``: the edge pixels repeated outside (kornia's ``box_blur(..., border_type="replicate")``);
``inside``: the mean of the window's pixels inside the image, none made up (He et al.'s reference
``boxfilter(x, r) ./ N``)."""


def box_mean(x: torch.Tensor, size: int, border: BoxBorder = "replicate") -> torch.Tensor:
    """Mean of ``x`` (B, C, H, W) over each ``size`` x ``size`` window (:func:`box_means` of one size)."""
    return next(box_means(x, (size,), border))


def box_means(x: torch.Tensor, sizes: Sequence[int], border: BoxBorder = "replicate") -> Iterator[torch.Tensor]:
    """:func:`box_mean` at each of ``sizes`` in turn, each mean made only when asked for; not differentiable.

    On the CPU in float32 (the map's case), OpenCV's box filter: running sums in double, whose cost
    does not grow with a size, the same values as the tables below to the last bit on the pairs
    measured, and 2-4x faster than them (benchmarks/README.md). Elsewhere (a GPU, float64) one
    summed-area table (float64) per channel: each size past the first costs four shifted reads of
    the tables. A 4000x3000 channel's table takes 0.1 GiB: for one size the channels take turns, for
    several every channel's table is held until the last."""
    if x.device.type == "cpu" and x.dtype == torch.float32:
        yield from _opencv_box_means(x, sizes, border)
    else:
        yield from _table_box_means(x, sizes, border)


def guided_filter(guide: torch.Tensor, p: torch.Tensor, radius: int, eps: float, border: BoxBorder = "replicate") -> torch.Tensor:
    """He, Sun & Tang's guided filter (2013, algorithm 1) of ``p`` (B, C, H, W) under a one-channel
    ``guide`` (B, 1, H, W), in (2 radius + 1)^2 windows: ``kornia.filters.guided_blur`` with
    ``border="replicate"``, the authors' reference code with ``inside``, computed from :func:`box_mean`."""
    size = 2 * radius + 1
    mean_i, mean_p = box_mean(guide, size, border), box_mean(p, size, border)
    slope = box_mean(guide * p, size, border).sub_(mean_i * mean_p)
    slope.div_(box_mean(guide * guide, size, border).sub_(mean_i * mean_i).add_(eps))
    offset = mean_p.sub_(slope * mean_i)
    del mean_i
    return box_mean(slope, size, border).mul_(guide).add_(box_mean(offset, size, border))


def _inside_counts(height: int, width: int, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(H, W): how many of each ``size`` x ``size`` window's pixels lie inside the image."""
    reach = size // 2

    def along(n: int) -> torch.Tensor:
        at = torch.arange(n, device=device)
        return ((at + reach).clamp_max(n - 1) - (at - reach).clamp_min(0) + 1).to(dtype)

    return along(height)[:, None] * along(width)[None, :]  # whole numbers up to size^2: exact in float32


def _opencv_box_means(x: torch.Tensor, sizes: Sequence[int], border: BoxBorder) -> Iterator[torch.Tensor]:
    for size in sizes:
        if size == 1:
            yield x.clone()  # callers change the result in place
        elif border == "replicate":
            yield each_plane(x, lambda plane, mean: cv2.blur(plane, (size, size), dst=mean, borderType=cv2.BORDER_REPLICATE))
        else:
            sums = each_plane(
                x, lambda plane, total: cv2.boxFilter(plane, -1, (size, size), dst=total, normalize=False, borderType=cv2.BORDER_CONSTANT)
            )
            yield sums.div_(_inside_counts(*x.shape[-2:], size, x.dtype, x.device))


def _table_box_means(x: torch.Tensor, sizes: Sequence[int], border: BoxBorder) -> Iterator[torch.Tensor]:
    if len(sizes) == 1 and x.shape[1] > 1:
        yield torch.cat([next(_table_box_means(x[:, i : i + 1], sizes, border)) for i in range(x.shape[1])], dim=1)
        return
    pad = max(sizes, default=1) // 2 + 1  # one more than the widest window needs: the table then needs no row of zeros
    height, width = x.shape[-2:]
    mode = "replicate" if border == "replicate" else "constant"
    tables = [F.pad(x[:, i : i + 1], (pad, pad, pad, pad), mode=mode).double().cumsum_(-1).cumsum_(-2) for i in range(x.shape[1])]
    for size in sizes:
        if size == 1:
            yield x.clone()  # callers change the result in place
            continue
        lo = pad - size // 2 - 1  # output pixel (r, c) sums padded rows and columns lo + r + 1 .. lo + r + size
        hi = lo + size
        area = size * size if border == "replicate" else _inside_counts(height, width, size, torch.float64, x.device)
        means = []
        for table in tables:
            total = table[..., hi : hi + height, hi : hi + width] - table[..., lo : lo + height, hi : hi + width]
            total -= table[..., hi : hi + height, lo : lo + width]
            total += table[..., lo : lo + height, lo : lo + width]
            means.append(total.div_(area).to(x.dtype))
            del total
        yield means[0] if len(means) == 1 else torch.cat(means, dim=1)
