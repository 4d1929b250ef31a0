"""Colour handling of the fusion pipeline (docs/paper.md section 1): fuse luminance with the network, chroma by rule."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import kornia
import torch

from gipc.errors import UserError


RANGE_SLACK = 0.5 / 255.0
"""Half a grey level: anything further outside [0, 1] is a wrong-range input, not rounding noise."""


def outside_unit_range(*images: torch.Tensor) -> str | None:
    """Where ``images`` leave [0, 1] (NaN included), in words for an error line; None where they do not."""
    ranges = [torch.aminmax(image) for image in images]  # one pass over each image
    low, high = min(float(r.min) for r in ranges) + 0.0, max(float(r.max) for r in ranges)  # + 0.0: -0.0 reads 0, not -0
    if low >= -RANGE_SLACK and high <= 1.0 + RANGE_SLACK:
        return None
    if math.isnan(low) or math.isnan(high):
        return "NaN values"
    return f"values in [{low:.4g}, {high:.4g}]; divide 0..255 images by 255 and map [-1, 1] network outputs with gipc.color.from_net"


def check_fusion_sources(images: Sequence[torch.Tensor], shape: str = "(B, C, H, W)") -> None:
    """Sources a fusion can take, else one line on what is wrong: a Python caller's mistakes (numpy
    arrays, 0..255 values, a missing or extra batch axis) would otherwise surface deep in the network."""
    if len(images) < 2:
        raise UserError(f"a fusion needs at least two sources, got {len(images)}")
    for image in images:
        if not isinstance(image, torch.Tensor):
            raise UserError(
                f"sources must be torch tensors {shape}, got {type(image).__name__}; "
                "an 8-bit (H, W, C) array x becomes one with torch.from_numpy(x).permute(2, 0, 1) / 255"
            )
        if image.ndim != shape.count(",") + 1:
            raise UserError(f"sources must be shaped {shape}, got {tuple(image.shape)}")
        if not image.is_floating_point() and image.dtype not in STORED_SCALES:
            raise UserError(f"sources must be float tensors in [0, 1] or uint8/uint16 ones as stored, got {image.dtype}")
    for image in images[1:]:
        if image.shape != images[0].shape:
            raise UserError(f"sources differ in shape: {tuple(images[0].shape)} vs {tuple(image.shape)}")
    float_types = {image.dtype for image in images if image.is_floating_point()}
    if len(float_types) > 1:  # stored integers of either depth become float32; floats are fused in their own type
        first, other = sorted(map(str, float_types))[:2]
        raise UserError(f"float sources differ in type: {first} vs {other}; give them one (x.float() for float32)")
    if images[0].shape[-3] not in (1, 3):
        raise UserError(f"expected 1 (gray) or 3 (RGB) channels, got {images[0].shape[-3]}")
    floats = [image for image in images if image.is_floating_point()]  # stored integers lie in range
    if floats and (problem := outside_unit_range(*floats)):
        raise UserError(f"sources must lie in [0, 1], got {problem}")


STORED_SCALES = {torch.uint8: 255.0, torch.uint16: 65535.0}
"""The largest value of each integer type an image is stored in."""


def unit_range(image: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A stored 8- or 16-bit image as float32 in [0, 1] (value / 255 or / 65535: the floats a decoder
    gives, to the bit), written into ``out`` (float32, ``image``'s shape) where given; a float image as it is."""
    if image.is_floating_point():
        return image
    return (image.float() if out is None else out.copy_(image)).div_(STORED_SCALES[image.dtype])


def stored_as(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """:func:`unit_range`'s inverse: a float image in [0, 1] as ``dtype``, an 8- or 16-bit type
    rounded to its nearest step (as a written file rounds it), a float type as it is."""
    if dtype.is_floating_point:
        return image.to(dtype)
    return image.mul(STORED_SCALES[dtype]).round_().to(dtype)


def split_luma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [0, 1] -> Y (B, 1, H, W) and CbCr (B, 2, H, W), chroma centred on 0.5."""
    ycbcr = kornia.color.rgb_to_ycbcr(rgb)
    return ycbcr[:, :1], ycbcr[:, 1:]


def luma(image: torch.Tensor) -> torch.Tensor:
    """(*, 1, H, W) float luminance in [0, 1] of a gray or RGB image, float in [0, 1] or stored
    (:func:`unit_range`): the Y of :func:`split_luma` to the bit, computed alone (no chroma planes,
    0.3 GiB less for a 4000x3000 pair); gray images are their own Y.

    kornia's ``rgb_to_y`` (``0.299 r + 0.587 g + 0.114 b``) is redone here in the same float
    operations, two planes at a time instead of five new ones, and from a stored image one channel's
    floats at a time: on fresh 12 MP planes the page faults of kornia's temporaries cost more than
    its arithmetic (a uint8 frame's Y: 37 ms against 105 ms through float RGB, benchmarks/README.md)."""
    if image.shape[-3] == 1:
        return unit_range(image)
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"luma takes (*, 1, H, W) gray or (*, 3, H, W) RGB images, got {tuple(image.shape)}")
    r, g, b = (image[..., c : c + 1, :, :] for c in range(3))
    if image.is_floating_point():
        y = torch.mul(r, 0.299).add_(torch.mul(g, 0.587))
        return y.add_(torch.mul(b, 0.114))
    y, term = unit_range(r).mul_(0.299), unit_range(g).mul_(0.587)
    y.add_(term)
    return y.add_(unit_range(b, out=term).mul_(0.114))


def merge_luma(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_luma`, clamped to the displayable range."""
    return kornia.color.ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp_(0.0, 1.0)


def fuse_chroma(cbcr_a: torch.Tensor, cbcr_b: torch.Tensor) -> torch.Tensor:
    """Saturation-weighted chroma fusion of MFF-GAN: the more saturated source wins each pixel.

    ``C = (C_A |C_A - 0.5| + C_B |C_B - 0.5|) / (|C_A - 0.5| + |C_B - 0.5|)``, 0.5 where both are neutral.
    """
    # In place where a temporary is not needed again, by the formula or by autograd: the same float
    # operations, 1.1-2.1x faster on three Lytro pairs than with a new tensor for each (fresh memory
    # is much of the cost, not the arithmetic).
    wa = (cbcr_a - 0.5).abs_()
    wb = (cbcr_b - 0.5).abs_()
    den = wa + wb
    fused = (cbcr_a * wa).add_(cbcr_b * wb) / den.clamp_min(torch.finfo(den.dtype).tiny)
    return fused.masked_fill_(den <= 0, 0.5)  # sources are checked for NaN, so den <= 0 is "not den > 0"


def to_net(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] image -> the network's [-1, 1] range."""
    return x * 2.0 - 1.0


def from_net(y: torch.Tensor) -> torch.Tensor:
    """The network's tanh output -> [0, 1]."""
    return ((y + 1.0) / 2.0).clamp(0.0, 1.0)


def fuse_color(fuse_y: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fuse two (B, C, H, W) images in [0, 1] with a luminance fuser, C = 1 (gray) or 3 (RGB).

    ``fuse_y`` maps two (B, 1, H, W) images in [0, 1] to one (the network, a tiled network or a
    classic baseline); RGB goes through YCbCr with :func:`fuse_chroma`, gray skips the colour steps.
    A fuser with a ``fuse_rgb`` method (a classic method whose release fuses colour its own way,
    :class:`gipc.baselines.Baseline`) fuses RGB with it instead.
    """
    check_fusion_sources([a, b])
    if a.shape[1] == 1:
        return fuse_y(a, b).clamp(0.0, 1.0)
    if (fuse_rgb := getattr(fuse_y, "fuse_rgb", None)) is not None:
        return fuse_rgb(a, b).clamp(0.0, 1.0)
    fused_y = fuse_y(luma(a), luma(b))
    height = a.shape[-2]
    if height <= COLOUR_ROWS:
        return _colour(fused_y, a, b)
    out = None
    for top in range(0, height, COLOUR_ROWS):
        rows = slice(top, top + COLOUR_ROWS)
        band = _colour(fused_y[..., rows, :], a[..., rows, :], b[..., rows, :])
        if out is None:
            out = band.new_empty(band.shape[:-2] + a.shape[-2:])
        out[..., rows, :] = band
    return out


COLOUR_ROWS = 512
"""Rows :func:`fuse_color` turns into colour at once: every colour step is per pixel, so bands give the
whole image's floats, and a 12 MP pair's colour steps hold no full-size chroma planes (gipc-fuse's
peak RSS 2.02 -> 1.36 GiB under --rule direct, 1.90 -> 1.20 GiB with --method dwt; benchmarks/README.md)."""


def _colour(fused_y: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RGB of the fused luminance and the sources' chroma fused by :func:`fuse_chroma`."""
    return merge_luma(fused_y, fuse_chroma(split_luma(a)[1], split_luma(b)[1]))
