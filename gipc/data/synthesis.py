"""Multi-focus pair synthesis (docs/paper.md, equations 18-19) and random decision maps.

Pure tensor functions: no file, Lightning or Hydra code, so the builder, the embedded set
and the tests share one definition of how a pair is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import kornia
import torch
import torch.nn.functional as F

from gipc.errors import DataError


def blur_kernel_size(sigma: float) -> int:
    """Odd Gaussian support covering +-3 sigma (99.7% of the mass); the paper prints no kernel size."""
    return 2 * math.ceil(3.0 * sigma) + 1


def _check_sigma(sigma: float) -> None:
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")


def fits(height: int, width: int, size: int) -> bool:
    """Whether a ``size`` px kernel can blur a ``height`` x ``width`` image: reflect padding needs
    the kernel's half width below the image's shorter side."""
    return size // 2 < min(height, width)


def _check_fits(image: torch.Tensor, size: int, what: str) -> None:
    height, width = image.shape[-2:]
    if not fits(height, width, size):
        raise DataError(f"{what} is too large for a {width}x{height} image; use a smaller sigma or a larger image")


def gaussian_blur(image: torch.Tensor, sigma: float, kernel_size: int | None = None) -> torch.Tensor:
    """``G(x, y; sigma) (*) I`` of equations 18-19, reflect-padded so borders do not darken."""
    _check_sigma(sigma)
    if sigma == 0:
        return image.clone()
    size = blur_kernel_size(sigma) if kernel_size is None else kernel_size
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {size}")
    _check_fits(image, size, f"blur kernel {size}x{size} (sigma {sigma})")
    return kornia.filters.gaussian_blur2d(image, (size, size), (sigma, sigma), border_type="reflect")


def disk_kernel(radius: float, supersample: int = 8) -> torch.Tensor:
    """A (K, K) pillbox of ``radius`` px summing to 1: the defocus PSF of a lens with a round aperture.

    Each pixel weighs the share of its area inside the circle (``supersample``^2 points per pixel),
    so the kernel changes smoothly with the radius instead of in whole-pixel steps.
    """
    if radius <= 0:
        raise ValueError(f"disk radius must be > 0, got {radius}")
    half = math.ceil(radius - 0.5)
    offsets = (torch.arange(supersample, dtype=torch.float64) + 0.5) / supersample - 0.5
    axis = (torch.arange(-half, half + 1, dtype=torch.float64)[:, None] + offsets).flatten()
    inside = (axis[:, None] ** 2 + axis[None, :] ** 2 <= radius**2).double()
    size = 2 * half + 1
    kernel = inside.reshape(size, supersample, size, supersample).mean(dim=(1, 3))
    return (kernel / kernel.sum()).float()


def disk_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Defocus by a pillbox with the per-axis std ``sigma`` of the Gaussian it replaces (radius 2 sigma:
    a uniform disk of radius r has per-axis variance r^2 / 4), reflect-padded like :func:`gaussian_blur`."""
    _check_sigma(sigma)
    if sigma == 0:
        return image.clone()
    kernel = disk_kernel(2.0 * sigma).to(image)
    _check_fits(image, kernel.shape[-1], f"disk blur of radius {2.0 * sigma:g} px")
    return kornia.filters.filter2d(image, kernel[None], border_type="reflect")


def synthesize_pair(
    image: torch.Tensor, focus_map: torch.Tensor, sigma: float, kernel_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Equations 18-19: ``A = F I + (1-F) blur(I)``, ``B = F blur(I) + (1-F) I``.

    ``image`` (B, C, H, W) in [0, 1] is all-in-focus, ``focus_map`` (B, 1, H, W) in [0, 1] is 1
    where A is sharp (the foreground). A soft map mixes the two smoothly at the boundary.
    """
    if image.ndim != 4 or focus_map.ndim != 4 or focus_map.shape[1] != 1:
        raise ValueError(f"expected image (B,C,H,W) and map (B,1,H,W), got {tuple(image.shape)} and {tuple(focus_map.shape)}")
    if image.shape[0] != focus_map.shape[0] or image.shape[-2:] != focus_map.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} and focus map {tuple(focus_map.shape)} differ in batch or size")
    return compose(image, gaussian_blur(image, sigma, kernel_size), focus_map)


def compose(sharp: torch.Tensor, blurred: torch.Tensor, focus_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixing of equations 18-19: A is ``sharp`` where the map is 1, B where it is 0."""
    return focus_map * sharp + (1.0 - focus_map) * blurred, focus_map * blurred + (1.0 - focus_map) * sharp


def defocus_spread(
    sharp: torch.Tensor, focus_map: torch.Tensor, blur: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layered defocus, where the near layer's blur spreads over the far layer as in real pairs.

    ``A = F I + (1-F) blur(I)`` (near in focus) and ``B = blur(F I) + (1 - blur(F)) I`` (far in
    focus: the blurred foreground, with its blurred coverage, lies over the sharp background). Away
    from boundaries this is equations 18-19; beside them B holds a halo of the foreground that
    neither source is free of (the defocus spread effect), which eq. 18-19 pairs never show.
    ``sharp`` (B, C, H, W), ``focus_map`` (B, 1, H, W) in [0, 1], 1 on the near layer.
    """
    a = focus_map * sharp + (1.0 - focus_map) * blur(sharp)
    b = blur(focus_map * sharp) + (1.0 - blur(focus_map)) * sharp
    return a, b


def soften(mask: torch.Tensor, width: float) -> torch.Tensor:
    """Blur a binary (..., H, W) map with a Gaussian of std ``width`` pixels so focus fades at the boundary.

    Real defocus changes gradually across a depth edge; ``width = 0`` keeps the hard map of the paper.
    """
    if width < 0:
        raise ValueError(f"soft width must be >= 0, got {width}")
    if width == 0:
        return mask.clone()
    shape = mask.shape
    flat = mask.reshape(-1, 1, *shape[-2:]).float()
    size = min(blur_kernel_size(width), 2 * (min(shape[-2:]) - 1) + 1)  # reflect padding must fit the map
    soft = kornia.filters.gaussian_blur2d(flat, (size, size), (width, width), border_type="reflect")
    return soft.clamp(0.0, 1.0).reshape(shape)


def random_blobs(
    height: int, width: int, generator: torch.Generator, blob_size: int = 64, fraction: float = 0.5
) -> torch.Tensor:
    """Smooth random foreground blobs (1, H, W) in {0, 1}, the synthetic decision-map source.

    Gaussian noise on a grid of ``blob_size``-pixel cells is upsampled bicubically and cut at
    its ``1 - fraction`` quantile, so about ``fraction`` of the area is foreground whatever the seed.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"blob fraction must be in (0, 1), got {fraction}")
    if blob_size < 1:
        raise ValueError(f"blob_size must be >= 1, got {blob_size}")
    cells = (max(2, math.ceil(height / blob_size) + 1), max(2, math.ceil(width / blob_size) + 1))
    noise = torch.randn(1, 1, *cells, generator=generator)
    field = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=True)[0]
    values = field.flatten()
    cut = values.kthvalue(min(values.numel(), max(1, round((1.0 - fraction) * values.numel())))).values
    return (field > cut).float()


def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """The (H, W) :func:`fit_longest_side` gives an image of ``height`` x ``width``."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


SMALLEST_SIDE = 16
"""The least ``max_side`` a photo may be cut to: one patch of the discriminator's smallest size."""


def fit_longest_side(image: torch.Tensor, max_side: int | None, nearest: bool = False) -> torch.Tensor:
    """Downscale a (C, H, W) image so its longest side is at most ``max_side`` (never upscale).

    Antialiased bilinear for photos; ``nearest`` for depth maps, where averaging would invent
    depths across object edges and spread infinite (occluded) values.
    """
    size = fitted_size(*image.shape[-2:], max_side)
    if size == tuple(image.shape[-2:]):
        return image
    if nearest:
        return F.interpolate(image[None], size=size, mode="nearest-exact")[0]
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)



@dataclass(frozen=True)
class DefocusRecipe:
    """Ranges a synthesized pair draws from, uniformly and afresh for every pair (not in the paper,
    which makes each pair once with one unprinted sigma): blur std and map-boundary softness in px,
    the foreground's share of the patch, and the size of its blobs in px; ``disk`` is the share of
    pairs blurred by a pillbox of the same std (:func:`disk_blur`) instead of eq. 18-19's Gaussian,
    ``spread`` the share of training pairs made by :func:`defocus_spread` instead of eq. 18-19 (the
    near layer's blur spreading over the far one, as at real depth edges)."""

    sigma: tuple[float, float]
    soft: tuple[float, float]
    fraction: tuple[float, float]
    blob_size: tuple[int, int]
    disk: float = 0.0
    spread: float = 0.0

    def __post_init__(self) -> None:
        for name, low_ok in (("sigma", 0.0), ("soft", 0.0), ("fraction", 0.0), ("blob_size", 1)):
            low, high = getattr(self, name)
            if not low_ok <= low <= high:
                raise ValueError(f"{name} must be a range [low, high] with {low_ok} <= low <= high, got {[low, high]}")
        if self.fraction[1] >= 1.0 or self.fraction[0] <= 0.0:
            raise ValueError(f"fraction must lie inside (0, 1), got {list(self.fraction)}")
        for name in ("disk", "spread"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a share in [0, 1], got {getattr(self, name)}")

    @property
    def margin(self) -> int:
        """Pixels a crop needs around the patch so the widest blur never sees the crop's border
        (the Gaussian's +-3 sigma also covers the disk's radius of 2 sigma)."""
        return blur_kernel_size(self.sigma[1]) // 2

    def draw_blob_size(self, generator: torch.Generator) -> int:
        """One blob size in px, uniform over the integers of ``blob_size``."""
        return int(torch.randint(self.blob_size[0], self.blob_size[1] + 1, (), generator=generator))

    def blurrer(self, sigma: float, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
        """A defocus of ``sigma``: a pillbox for a ``disk`` share of the draws, else a Gaussian.
        With ``disk = 0`` nothing is drawn, so Gaussian-only recipes keep their random streams."""
        if self.disk > 0 and float(torch.rand((), generator=generator)) < self.disk:
            return partial(disk_blur, sigma=sigma)
        return partial(gaussian_blur, sigma=sigma)

    def blur(self, image: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
        """``image`` under a fresh :meth:`blurrer`."""
        return self.blurrer(sigma, generator)(image)


def uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    """One draw from U(low, high)."""
    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=generator))


def draw_focus_map(height: int, width: int, recipe: DefocusRecipe, generator: torch.Generator) -> torch.Tensor:
    """A (1, H, W) decision map: random blobs of a drawn size and foreground share, softened by a drawn width."""
    blob = recipe.draw_blob_size(generator)
    mask = random_blobs(height, width, generator, blob_size=blob, fraction=uniform(recipe.fraction, generator))
    return soften(mask, uniform(recipe.soft, generator))


def draw_pair(
    photo: torch.Tensor, size: int, recipe: DefocusRecipe, generator: torch.Generator, flips: bool = True
) -> dict[str, torch.Tensor]:
    """One fresh (A, B, GT) patch of ``size`` px from an all-in-focus ``photo`` (C, H, W) in [0, 1].

    Draws a crop position, one of the 8 flips/90-degree rotations (``flips``), blur sigma (and its
    kernel, :meth:`DefocusRecipe.blurrer`) and a decision map (:func:`draw_focus_map`), then applies
    equations 18-19, or for a ``recipe.spread`` share of the pairs :func:`defocus_spread` with the
    near layer in focus in A or in B by a coin. The crop carries a margin so the blur (and the near
    layer's spread) sees real pixels, not padding. Returns ``{"a", "b", "gt"}`` (C, size, size) and
    the drawn ``"sigma"`` (0-d tensor).
    """
    side = size + 2 * recipe.margin
    height, width = photo.shape[-2:]
    if min(height, width) < side:
        raise ValueError(f"photo of {width}x{height} is smaller than a {size}px patch plus its {recipe.margin}px blur margin")
    top = int(torch.randint(height - side + 1, (), generator=generator))
    left = int(torch.randint(width - side + 1, (), generator=generator))
    crop = photo[:, top : top + side, left : left + side]
    if flips:
        crop = torch.rot90(crop, int(torch.randint(4, (), generator=generator)), dims=(-2, -1))
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-1)
    sigma = uniform(recipe.sigma, generator)
    inner = slice(recipe.margin, recipe.margin + size)
    sharp = crop[None, :, inner, inner]
    blur = recipe.blurrer(sigma, generator)
    if recipe.spread > 0 and float(torch.rand((), generator=generator)) < recipe.spread:
        a, b = defocus_spread(crop[None], draw_focus_map(side, side, recipe, generator)[None], blur)
        if float(torch.rand((), generator=generator)) < 0.5:
            a, b = b, a
        a, b = a[:, :, inner, inner], b[:, :, inner, inner]
    else:
        a, b = compose(sharp, blur(crop[None])[:, :, inner, inner], draw_focus_map(size, size, recipe, generator)[None])
    return {"a": a[0], "b": b[0], "gt": sharp[0].clone(), "sigma": torch.tensor(sigma)}
