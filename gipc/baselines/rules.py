"""Fusion rules and helpers shared by the baselines."""

from __future__ import annotations

import math

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F


def choose_max_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Keep, per coefficient, the source whose detail is larger in magnitude (ties go to ``a``)."""
    return torch.where(a.abs() >= b.abs(), a, b)


def area_activity(x: torch.Tensor, window: int) -> torch.Tensor:
    """Largest magnitude in the ``window`` x ``window`` neighbourhood: one noisy coefficient cannot win alone."""
    pad = window // 2
    return F.max_pool2d(F.pad(x.abs(), (pad, pad, pad, pad), mode="replicate"), window, stride=1)


def majority_filter(decision: torch.Tensor, size: int) -> torch.Tensor:
    """Consistency verification: a binary map takes the majority vote of its ``size`` x ``size`` neighbourhood."""
    return (kornia.filters.box_blur(decision, size, border_type="replicate") > 0.5).to(decision.dtype)


def fitting_levels(levels: int, height: int, width: int, coarsest: int = 8) -> int:
    """Largest number of halvings, at most ``levels``, that keeps the coarsest band at least ``coarsest`` pixels."""
    return max(0, min(levels, int(math.floor(math.log2(min(height, width) / coarsest)))))


def pad_even(x: torch.Tensor) -> torch.Tensor:
    """Replicate the last row / column where a side is odd, so that it halves exactly."""
    return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate")


def area_open(mask: torch.Tensor, area: int) -> torch.Tensor:
    """Matlab's ``bwareaopen``: a (N, 1, H, W) bool mask without its 8-connected regions of fewer than ``area`` pixels."""
    kept = [area_open_plane(plane, area) for plane in mask[:, 0].cpu().numpy()]
    return torch.from_numpy(np.stack(kept))[:, None].to(mask.device)


def area_open_plane(mask: np.ndarray, area: int, connectivity: int = 8) -> np.ndarray:
    """``bwareaopen(mask, area, connectivity)`` of an (H, W) bool mask: without its regions of fewer than ``area`` pixels."""
    _, regions, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=connectivity)
    large = stats[:, cv2.CC_STAT_AREA] >= area
    large[0] = False  # outside the mask
    return large[regions]


def without_small_areas(mask: torch.Tensor, area: int) -> torch.Tensor:
    """``bwareaopen`` of a (N, 1, H, W) bool mask, then of what is left outside it: its regions and
    then its holes of fewer than ``area`` pixels go (the clean-up of GFDF's and DSIFT's releases)."""
    return ~area_open(~area_open(mask, area), area)


def disk_strel(radius: int) -> np.ndarray:
    """Matlab's ``strel('disk', radius)`` (radius >= 3): its default approximation by four periodic
    lines (Jones and Soille), each repeated ``floor(k / |v|)`` times, k = 2 r / (cot(pi/8) + 1/sin(pi/8)),
    plus a horizontal and a vertical line where that falls short of the radius: an octagon."""
    theta = math.pi / 8
    k = 2 * radius / (1 / math.tan(theta) + 1 / math.sin(theta))
    steps = [((1, 0), math.floor(k)), ((1, 1), math.floor(k / math.sqrt(2))), ((0, 1), math.floor(k)), ((-1, 1), math.floor(k / math.sqrt(2)))]
    reach = sum(abs(dr) * n for (dr, _), n in steps)
    shortfall = 2 * (radius - reach - 1) + 1
    if shortfall >= 3:
        steps += [((0, 1), shortfall // 2), ((1, 0), shortfall // 2)]
    points = {(0, 0)}
    for (dr, dc), n in steps:
        points = {(r + i * dr, c + i * dc) for r, c in points for i in range(-n, n + 1)}
    size = 2 * max(max(abs(r), abs(c)) for r, c in points) + 1
    nhood = np.zeros((size, size), np.uint8)
    for r, c in points:
        nhood[r + size // 2, c + size // 2] = 1
    return nhood
