"""Dense SIFT fusion, DSIFT (Liu, Liu & Wang 2015, Information Fusion, "Multi-focus image fusion with
dense SIFT"), one of the strongest classics on the MFIF benchmark.

A decision-map method, ported from the authors' Matlab release with the settings of its demo script
(scale 48, blocks of 8, matching on):

1. Each source's dense SIFT, Ce Liu's ``DenseSIFT`` as the release edits it: the image divided by its
   maximum and replicated 11 px beyond its borders, gradients of a Gaussian (sigma 1), 8 orientation
   planes sharpened by a power of 9 and weighted by the gradient magnitude, each pooled by a 24 px
   triangular window, and 4 x 4 bins 6 px apart read at every pixel: 128 values, whose sum is the
   pixel's activity.
2. An initial map per source: the pixels where every 8 x 8 block over them sums more activity in that
   source (strictly), then its regions and its holes under 3600 px removed (``bwareaopen``, 8-connected).
3. Pixels that neither map holds are settled by matching: each one's descriptor (normalised as Lowe's,
   only where its norm exceeds 1) finds its nearest in the other source's 7 x 7 neighbourhood (the
   first in Matlab's column order among equals), and the pixel takes source A where A's 7 x 7 spatial
   frequency there beats B's at the match while B's loses to A's at its own match, B in the mirrored
   case. Pixels it cannot settle, and those within 3 px of a border, average the two sources.

The release keeps orientation planes and descriptors in single precision, as here: in float64 they
gave the same maps on the 20 Lytro and 10 grayscale pairs, and a 12 MP pair took 0.9 GiB more for one
pixel of its 12 M settled otherwise. It rounds ``rgb2gray`` to 8 bits; here the rest is float64 on
gipc's luminance. Colour as the release fuses it: the map
blends each RGB channel (:data:`gipc.baselines.BASELINES`).
"""

from __future__ import annotations

import math
from typing import Iterator

import cv2
import numpy as np
import torch

from gipc.baselines.inputs import check_pair
from gipc.baselines.rules import without_small_areas
from gipc.errors import BaselineInputError
from gipc.windows import gaussian_taps

ANGLES = 8  # orientation planes
BINS = 4  # spatial bins a side: 4 x 4 x 8 = 128 values
GRADIENT_SIGMA = 1.0  # the release's sigmaGuassian: the Gaussian whose gradient gives the edges
DESCRIPTOR_BYTES = BINS * BINS * ANGLES * 4  # a float32 descriptor
STRIPE_BYTES = 32 * 2**20  # descriptors held at once for the matching, per source


def _gradient_filters() -> tuple[np.ndarray, np.ndarray]:
    """The release's ``genDeltaGaussian``: Matlab's ``gradient`` of ``fspecial('gaussian', 4 ceil(sigma) + 1,
    sigma)`` along x and y, each scaled to an absolute sum of 2 (no tap of this window falls under
    fspecial's cut at eps times the largest)."""
    taps = gaussian_taps(4 * math.ceil(GRADIENT_SIGMA) + 1, GRADIENT_SIGMA).numpy()
    g = np.outer(taps, taps)
    gx, gy = np.gradient(g, axis=1), np.gradient(g, axis=0)
    return gx * 2 / np.abs(gx).sum(), gy * 2 / np.abs(gy).sum()


def _bin_window(patch: int) -> np.ndarray:
    """The release's ``weightX``: a triangle over a bin's width (patch / 4), centred half a pixel before
    the patch's middle."""
    width = np.abs(np.arange(1, patch + 1) - (patch / 2 - 0.5)) / (patch / BINS)
    return (1 - width) * (width <= 1)


def orientation_planes(image: np.ndarray, patch: int) -> np.ndarray:
    """(8, H, W) float32 pooled orientation planes of a (H, W) image, as ``DenseSIFT`` makes them
    before it samples its bins (zero padding as ``filter2``/``conv2`` 'same'; single precision as the
    release keeps them, each pooled in float64 first)."""
    from scipy.ndimage import correlate  # here, not at the top: every gipc-fuse imports the baselines, few run this one

    image = image / (image.max() or 1.0)  # a black image stays 0 (the release divides 0 by 0)
    gx, gy = _gradient_filters()
    vertical, horizontal = correlate(image, gx, mode="constant"), correlate(image, gy, mode="constant")
    magnitude = np.sqrt(vertical**2 + horizontal**2)
    theta = np.arctan2(horizontal, vertical)
    del vertical, horizontal
    cos, sin = np.cos(theta), np.sin(theta)
    del theta
    # conv2(w, w', X, 'same') with an even window: a correlation with the reversed window whose
    # element patch / 2 - 1 sits on the output pixel (OpenCV's threads; float64 as scipy's)
    window = np.ascontiguousarray(_bin_window(patch)[::-1])
    anchor = patch // 2 - 1
    planes = np.empty((ANGLES, *image.shape), np.float32)
    response, power = np.empty_like(cos), np.empty_like(cos)
    for index in range(ANGLES):
        angle = index * 2 * math.pi / ANGLES
        np.multiply(cos, math.cos(angle), out=response)
        response += sin * math.sin(angle)
        np.maximum(response, 0.0, out=response)  # the power is odd: its sign is the response's
        np.multiply(response, response, out=power)  # r^9 as (((r^2)^2)^2) r: 4 products, not pow
        power *= power
        power *= power
        response *= power
        response *= magnitude
        planes[index] = cv2.sepFilter2D(response, cv2.CV_64F, window, window, anchor=(anchor, anchor), borderType=cv2.BORDER_CONSTANT)
    return planes


def _bin_offsets(patch: int) -> list[tuple[int, int]]:
    """(row, column) of each of the 16 bins from a pixel's place on the padded planes, in the release's
    order (``meshgrid`` read column by column: rows vary fastest)."""
    starts = [i * patch // BINS for i in range(BINS)]  # linspace(1, patch + 1, 5)'s first four, 0-based
    return [(row, col) for col in starts for row in starts]


def descriptors(planes: np.ndarray, patch: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(P, 128) descriptors of the pixels (rows, cols): bin-major, orientation-minor, as the release's."""
    bins = [planes[:, rows + dy, cols + dx] for dy, dx in _bin_offsets(patch)]  # each (8, P)
    return np.stack(bins).transpose(2, 0, 1).reshape(rows.size, -1)


def activity(planes: np.ndarray, patch: int, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) sum of each pixel's 128 descriptor values."""
    total = planes.sum(axis=0)
    height, width = shape
    return sum(total[dy : dy + height, dx : dx + width] for dy, dx in _bin_offsets(patch))


def normalise(vectors: np.ndarray) -> np.ndarray:
    """The release's ``DSIFTNormalization`` (after Lowe): descriptors of norm above 1 go to unit length,
    are clipped at 0.2 and renormalised; the others stay as they are."""
    norms = np.sqrt((vectors**2).sum(axis=-1, keepdims=True))
    large = norms[..., 0] > 1
    unit = np.minimum(vectors[large] / norms[large], 0.2)
    out = vectors.copy()
    out[large] = unit / np.sqrt((unit**2).sum(axis=-1, keepdims=True))
    return out


def initial_maps(s1: np.ndarray, s2: np.ndarray, block: int, area: int, certain: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """The release's ``generate_initmap``: for each source, the pixels where more than ``certain`` of the
    ``block`` x ``block`` blocks over them (every placement inside the image) sum more activity in it,
    without regions or holes under ``area`` pixels."""
    height, width = s1.shape
    if height < block or width < block:
        return np.zeros(s1.shape, bool), np.zeros(s1.shape, bool)
    sums = [_window_sums(s, block) for s in (s1, s2)]  # one per block placement
    covered = _window_sums(np.pad(np.ones_like(sums[0]), block - 1), block)
    maps = []
    for own, other in ((sums[0], sums[1]), (sums[1], sums[0])):
        wins = _window_sums(np.pad((own > other).astype(np.float64), block - 1), block)  # blocks over each pixel it won
        chosen = torch.from_numpy(wins / covered > certain)[None, None]
        maps.append(without_small_areas(chosen, area)[0, 0].numpy())
    return maps[0], maps[1]


def _window_sums(x: np.ndarray, size: int) -> np.ndarray:
    """Sums over every ``size`` x ``size`` window inside ``x`` ('valid'), by the same shifted adds at
    every place, so equal windows give equal sums (a running sum would not)."""
    rows = sum(x[k : x.shape[0] - size + 1 + k] for k in range(size))
    return sum(rows[:, k : x.shape[1] - size + 1 + k] for k in range(size))


def spatial_frequency(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, radius: int) -> np.ndarray:
    """The release's ``SF`` of the (2 radius + 1)^2 patch around each (row, col): sqrt of the mean squared
    difference between vertical plus horizontal neighbours, both over the patch's pixel count."""
    side = 2 * radius + 1
    offsets = np.arange(-radius, radius + 1)
    patches = image[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]  # (P, side, side)
    down = ((patches[:, 1:, :] - patches[:, :-1, :]) ** 2).sum(axis=1).sum(axis=1)
    across = ((patches[:, :, 1:] - patches[:, :, :-1]) ** 2).sum(axis=1).sum(axis=1)
    return np.sqrt(down / side**2 + across / side**2)


def _stripes(height: int, width: int, reach: int) -> Iterator[tuple[int, int]]:
    """Row ranges whose descriptors (with ``reach`` rows either side, were every pixel undecided) fit
    :data:`STRIPE_BYTES`, at least 16 rows (a wide image's descriptors then take more)."""
    rows = max(16, STRIPE_BYTES // (width * DESCRIPTOR_BYTES) - 2 * reach)
    for start in range(0, height, rows):
        yield start, min(height, start + rows)


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise squared distances of two (P, 128) arrays: 0 exactly between equal descriptors."""
    x = x - y
    return np.einsum("ij,ij->i", x, x)


def refine(
    decision: np.ndarray,
    images: tuple[np.ndarray, np.ndarray],
    planes: tuple[np.ndarray, np.ndarray],
    patch: int,
    radius: int = 3,
    sf_radius: int = 3,
) -> np.ndarray:
    """The release's ``refine_withmatching``: each undecided pixel (0.5) at least ``radius`` px inside
    the image is settled by matching descriptors within ``radius`` and comparing spatial frequencies
    within ``sf_radius`` (module docstring); returns the map of 1, 0 and 0.5."""
    height, width = decision.shape
    out = decision.copy()
    undecided = decision == 0.5
    undecided[:radius], undecided[height - radius :], undecided[:, :radius], undecided[:, width - radius :] = False, False, False, False
    # neighbours in Matlab's column order: the first of equal distances is the one find() returns first
    shifts = [(dy, dx) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]
    for start, stop in _stripes(height, width, radius):
        ys, xs = np.nonzero(undecided[start:stop])
        if ys.size == 0:
            continue
        ys = ys + start
        # descriptors only where a match may look: the undecided pixels' neighbourhoods, each pixel's
        # once, on the stripe's rows and the ``radius`` rows either side
        top = max(0, start - radius)
        near = np.zeros((min(height, stop + radius) - top, width), np.uint8)
        near[ys - top, xs] = 1
        near = cv2.dilate(near, np.ones((2 * radius + 1,) * 2, np.uint8))
        rows, cols = np.nonzero(near)
        index = np.full(near.shape, -1, dtype=np.int64)
        index[rows, cols] = np.arange(rows.size)
        d1, d2 = (normalise(descriptors(p, patch, rows + top, cols)) for p in planes)
        here = index[ys - top, xs]
        own1, own2 = d1[here], d2[here]
        far1 = np.stack([_squared_distances(d2[index[ys - top + dy, xs + dx]], own1) for dy, dx in shifts], axis=1)
        far2 = np.stack([_squared_distances(d1[index[ys - top + dy, xs + dx]], own2) for dy, dx in shifts], axis=1)
        match1, match2 = (np.array(shifts)[np.argmin(far, axis=1)] for far in (far1, far2))
        y12, x12 = ys + match1[:, 0], xs + match1[:, 1]  # where source B best resembles A's pixel
        y21, x21 = ys + match2[:, 0], xs + match2[:, 1]
        ok = np.ones(ys.size, dtype=bool)  # both matches' patches inside the image
        for v, limit in ((y12, height), (x12, width), (y21, height), (x21, width)):
            ok &= (v >= sf_radius) & (v < limit - sf_radius)
        ys, xs, y12, x12, y21, x21 = (v[ok] for v in (ys, xs, y12, x12, y21, x21))
        fm1 = spatial_frequency(images[0], ys, xs, sf_radius)
        fm1_2 = spatial_frequency(images[1], y12, x12, sf_radius)
        fm2 = spatial_frequency(images[1], ys, xs, sf_radius)
        fm2_1 = spatial_frequency(images[0], y21, x21, sf_radius)
        to_a, to_b = (fm1 > fm1_2) & (fm2 < fm2_1), (fm1 < fm1_2) & (fm2 > fm2_1)
        out[ys[to_a], xs[to_a]] = 1.0
        out[ys[to_b], xs[to_b]] = 0.0
    return out


def dsift_map(a: torch.Tensor, b: torch.Tensor, scale: int = 48, block: int = 8, area: int = 3600) -> torch.Tensor:
    """The decision map (N, 1, H, W): 1 where ``a`` is taken, 0 where ``b`` is, 0.5 where neither wins;
    the defaults are the release's demo settings (descriptor patches of scale / 2 px)."""
    check_pair(a, b)
    if scale < 8 or scale % 8:
        raise BaselineInputError(f"scale must be a positive multiple of 8 (bins of scale / 8 px), got {scale}")
    patch, pad = scale // 2, scale // 4 - 1
    maps = []
    for first, second in zip(a[:, 0].double().cpu().numpy(), b[:, 0].double().cpu().numpy()):
        planes = tuple(orientation_planes(np.pad(image, pad, mode="edge"), patch) for image in (first, second))
        s1, s2 = (activity(p, patch, first.shape) for p in planes)
        m1, m2 = initial_maps(s1, s2, block, area)
        decision = 1.0 * m1 + 0.5 * (1.0 - m1 - m2)
        maps.append(refine(decision, (first, second), planes, patch))
    return torch.from_numpy(np.stack(maps))[:, None].to(device=a.device, dtype=a.dtype)


def dsift(a: torch.Tensor, b: torch.Tensor, scale: int = 48, block: int = 8, area: int = 3600) -> torch.Tensor:
    """DSIFT of two luminance sources (N, 1, H, W) in [0, 1]: the sources blended by :func:`dsift_map`."""
    weight = dsift_map(a, b, scale, block, area)
    return weight * a + (1 - weight) * b
