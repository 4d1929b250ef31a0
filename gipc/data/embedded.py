"""The default data set: MFI-DRC-style pairs made in memory from scikit-image's bundled photos.

Needs no download: only images shipped inside the scikit-image wheel are used (those that
``skimage.data`` would fetch with pooch are left out). Each photo has a decision-map source
suited to it: region competition for photos with a subject, the true disparity for the stereo
motorcycle, random blobs for textures and documents with no foreground.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import skimage.data
import torch

from gipc.data.scene import Scene, split_names, synthesize_scene
from gipc.data.synthesis import SMALLEST_SIDE, fit_longest_side
from gipc.errors import DataError


@dataclass(frozen=True)
class Photo:
    """An all-in-focus image (C, H, W) in [0, 1] with the map source (and its options) to use on it."""

    name: str
    image: torch.Tensor
    map_source: str
    map_options: dict[str, Any] = field(default_factory=dict)


def _motorcycle() -> tuple[np.ndarray, np.ndarray]:
    left, _, disp = skimage.data.stereo_motorcycle()
    return left, disp


# name -> (loader returning (uint8 image, disparity or None), decision-map source)
CATALOGUE: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray | None]], str]] = {
    **{
        name: ((lambda name=name: (getattr(skimage.data, name)(), None)), "region_competition")
        for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "retina")
    },
    **{
        name: ((lambda name=name: (getattr(skimage.data, name)(), None)), "blobs")
        for name in ("moon", "immunohistochemistry", "hubble_deep_field", "gravel", "brick", "grass", "page", "text", "cell")
    },
    "motorcycle_left": (_motorcycle, "disparity"),
}


def load_photo(name: str, max_side: int | None, map_source: str | None = None) -> Photo:
    """One catalogue photo, downscaled so its longest side is at most ``max_side`` (``None``: full size)."""
    if name not in CATALOGUE:
        raise DataError(f"unknown embedded photo {name!r}; choose from {', '.join(CATALOGUE)}")
    loader, default_source = CATALOGUE[name]
    pixels, disp = loader()
    image = torch.from_numpy(np.ascontiguousarray(pixels)).float() / 255.0
    image = fit_longest_side(image[None] if image.ndim == 2 else image.permute(2, 0, 1), max_side)
    source = map_source or default_source
    options: dict[str, Any] = {}
    if source == "disparity":
        if disp is None:
            raise DataError(f"embedded photo {name!r} has no disparity map; use another map source")
        options["depth"] = fit_longest_side(torch.from_numpy(disp).float()[None], max_side, nearest=True)[0]
    return Photo(name, image, source, options)


@dataclass(frozen=True)
class SyntheticSet:
    """Train and held-out test scenes, each with its decision map."""

    train: tuple[Scene, ...]
    test: tuple[Scene, ...]


@functools.lru_cache(maxsize=4)
def embedded_set(
    *,
    test_fraction: float,
    seed: int = 0,
    sigma: float,
    soft: float = 0.0,
    max_side: int,
    map_source: str | None = None,
    names: tuple[str, ...] | None = None,
) -> SyntheticSet:
    """Build the embedded set in memory: every photo through equations 18-19, split by ``seed``.

    ``map_source`` forces one decision-map source on every photo (``None``: each photo's own;
    ``"disparity"`` only works for photos with a disparity map). ``names`` picks a subset.
    Memoised per argument set (a fit and a test in one process build it once): treat the
    tensors as read-only.
    """
    if max_side < SMALLEST_SIDE:
        raise DataError(f"max_side must be >= {SMALLEST_SIDE}, got {max_side}")
    chosen = tuple(CATALOGUE) if names is None else names
    if not chosen:
        raise DataError("no embedded photos chosen (data.source.photos=[]); name some of them, or leave it null for every photo")
    train_names, test_names = split_names(chosen, test_fraction, seed)

    def make(name: str) -> Scene:
        photo = load_photo(name, max_side, map_source)
        return synthesize_scene(name, photo.image, photo.map_source, seed, sigma, soft, **photo.map_options)

    return SyntheticSet(tuple(make(n) for n in train_names), tuple(make(n) for n in test_names))
