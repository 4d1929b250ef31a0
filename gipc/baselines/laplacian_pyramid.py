"""Laplacian-pyramid fusion (Burt & Adelson 1983; fusion rule of Burt & Kolczynski 1993).

Detail bands: choose-max absolute coefficient; base band: average.
"""

from __future__ import annotations

import torch
from kornia.geometry.transform import pyrdown, pyrup

from gipc.baselines.inputs import check_pair
from gipc.baselines.rules import choose_max_abs, fitting_levels, pad_even


def _reduce_expand(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The next coarser Gaussian level, and its expansion back to ``x``'s size (odd sides included)."""
    coarse = pyrdown(pad_even(x), border_type="replicate")
    expanded = pyrup(coarse, border_type="replicate")[..., : x.shape[-2], : x.shape[-1]]
    return coarse, expanded


def laplacian_decompose(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``levels`` detail bands, finest first, then the base (Gaussian) band; exact inverse: :func:`laplacian_reconstruct`."""
    bands = []
    for _ in range(levels):
        coarse, expanded = _reduce_expand(x)
        bands.append(x - expanded)
        x = coarse
    return bands + [x]


def laplacian_reconstruct(bands: list[torch.Tensor]) -> torch.Tensor:
    """Collapse a pyramid from :func:`laplacian_decompose`."""
    x = bands[-1]
    for detail in reversed(bands[:-1]):
        x = pyrup(x, border_type="replicate")[..., : detail.shape[-2], : detail.shape[-1]] + detail
    return x


def laplacian_pyramid(a: torch.Tensor, b: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Fuse in a ``levels``-band Laplacian pyramid; fewer bands where the image is too small (coarsest >= 8 px)."""
    check_pair(a, b)
    depth = fitting_levels(levels, a.shape[-2], a.shape[-1])
    bands_a = laplacian_decompose(a, depth)
    bands_b = laplacian_decompose(b, depth)
    fused = [choose_max_abs(da, db) for da, db in zip(bands_a[:-1], bands_b[:-1])]
    fused.append((bands_a[-1] + bands_b[-1]) / 2)
    return laplacian_reconstruct(fused).clamp(0.0, 1.0)
