"""Boundary finding fusion, BF (Zhang, Bai & Wang 2017, Information Fusion, "Boundary finding based
multi-focus image fusion through multi-scale morphological focus-measure"), one of the CPU methods
the paper compares with (Table 3).

A decision-map method, ported from the authors' Matlab release with the settings of its demo script
(search window 7, 5 scales, boundary band 20), on 0..255 planes in double precision as there:

1. Each source's multi-scale morphological focus measure: the morphological gradient (dilation less
   erosion) by Matlab's ``strel('disk', 2t + 1)`` for t = 1..5, weighted 1 / (2t + 1) and summed.
2. Where one source clearly leads: over 7 x 7 windows (zeros outside), the two measures' sums differ
   by at least 0.8 times what their pixelwise maximum and minimum sum to apart, and by at least 49.
   The rest, framed by 2 px, thinned to lines (``bwmorph(..., 'thin', Inf)``); of those lines
   (8-connected) the ones at least as long as the mean of the longest fifth are kept.
3. The regions between kept lines (4-connected) each take the source whose focus measure sums higher
   over it (equal sums: neither); the lines are the boundary. Then the boundary's reconstruction:
   each source's regions under 1/40 of the image (4-connected) removed, a removed region taking the
   source that holds more pixels of its bounding box (grown by 3 px up and left, 1 px down and right),
   and each boundary pixel the one source its 3 x 3 window holds, if only one.
4. The boundary again, by watershed: markers where that map, eroded by Matlab's ``strel('disk', 20)``,
   is decided; each measure's Prewitt gradient with its minima imposed there (``imimposemin``),
   flooded; each of the two watersheds' regions labelled as in step 3; of the two maps, the one
   whose fused image (undecided pixels averaged, rounded to 8 bits) has the higher mean focus
   measure is kept, and its boundary reconstructed as in step 3.
5. The map eroded by ``strel('disk', 3)`` (a grey-level erosion of the labels 0, 1, 2); where it is
   decided each source is copied, elsewhere the two blend by their distances to the other's region
   (``bwdist``): A's weight ``D_B / (D_A + D_B)``. Rounded to 8 bits.

The release's ``multiscale_morph`` is not in its repository; step 1 is the function as copies of it
published with other fusion code define it. Matlab's watershed is scikit-image's here (both flood
from the imposed minima), its lines each basin's pixels beside a lower-labelled basin (Matlab's lie
where the floods meet: a pixel apart at most), and ``bwmorph`` thinning is scikit-image's ``thin``
(Guo and Hall's algorithm, as Matlab's). The release fuses grayscale only; colour here blends each
RGB channel under the map's weights from the luminance (0..255, unrounded), as the other
decision-map ports do. One departure: where the final map holds one source's region only and some
pixels neither, the release's blend there is NaN, which its ``uint8`` makes black; here those pixels
take the source whose region there is (with no region at all, A's).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from gipc.baselines.inputs import check_pair
from gipc.baselines.rules import area_open_plane, disk_strel
from gipc.color import luma
from gipc.tiling import Steps

WINDOW = 7  # the release's sw_sz: the focus measure's search window
SCALES = 5  # the release's scales: disks of radius 3, 5, ..., 11
BAND = 20  # the release's b_sz: the disk that erodes the map into the watershed's markers
BLEND = 3  # the release's bf_sz: the disk that erodes the final map into the blended band
LINE_SHARE = 0.2  # lines at least as long as the mean of this longest share are kept
BOUNDARY_SHARE = 0.8  # a window is a boundary region where the sums differ by this share of what max and min sum to apart
SMALL = 40  # regions under 1 / SMALL of the image are removed in the boundary's reconstruction
PREWITT_X = np.array([[1.0, 0.0, -1.0]] * 3)  # Matlab's fspecial('prewitt')', imgradient's x kernel (a correlation)


def bf(a: torch.Tensor, b: torch.Tensor, steps: Steps | None = None) -> torch.Tensor:
    """BF of two luminance sources (N, 1, H, W) in [0, 1], rounded to 8-bit levels as the release's
    output. ``steps`` wraps the map's stages for a progress display (a 12 MP pair takes most of a minute)."""
    check_pair(a, b)
    return _blended(a, b, a, b, steps)


def bf_rgb(a: torch.Tensor, b: torch.Tensor, steps: Steps | None = None) -> torch.Tensor:
    """BF of two RGB sources (N, 3, H, W) in [0, 1]: the map and its blend from their luminance, each channel under them."""
    return _blended(luma(a), luma(b), a, b, steps)


def _blended(ya: torch.Tensor, yb: torch.Tensor, a: torch.Tensor, b: torch.Tensor, steps: Steps | None) -> torch.Tensor:
    fused = []
    for y1, y2, first, second in zip(*(x.double().cpu().numpy() * 255.0 for x in (ya[:, 0], yb[:, 0], a, b))):
        w1, w2 = bf_weights(bf_map(y1, y2, steps))
        fused.append(np.floor(w1 * first + w2 * second + 0.5))  # Matlab's uint8 of values in 0..255
    return torch.from_numpy(np.stack(fused) / 255.0).to(device=a.device, dtype=a.dtype)


def focus_measure(image: np.ndarray, scales: int = SCALES) -> np.ndarray:
    """The multi-scale morphological focus measure of a 0..255 plane: ``sum_t (dilate - erode)(disk(2t + 1)) / (2t + 1)``
    (outside the image neither bounds a window: Matlab's padding for each)."""
    measure = np.zeros_like(image)
    for t in range(1, scales + 1):
        disk = disk_strel(2 * t + 1)
        measure += (cv2.dilate(image, disk) - cv2.erode(image, disk)) / (2 * t + 1)
    return measure


def window_sum(x: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """``imfilter(x, ones(size), 0)``: each pixel's ``size`` x ``size`` sum, zeros outside."""
    return cv2.boxFilter(x, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)


def clear_regions(fm1: np.ndarray, fm2: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """(H, W) bool: where one source's focus clearly leads, the windows whose focus sums differ by at
    least 0.8 of what the max and min measures sum to apart, and by at least ``size``^2 (the release's
    ``dfmap``, which it calls the boundary regions: their complement is thinned to the boundary)."""
    sum1, sum2 = window_sum(fm1, size), window_sum(fm2, size)
    sum_max = window_sum(np.maximum(fm1, fm2), size)
    apart = np.maximum(sum1, sum2) - np.minimum(sum1, sum2)
    return (apart >= BOUNDARY_SHARE * (sum_max - (sum1 + sum2 - sum_max))) & (apart >= size**2)


def boundary_lines(regions: np.ndarray) -> np.ndarray:
    """(H, W) bool: the complement of ``regions``, framed by 2 px, thinned to lines; the lines
    (8-connected) at least as long as the mean length of the longest fifth."""
    from skimage.morphology import thin  # here, not at the top: every gipc-fuse imports the baselines, few run this one

    framed = np.ones((regions.shape[0] + 4, regions.shape[1] + 4), bool)
    framed[2:-2, 2:-2] = ~regions
    lines = thin(framed)[2:-2, 2:-2]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lines.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.size == 0:  # the release's mean of no lengths is NaN, which no line reaches
        return np.zeros_like(lines)
    longest = np.sort(areas)[::-1][: math.ceil(areas.size * LINE_SHARE)]
    kept = np.concatenate([[False], areas >= longest.mean()])
    return kept[labels]


def label_regions(boundary: np.ndarray, fm1: np.ndarray, fm2: np.ndarray) -> np.ndarray:
    """(H, W) int: each 4-connected region off ``boundary`` labelled 1 or 2 by the source whose focus
    measure sums higher over it (0: equal sums), the boundary 0 (``decision_map_detection``)."""
    _, regions = cv2.connectedComponents((~boundary).astype(np.uint8), connectivity=4)
    sum1, sum2 = (np.bincount(regions.ravel(), weights=fm.ravel()) for fm in (fm1, fm2))
    labels = np.where(sum2 > sum1, 2, np.where(sum2 < sum1, 1, 0))
    labels[0] = 0  # the boundary
    return labels[regions]


def nearest_filter(decision: np.ndarray) -> np.ndarray:
    """The release's ``Nearest_Filter``: each 8-connected region of 0s takes the label (1 or 2) more
    pixels of its bounding box hold, the box grown by 3 px up and left and 1 px down and right (none where they tie)."""
    count, regions, stats, _ = cv2.connectedComponentsWithStats((decision == 0).astype(np.uint8), connectivity=8)
    height, width = decision.shape
    taken = np.zeros(count, np.int64)
    for index in range(1, count):
        left, top, w, h = stats[index, :4]
        box = decision[max(0, top - 3) : min(top + h + 1, height), max(0, left - 3) : min(left + w + 1, width)]
        ones, twos = np.count_nonzero(box == 1), np.count_nonzero(box == 2)
        taken[index] = 0 if ones == twos else (1 if ones > twos else 2)
    return decision + taken[regions]


def refine_boundary(decision: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """The release's ``refine_boundary``: each ``boundary`` pixel takes the one label (1 or 2) its 3 x 3
    window of ``decision`` holds (the edges mirrored), 0 where it holds both or neither."""
    near = [cv2.dilate((decision == label).astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE) > 0 for label in (1, 2)]
    only = np.where(near[0] & ~near[1], 1, np.where(near[1] & ~near[0], 2, 0))
    return np.where(boundary, only, decision)


def reconstruct_boundary(decision: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """The release's ``boundary_reconstruction``: small regions removed, then given to their
    neighbourhood's majority, then the boundary's pixels settled (step 3)."""
    small = round(decision.size / SMALL)
    kept = area_open_plane(decision == 1, small, 4) + 2 * area_open_plane(decision == 2, small, 4)
    return refine_boundary(nearest_filter(kept - boundary.astype(kept.dtype)), boundary)


def watershed_lines(measure: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """(H, W) bool: the watershed lines of ``measure``'s Prewitt gradient with its minima imposed at
    ``markers`` (Matlab's ``imimposemin`` and ``watershed``, 8-connected): each basin's pixels that
    touch a basin of a lower label (:func:`basin_edges`)."""
    from skimage.measure import label
    from skimage.morphology import reconstruction
    from skimage.segmentation import watershed

    gx = cv2.filter2D(measure, -1, PREWITT_X, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(measure, -1, PREWITT_X.T, borderType=cv2.BORDER_REPLICATE)
    gradient = np.hypot(gx, gy)
    span = float(gradient.max() - gradient.min())
    lifted = gradient + (span * 0.001 if span else 0.1)  # imimposemin's h for non-integer images
    low, high = float(gradient.min()) - 1.0, float(lifted.max()) + 1.0  # its -Inf and Inf, finite
    seed = np.where(markers, low, high)
    imposed = reconstruction(seed, np.minimum(lifted, seed), method="erosion")
    return basin_edges(watershed(imposed, label(markers, connectivity=2), connectivity=2))


def basin_edges(basins: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of a watershed's ``basins`` (labels from 1) with one of their 8 neighbours
    in a basin of a lower label: one line between every two basins that touch, leaving none 8-adjacent.
    Matlab's watershed lines (and scikit-image's ``watershed_line``, 25 times slower here at 3 MP) lie
    where the floods meet; these lie beside them, on one side."""
    labels = basins.astype(np.float32)  # OpenCV's erosion takes no int32; labels are far under 2^24
    return cv2.erode(labels, np.ones((3, 3), np.uint8)) < labels  # outside the image bounds nothing


def fused_levels(a: np.ndarray, b: np.ndarray, decision: np.ndarray) -> np.ndarray:
    """The release's ``fusion_image``: ``decision``'s source copied, undecided pixels averaged, rounded to 8 bits."""
    return np.clip(np.floor(np.where(decision == 1, a, np.where(decision == 2, b, (a + b) / 2)) + 0.5), 0, 255)


def bf_map(a: np.ndarray, b: np.ndarray, steps: Steps | None = None) -> np.ndarray:
    """(H, W) int: BF's decision map of two 0..255 planes, 1 for A, 2 for B, 0 undecided (steps 1-4);
    ``steps`` wraps its five stages (the focus measures, the lines, the first map, each watershed)."""
    stages = iter(range(5) if steps is None else steps(range(5), "bf, decision map"))
    next(stages)  # each stage's start
    fm1, fm2 = focus_measure(a), focus_measure(b)
    next(stages)
    lines = boundary_lines(clear_regions(fm1, fm2))
    next(stages)
    first = label_regions(lines, fm1, fm2)
    decision = reconstruct_boundary(first, first == 0)
    markers = cv2.erode((decision > 0).astype(np.uint8), disk_strel(BAND)) > 0  # imerode of the labels, then > 0
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for measure in (fm1, fm2):
        next(stages)
        lines = watershed_lines(measure, markers)
        candidate = label_regions(lines, fm1, fm2)
        score = float(focus_measure(fused_levels(a, b, candidate)).mean())
        if best is None or score >= best[0]:  # the release keeps the first only where it scores strictly higher
            best = (score, lines, candidate)
    next(stages, None)  # the end: a bar closes
    assert best is not None
    return reconstruct_boundary(best[2], best[1])


def bf_weights(decision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's weights (H, W) of the release's ``boundary_fusion``: ``decision`` eroded by
    ``strel('disk', 3)``; copies where that decides, elsewhere each source weighted by the distance to
    the other's region (step 5)."""
    from scipy.ndimage import distance_transform_edt

    eroded = cv2.erode(decision.astype(np.uint8), disk_strel(BLEND))
    first, second = eroded == 1, eroded == 2
    band = eroded == 0
    if not first.any() or not second.any():  # the release's blend is NaN here: the band takes the one region's source
        w1 = first | (band & ~second.any())
        return w1.astype(np.float64), (~w1).astype(np.float64)
    d1, d2 = distance_transform_edt(~first), distance_transform_edt(~second)
    eps = float(np.finfo(np.float64).eps)
    return first + band * d2 / (d1 + d2 + eps), second + band * d1 / (d1 + d2 + eps)
