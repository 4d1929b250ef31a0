"""Inference-time composition of a luminance fuser: overlapping tiles (bounded memory) and sequences.

A fuser maps two (B, C, H, W) images to one (B, C', H, W) image (docs/paper.md: the network sees Y).
The generator is fully convolutional with a small receptive field, so a tile's pixels are exact
except near its edges, where the convolutions see zero padding instead of the neighbouring image.
:func:`tiled` therefore gives zero weight to the outer quarter of every overlap and cross-fades
the middle half linearly: with ``overlap // 4`` at least the receptive-field radius (8 for the
paper's generator: 4 encoder and 4 decoder 3x3 convs; :func:`exact_overlap`), tiled and whole-image
inference agree to float rounding everywhere, seams included.
"""

from __future__ import annotations

import math
from functools import reduce
from typing import Callable, Collection, Sequence

import torch

from gipc.errors import UserError

Fuser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[Sequence], Collection]
"""Wraps a tiled image's tiles for a progress display, keeping their count (``tqdm`` fits)."""
Steps = Callable[[Sequence, str], Collection]
"""Wraps a sequence that a step (named by the string) goes through one item at a time, for a progress
display, keeping its length (``tqdm`` fits)."""

AUTO_TILE_PIXELS = 1024 * 1024
"""Above this many pixels a network runs tiled: untiled it needs about 2 KB per pixel."""
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64
"""For a network that does not say its receptive radius: exact up to a radius of 64 // 4 = 16 px. A
generator's fusions take :func:`exact_overlap` of its own radius instead (32 for the paper's)."""

TILE_ALIGN = 16
"""Tile sides are multiples of this where the tile size allows: OpenVINO's CPU convolutions took
1.3x as long per pixel on 473 px wide tiles as on 480 (benchmarks/README.md)."""


def exact_overlap(radius: int) -> int:
    """The smallest overlap that tiles a network of receptive ``radius`` px exactly: the blend skips
    each overlap's outer quarter, which must hold the pixels whose windows reach a tile's zero
    padding. Every pixel of overlap costs network time: 32 px on 512 px tiles computes 14 % more
    pixels than the image has, 64 px 31 %."""
    return 4 * radius


def axis_weights(size: int, tile: int, overlap: int) -> list[tuple[int, torch.Tensor]]:
    """Start and blending weights of each tile along one axis of length ``size``; weights sum to 1.

    As few tiles as ``tile`` px need, each as short as that count allows, rounded up to a multiple of
    :data:`TILE_ALIGN` (every pixel a tile adds past the axis is network time: 4000 px in 512 px tiles
    overlapping by 32 take 9 tiles of 480 px), all of one length, so a compiled network sees one
    shape. They advance by that length less ``overlap``; the last one is aligned to the end. At an
    edge shared with another tile the first ``overlap // 4`` pixels get weight 0 and the next
    ``overlap - 2 * (overlap // 4)`` ramp linearly up; edges on the image border keep weight 1.
    """
    if size <= tile:
        return [(0, torch.ones(size))]
    count = math.ceil((size - overlap) / (tile - overlap))
    tile = min(tile, math.ceil((math.ceil((size - overlap) / count) + overlap) / TILE_ALIGN) * TILE_ALIGN)
    starts = [*range(0, size - tile, tile - overlap), size - tile]
    margin = overlap // 4
    ramp = overlap - 2 * margin
    offset = torch.arange(tile, dtype=torch.float64)
    rise = ((offset - margin + 1) / (ramp + 1)).clamp(0.0, 1.0)
    raw = []
    for start in starts:
        weight = torch.ones(tile, dtype=torch.float64)
        if start > 0:
            weight = weight * rise
        if start + tile < size:
            weight = weight * rise.flip(0)
        raw.append(weight)
    total = torch.zeros(size, dtype=torch.float64)
    for start, weight in zip(starts, raw):
        total[start : start + tile] += weight
    return [(start, (weight / total[start : start + tile]).float()) for start, weight in zip(starts, raw)]


def check_tiling(tile: int | None, overlap: int | None) -> None:
    """``tile``: None (automatic: :data:`DEFAULT_TILE` on large images), 0 (never) or a size above
    ``overlap`` (None: the network's, not known yet)."""
    size = DEFAULT_TILE if tile is None else tile
    if size < 0 or size and overlap is not None and not 0 <= overlap < size:
        given = "" if overlap is None else f" with overlap {overlap}"
        raise UserError(f"tile {size}{' (automatic)' * (tile is None)}{given}: need tile >= 0 and 0 <= overlap < tile")


def auto_tiling(fuse: Fuser, tile: int | None, overlap: int, progress: Progress | None = None) -> Fuser:
    """``fuse`` tiled by ``tile`` (0: never), or, when None, by :data:`DEFAULT_TILE` for each call on an
    image above :data:`AUTO_TILE_PIXELS` (``progress``: as :func:`tiled`'s). Only for fusers whose tiles
    are exact (a network, see the module docstring); a classic baseline's windows and pyramids span the whole image."""
    if tile is not None:
        return tiled(fuse, tile, overlap, progress) if tile else fuse
    large = tiled(fuse, DEFAULT_TILE, overlap, progress)
    return lambda a, b: (large if a.shape[-2] * a.shape[-1] > AUTO_TILE_PIXELS else fuse)(a, b)


def tiled(fuse: Fuser, tile: int, overlap: int, progress: Progress | None = None) -> Fuser:
    """Wrap ``fuse`` so it sees at most ``tile`` x ``tile`` pixels at a time, tiles blended by :func:`axis_weights`.

    Images no larger than a tile go through whole. The result is assembled on the inputs' device,
    so ``fuse`` may run each tile elsewhere (a GPU) and only one tile's activations exist at once.
    ``progress`` wraps each tiled image's tiles (an 8000x6000 pair takes 221: a bar for them).
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise UserError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")

    def fuse_tiled(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise UserError(f"sources differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
        height, width = a.shape[-2:]
        if height <= tile and width <= tile:
            return fuse(a, b)
        out: torch.Tensor | None = None
        columns = axis_weights(width, tile, overlap)
        tiles = [(y0, wy, x0, wx) for y0, wy in axis_weights(height, tile, overlap) for x0, wx in columns]
        for y0, wy, x0, wx in tiles if progress is None else progress(tiles):
            window = (..., slice(y0, y0 + len(wy)), slice(x0, x0 + len(wx)))
            part = fuse(a[window], b[window]).to(a.device)
            if out is None:
                out = torch.zeros(*part.shape[:-2], height, width, dtype=part.dtype, device=a.device)
            out[window] += part * (wy[:, None] * wx[None, :]).to(part)
        assert out is not None
        return out

    return fuse_tiled


def remember_last(fuse: Fuser) -> Fuser:
    """Wrap ``fuse`` so that a call with the same inputs as the one before returns its output again.

    A test report fuses each batch under the direct and the map rule; both feed the network the
    same luminance (:func:`gipc.fusion.luma` is the colour split's Y bit for bit), so the network
    runs once. Only the last call is kept, and an equality check costs far less than a network pass.
    """
    last: list[torch.Tensor] = []

    def fuse_once(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not (last and torch.equal(last[0], a) and torch.equal(last[1], b)):
            last[:] = [a, b, fuse(a, b)]
        return last[2]

    return fuse_once


def fuse_sequence(fuse: Fuser, images: Collection[torch.Tensor]) -> torch.Tensor:
    """Fuse a focus sequence in turn (docs/paper.md): ``F = fuse(I1, I2)``, then ``F = fuse(F, I3)``, ..."""
    if len(images) < 2:
        raise UserError(f"a fusion needs at least two sources, got {len(images)}")
    return reduce(fuse, images)
