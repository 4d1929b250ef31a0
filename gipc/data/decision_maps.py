"""Decision-map sources for MFI-DRC synthesis (docs/paper.md section 6), chosen by name.

A decision map is a (1, H, W) tensor in [0, 1], 1 where source A is in focus. The paper used
Deep Region Competition (DRC, Yu et al. 2021) foreground extraction; ``region_competition``
stands in for it with classic two-phase Chan-Vese region competition. Every source shares the
signature ``(image, generator, **options)`` so :func:`make_map` can dispatch on a config string.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.draw import line as skimage_line
from skimage.morphology import disk
from skimage.segmentation import morphological_chan_vese

from gipc.color import luma
from gipc.data.synthesis import fitted_size, random_blobs
from gipc.errors import DataError
from gipc.imaging import read_image


def _resize(plane: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an (H, W) plane; area averaging when shrinking so thin structures survive."""
    mode = "area" if size[0] <= plane.shape[0] and size[1] <= plane.shape[1] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(plane[None, None].float(), size=size, mode=mode, **kwargs)[0, 0]


def _clean(mask: np.ndarray, radius: int, min_area: float) -> np.ndarray:
    """Opening, closing and hole filling, then drop components under ``min_area`` of the image."""
    if radius > 0:
        mask = ndimage.binary_opening(mask, disk(radius), border_value=0)
        mask = ndimage.binary_closing(mask, disk(radius), border_value=0)
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_area * mask.size
        keep[0] = False
        mask = keep[labels]
    return mask


def region_competition(
    image: torch.Tensor,
    generator: torch.Generator | None = None,
    work_side: int = 96,
    iterations: int = 40,
    smoothing: int = 2,
    radius: int = 2,
    min_area: float = 0.01,
) -> torch.Tensor:
    """Foreground by two-phase region competition (morphological Chan-Vese) on the luminance.

    Chan-Vese lets two regions compete for pixels by intensity, which is the classic ancestor of
    DRC's learned competition. The phase whose pixels lie nearer the image centre on average is
    taken as the foreground (photographers centre their subject), then cleaned morphologically.
    The segmentation runs at ``work_side`` pixels on the longest side for speed and the map is
    upsampled back. Deterministic: ``generator`` is unused.
    """
    y = luma(image)[0]
    height, width = y.shape
    scale = min(1.0, work_side / max(height, width))
    small = (max(1, round(height * scale)), max(1, round(width * scale)))
    plane = _resize(y, small).numpy().astype(np.float64)
    phase = morphological_chan_vese(plane, iterations, init_level_set="disk", smoothing=smoothing).astype(bool)
    rows, cols = np.mgrid[0 : small[0], 0 : small[1]]
    dist = np.hypot((rows + 0.5) / small[0] - 0.5, (cols + 0.5) / small[1] - 0.5)
    inside = dist[phase].mean() if phase.any() else math.inf
    outside = dist[~phase].mean() if (~phase).any() else math.inf
    mask = _clean(phase if inside <= outside else ~phase, radius, min_area)
    full = _resize(torch.from_numpy(mask.astype(np.float32)), (height, width))
    return (full > 0.5).float()[None]


def disparity(
    image: torch.Tensor,
    generator: torch.Generator | None = None,
    depth: torch.Tensor | None = None,
    quantile: float = 0.5,
    nearer_is_larger: bool = True,
) -> torch.Tensor:
    """Focus on the near half of the scene: threshold a (H, W) disparity or depth map.

    Disparity grows towards the camera (``nearer_is_larger=True``); pass ``False`` for depth.
    Pixels without a finite value (occlusions) are background. ``quantile`` of the valid values is
    the cut, so 0.5 puts the nearer half in focus in A.
    """
    if depth is None:
        raise DataError("the 'disparity' map source needs a depth or disparity map for each image (--mask-dir)")
    depth = depth.squeeze()
    if depth.shape != image.shape[-2:]:
        raise DataError(f"depth map {tuple(depth.shape)} does not match image {tuple(image.shape[-2:])}")
    if not 0.0 < quantile < 1.0:
        raise DataError(f"disparity quantile must be in (0, 1), got {quantile}")
    valid = torch.isfinite(depth)
    if not valid.any():
        raise DataError("depth map has no finite values")
    values = depth[valid].double()
    cut = values.kthvalue(max(1, round(quantile * values.numel()))).values
    near = depth > cut if nearer_is_larger else depth <= cut
    return (near & valid).float()[None]


def blobs(image: torch.Tensor, generator: torch.Generator, blob_size: int = 64, fraction: float = 0.5) -> torch.Tensor:
    """Random smooth blobs the size of ``image`` (see :func:`gipc.data.synthesis.random_blobs`)."""
    return random_blobs(image.shape[-2], image.shape[-1], generator, blob_size=blob_size, fraction=fraction)


def bars(
    image: torch.Tensor,
    generator: torch.Generator,
    count: tuple[int, int] = (6, 12),
    width: int = 5,
    blob_size: int = 160,
    fraction: float = 0.25,
) -> torch.Tensor:
    """Random blobs plus ``count`` straight bars ``width`` pixels wide across the image.

    Thin in-focus structures (twigs, wires, a fence) in front of a far background: what blob and
    region maps never hold and a decision map's clean-up is most tempted to erase. Inverted
    (``1 - map``), the far layer shows through thin gaps.
    """
    height, width_px = image.shape[-2:]
    mask = random_blobs(height, width_px, generator, blob_size=blob_size, fraction=fraction)[0].numpy() > 0.5
    lines = np.zeros_like(mask)
    for _ in range(int(torch.randint(count[0], count[1] + 1, (), generator=generator))):
        y0, x0, y1, x1 = (torch.rand(4, generator=generator) * torch.tensor([height - 1, width_px - 1] * 2)).round().long().tolist()
        rows, cols = skimage_line(y0, x0, y1, x1)
        lines[rows, cols] = True
    lines = ndimage.binary_dilation(lines, disk(width // 2))  # disk(0) is one pixel: the line as drawn
    return torch.from_numpy(mask | lines).float()[None]


def from_file(
    image: torch.Tensor,
    generator: torch.Generator | None = None,
    path: str | Path | None = None,
    threshold: float | None = 0.5,
    max_side: int | None = None,
) -> torch.Tensor:
    """A mask image from disk (white = A in focus); ``threshold=None`` keeps a grey mask soft.

    ``max_side``: the photo was downscaled to this longest side, so a mask of the photo's
    original size is scaled the same way. A mask of any other size is an error (it most likely
    belongs to another image).
    """
    if path is None:
        raise DataError("the 'file' map source needs a mask file for each image (--mask-dir)")
    mask = luma(read_image(path).pixels)[0]
    if mask.shape != image.shape[-2:] and fitted_size(*mask.shape, max_side) == tuple(image.shape[-2:]):
        mask = _resize(mask, tuple(image.shape[-2:])).clamp(0.0, 1.0)
    if mask.shape != image.shape[-2:]:
        raise DataError(f"mask {path} is {tuple(mask.shape)} but its image is {tuple(image.shape[-2:])}; resize the mask to match")
    return (mask if threshold is None else (mask > threshold).float())[None]


SOURCES: dict[str, Callable[..., torch.Tensor]] = {
    "file": from_file,
    "region_competition": region_competition,
    "disparity": disparity,
    "blobs": blobs,
    "bars": bars,
}


def make_map(source: str, image: torch.Tensor, generator: torch.Generator, **options) -> torch.Tensor:
    """Decision map (1, H, W) in [0, 1] for a (C, H, W) image from the named source."""
    if source not in SOURCES:
        raise DataError(f"unknown decision-map source {source!r}; choose one of {', '.join(SOURCES)}")
    return SOURCES[source](image, generator, **options)
