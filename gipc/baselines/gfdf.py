"""Guided filter-based focus region detection, GFDF (Qiu, Li, Zhang & Yuan 2019, Signal Processing:
Image Communication, "Guided filter-based multi-focus image fusion through focus region detection").

A decision-map method, ported from the authors' Matlab release: focus is each source's absolute
difference from its 7 x 7 mean (replicated borders), smoothed by a guided filter with the source as
guide; the map takes the source whose smoothed focus is strictly larger, then drops regions of
either source under 1 % of the image (``bwareaopen`` twice, 8-connected); a guided filter with the
map's own mosaic of the sources as guide softens its boundaries, and the sources are blended by it.
Guided filters as He et al.'s code computes them (radius 5, eps 0.3, windows cut at the borders).
Colour as the release fuses it: the weight from the luminance blends each RGB channel
(:data:`gipc.baselines.BASELINES`).
"""

from __future__ import annotations

import math

import kornia
import torch

from gipc.baselines.inputs import check_odd, check_pair
from gipc.baselines.rules import without_small_areas
from gipc.windows import guided_filter


def focus(x: torch.Tensor, window: int = 7) -> torch.Tensor:
    """``|x - mean_window(x)|``: how much each pixel stands out of its neighbourhood (borders replicated)."""
    return (x - kornia.filters.box_blur(x, window, border_type="replicate")).abs()


def gfdf_map(a: torch.Tensor, b: torch.Tensor, window: int = 7, radius: int = 5, eps: float = 0.3, min_region: float = 0.01) -> torch.Tensor:
    """The hard decision map (N, 1, H, W), 1 where ``a`` is taken, after the small regions are removed."""
    check_pair(a, b)
    check_odd("window", window)
    take_a = guided_filter(a, focus(a, window), radius, eps, "inside") > guided_filter(b, focus(b, window), radius, eps, "inside")
    return without_small_areas(take_a, math.ceil(min_region * a.shape[-2] * a.shape[-1]))


def gfdf_weight(a: torch.Tensor, b: torch.Tensor, window: int = 7, radius: int = 5, eps: float = 0.3, min_region: float = 0.01) -> torch.Tensor:
    """A's weight (N, 1, H, W): :func:`gfdf_map` softened by a guided filter guided by its mosaic of the sources."""
    take_a = gfdf_map(a, b, window, radius, eps, min_region).to(a.dtype)
    return guided_filter(take_a * a + (1 - take_a) * b, take_a, radius, eps, "inside")


def gfdf(a: torch.Tensor, b: torch.Tensor, window: int = 7, radius: int = 5, eps: float = 0.3, min_region: float = 0.01) -> torch.Tensor:
    """GFDF of two luminance sources (N, 1, H, W) in [0, 1]; the defaults are the release's."""
    weight = gfdf_weight(a, b, window, radius, eps, min_region)
    return (weight * a + (1 - weight) * b).clamp(0.0, 1.0)
