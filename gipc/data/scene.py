"""A scene, how a synthetic one is made from an all-in-focus photo, and the seeded train/test split.

Shared by the embedded set and the MFI-DRC builder so both make pairs the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch

from gipc.data.decision_maps import make_map
from gipc.data.synthesis import DefocusRecipe, compose, draw_focus_map, soften, synthesize_pair, uniform
from gipc.errors import DataError


@dataclass(frozen=True)
class Scene:
    """One multi-focus pair: sources ``a`` and ``b`` (C, H, W) in [0, 1], all-in-focus ``gt`` and the
    true decision map ``focus_map`` (1, H, W) in [0, 1] (1 where A is in focus) if known; for a focus
    sequence, its sources after ``b`` in ``more``."""

    name: str
    a: torch.Tensor
    b: torch.Tensor
    gt: torch.Tensor | None = None
    focus_map: torch.Tensor | None = None
    more: tuple[torch.Tensor, ...] = ()

    @property
    def sources(self) -> tuple[torch.Tensor, ...]:
        """Every source in focus order."""
        return (self.a, self.b, *self.more)


def scene_generator(seed: int, name: str) -> torch.Generator:
    """A generator for one image, seeded from (seed, name) so adding images never changes the others."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def synthesize_scene(
    name: str, image: torch.Tensor, map_source: str, seed: int, sigma: float, soft: float, **map_options
) -> Scene:
    """Decision map from ``map_source``, softened by ``soft`` pixels, then equations 18-19 on ``image``."""
    focus_map = soften(make_map(map_source, image, scene_generator(seed, name), **map_options), soft)
    a, b = synthesize_pair(image[None], focus_map[None], sigma)
    return Scene(name, a[0], b[0], image, focus_map)


def check_share(key: str, value: float) -> None:
    """A held-out share of the photos: in [0, 1) (``key`` names the setting in the message)."""
    if not 0.0 <= value < 1.0:
        raise DataError(f"{key} must be a share in [0, 1), got {value!r}")


def split_names(names: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split into (train, test), both sorted; the paper holds out 30 of 120 (0.25).

    The permutation is drawn over the sorted names, so the split depends on the set of names and
    the seed only, not on directory listing order.
    """
    check_share("test fraction", test_fraction)
    ordered = sorted(set(names))
    if len(ordered) != len(names):
        raise DataError("image names must be unique")
    count = round(len(ordered) * test_fraction)
    if test_fraction > 0 and len(ordered) >= 2:
        count = min(max(count, 1), len(ordered) - 1)
    order = torch.randperm(len(ordered), generator=torch.Generator().manual_seed(seed)).tolist()
    test = sorted(ordered[i] for i in order[:count])
    train = sorted(ordered[i] for i in order[count:])
    return train, test


def held_out_scene(name: str, image: torch.Tensor, recipe: DefocusRecipe, seed: int) -> Scene:
    """A whole-image pair for validation or test: blob map, boundary softness, blur sigma and kernel
    drawn from ``recipe`` with a generator of (seed, name), so the set is fixed for a seed."""
    generator = scene_generator(seed, name)
    focus_map = draw_focus_map(*image.shape[-2:], recipe, generator)
    blurred = recipe.blur(image[None], uniform(recipe.sigma, generator), generator)
    a, b = compose(image[None], blurred, focus_map[None])
    return Scene(name, a[0], b[0], image, focus_map)
