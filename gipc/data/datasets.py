"""Folder readers (pairs, focus sequences) and the two torch datasets: training patches and whole images.

Folders are grouped by :func:`gipc.data.sources.group_sources` (``A/``, ``B/`` subfolders or
``<scene>-A``, ``<scene>-B`` names, and the public sets' layouts); a paired folder may also hold ``GT/``, one all-in-focus
image per scene with the same stem (what ``gipc-build-data`` writes).
"""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from gipc.color import luma
from gipc.data.scene import Scene
from gipc.data.synthesis import DefocusRecipe, draw_pair
from gipc.data.sources import files_by_stem, group_sources
from gipc.errors import DataError
from gipc.imaging import Image, read_image, read_matching

RANDOM_DENSITY = 8
"""Random crops default to as many as a grid with stride patch_size / 8 holds: dense overlap, like
the paper's ~2,054 patches per image (184,885 from 90)."""


class PairFolder(Sequence[Scene]):
    """Lazily read pairs (and ground truth when there is a ``GT/`` folder) from ``root``; with
    ``sequences``, focus sequences of three or more sources too (what gipc-eval scores)."""

    def __init__(self, root: str | Path, sequences: bool = False) -> None:
        self.root = Path(root)
        groups = group_sources(self.root)
        for scene, paths in groups:
            if len(paths) != 2 and not sequences:
                raise DataError(
                    f"scene {scene!r} in {self.root} has {len(paths)} sources, and pair metrics take two: give pairs here "
                    "(gipc-eval scores focus sequences, gipc-fuse fuses them; from Python, SequenceFolder reads them)"
                )
        extra = {sub: self._per_scene(sub, [scene for scene, _ in groups]) for sub in ("GT", "maps")}
        self.entries: list[tuple[str, tuple[Path, ...], Path | None, Path | None]] = [
            (scene, paths, *(files.get(scene) if files else None for files in extra.values())) for scene, paths in groups
        ]

    def _per_scene(self, sub: str, scenes: list[str]) -> dict[str, Path] | None:
        """``<root>/<sub>/<scene>.*`` for every scene, or None without the folder."""
        if not (self.root / sub).is_dir():
            return None
        files = files_by_stem(self.root / sub)
        if set(files) != set(scenes):
            odd = sorted(set(files) ^ set(scenes))
            raise DataError(f"{self.root}/{sub} and the sources name different scenes ({', '.join(odd[:5])}); every folder needs the same names")
        return files

    @property
    def has_gt(self) -> bool:
        return all(gt is not None for _, _, gt, _ in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Scene:  # type: ignore[override]
        """The scene's sources, ground truth (``GT/``) and true decision map (``maps/``, gray) when the folder has them."""
        name, sources, gt, focus_map = self.entries[index]
        images = [image.pixels for image in read_matching([*sources, *([gt] if gt is not None else [])])]
        true_map = None
        if focus_map is not None:  # gray whatever the sources' kind, so read alone
            true_map = luma(read_image(focus_map).pixels)
            if true_map.shape[1:] != images[0].shape[1:]:
                raise DataError(f"{focus_map}: the decision map's size differs from the sources' {tuple(images[0].shape[1:])}")
        count = len(sources)
        return Scene(name, *images[:2], images[count] if gt is not None else None, true_map, tuple(images[2:count]))


class SequenceFolder(Sequence[tuple[str, list[Image]]]):
    """Lazily read focus sequences ``<scene>-A``, ``-B``, ``-C``, ... (Lytro triples); items: (scene, images)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.entries = group_sources(self.root)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[str, list[Image]]:  # type: ignore[override]
        name, paths = self.entries[index]
        return name, read_matching(paths)


class PatchDataset(Dataset):
    """Aligned (1, P, P) luminance patches of A, B and GT, cut on the fly from images held once.

    ``stride`` set: the patches of a grid with that stride over every image, in order
    (index -> image, row, column by arithmetic, nothing stored per patch). ``stride=None``: random
    crops, ``count`` positions (default: see :data:`RANDOM_DENSITY`) drawn uniformly over all crop
    positions with ``seed``, fixed for the dataset's life like the paper's pre-cut patch set.
    ``count`` on a grid keeps a seeded subset of it. ``flips``: each patch gets one of the four
    horizontal/vertical flip combinations, drawn with ``seed`` like the positions, so an item depends
    only on (seed, index) and never on the global RNG or on when it is read (exact resume).
    Memory is the images plus at most one int per patch index and one byte per flip.
    The paper cuts 184,885 patches of 80x80 from 90 images (section 4.1).
    """

    def __init__(
        self,
        scenes: Iterable[Scene],
        patch_size: int,
        stride: int | None = None,
        count: int | None = None,
        seed: int = 0,
        flips: bool = False,
    ) -> None:
        if patch_size < 1 or (stride is not None and stride < 1) or (count is not None and count < 1):
            raise DataError(f"patch_size, stride and count must be >= 1 (got {patch_size}, {stride}, {count})")
        self.patch_size = patch_size
        self.step = stride or 1
        self.images: list[torch.Tensor] = []
        self.names: list[str] = []
        counts: list[int] = []
        self.columns: list[int] = []
        for scene in scenes:
            if scene.gt is None:
                raise DataError(f"training scene {scene.name!r} has no ground truth (GT/); training needs all-in-focus images")
            height, width = scene.a.shape[-2:]
            if min(height, width) < patch_size:
                raise DataError(f"image {scene.name!r} is {width}x{height}, smaller than the {patch_size}px patches; lower patch_size")
            self.names.append(scene.name)
            self.images.append(torch.cat([luma(scene.a), luma(scene.b), luma(scene.gt)]).float().contiguous())
            counts.append(self.grid_count(height, width, patch_size, self.step))
            self.columns.append((width - patch_size) // self.step + 1)
        if not self.images:
            raise DataError("no training images")
        self.offsets = [0, *itertools.accumulate(counts)]
        total = self.offsets[-1]
        generator = torch.Generator().manual_seed(seed)
        self.positions: torch.Tensor | None = None
        if stride is None:
            dense = max(1, patch_size // RANDOM_DENSITY)
            default = sum(self.grid_count(im.shape[1], im.shape[2], patch_size, dense) for im in self.images)
            self.positions = torch.randint(total, (count or default,), generator=generator)
        elif count is not None and count < total:
            self.positions = torch.randperm(total, generator=generator)[:count]
        self.flip_codes = torch.randint(4, (len(self),), generator=generator, dtype=torch.uint8) if flips else None

    @staticmethod
    def grid_count(height: int, width: int, patch_size: int, stride: int) -> int:
        """Patches of a stride-``stride`` grid in one image: ``(floor((H-P)/s)+1) * (floor((W-P)/s)+1)``."""
        return ((height - patch_size) // stride + 1) * ((width - patch_size) // stride + 1)

    @property
    def nbytes(self) -> int:
        """Bytes held: the images and the position and flip tables, never patches."""
        held = sum(im.numel() * im.element_size() for im in self.images)
        held += 0 if self.flip_codes is None else self.flip_codes.numel()
        return held + (0 if self.positions is None else self.positions.numel() * self.positions.element_size())

    def __len__(self) -> int:
        return self.offsets[-1] if self.positions is None else len(self.positions)

    def locate(self, index: int) -> tuple[int, int, int]:
        """Index -> (image, top, left) of its patch."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"patch index {index} out of range for {len(self)} patches")
        index %= len(self)
        flat = index if self.positions is None else int(self.positions[index])
        image = bisect.bisect_right(self.offsets, flat) - 1
        local = flat - self.offsets[image]
        return image, (local // self.columns[image]) * self.step, (local % self.columns[image]) * self.step

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, top, left = self.locate(index)
        size = self.patch_size
        crop = self.images[image][:, top : top + size, left : left + size]
        if self.flip_codes is not None:
            code = int(self.flip_codes[index])
            dims = [dim for dim, bit in ((1, 0b01), (2, 0b10)) if code & bit]  # rows, columns
            crop = crop.flip(dims) if dims else crop
        return {"a": crop[0:1], "b": crop[1:2], "gt": crop[2:3]}


class WholeImageDataset(Dataset):
    """Whole colour images for validation and test: ``{"a", "b", "gt" and "focus_map" (when known), "name"}``."""

    def __init__(self, scenes: Sequence[Scene]) -> None:
        self.scenes = scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scenes[index]
        item: dict[str, Any] = {"a": scene.a, "b": scene.b, "name": scene.name}
        if scene.gt is not None:
            item["gt"] = scene.gt
        if scene.focus_map is not None:
            item["focus_map"] = scene.focus_map
        return item


def draw_generator(seed: int, index: int) -> torch.Generator:
    """A generator for draw ``index`` of a run seeded ``seed``: SeedSequence mixes the two, so draws of
    neighbouring indices or seeds are unrelated and an item never depends on when it is read."""
    mixed = int(np.random.SeedSequence((seed, index)).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(mixed >> 1)


class SynthesizedPatches(Dataset):
    """Training patches synthesized on the fly: item ``k`` is a fresh (A, B, GT) luminance patch drawn
    from the photo pool with :func:`~gipc.data.synthesis.draw_pair`, a function of (seed, k) only.

    Indices past ``len`` are valid and new (the train sampler hands epoch ``e`` the indices
    ``e * len ... (e + 1) * len - 1``), so distinct pairs never run out. Photos are picked with
    probability proportional to their area, so every region of the pool is equally likely.
    """

    def __init__(
        self, photos: Sequence[torch.Tensor], patch_size: int, recipe: DefocusRecipe, length: int, seed: int, flips: bool = True,
        names: Sequence[str] | None = None,
    ) -> None:
        if length < 1:
            raise DataError(f"data.source.patches_per_epoch must be >= 1 for synthesized patches, got {length}")
        side = patch_size + 2 * recipe.margin
        for i, photo in enumerate(photos):
            if min(photo.shape[-2:]) < side:
                which = f"photo {names[i]!r} is {photo.shape[-1]}x{photo.shape[-2]}," if names else f"a {photo.shape[-1]}x{photo.shape[-2]} photo is"
                raise DataError(
                    f"{which} smaller than a {patch_size}px patch plus its {recipe.margin}px blur margin; "
                    "lower data.patch_size or the largest sigma" + (", or take it out of the photos" if names else "")
                )
        self.photos = [luma(photo).float().contiguous() for photo in photos]
        self.area = torch.tensor([float(p.shape[-1] * p.shape[-2]) for p in self.photos])
        self.patch_size, self.recipe, self.length, self.seed, self.flips = patch_size, recipe, length, seed, flips

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = draw_generator(self.seed, index)
        photo = self.photos[int(torch.multinomial(self.area, 1, generator=generator))]
        pair = draw_pair(photo, self.patch_size, self.recipe, generator, self.flips)
        return {k: pair[k] for k in ("a", "b", "gt")}
