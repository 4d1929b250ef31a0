"""Where a run's pairs come from: one class per source, each taking only its own options (``data.source``).

* :class:`EmbeddedPairs`: scikit-image's bundled photos through equations 18-19, built in memory
  (the default, no download);
* :class:`FolderPairs`: a folder built by ``gipc-build-data`` (``root/train`` and ``root/test``,
  each ``A/ B/ GT/``), e.g. MFI-DRC;
* :class:`SynthesizedPairs`: training pairs synthesized afresh for every patch from a pool of
  all-in-focus photos, held-out photos made once into validation and test pairs.

Each one splits into a :class:`Split` for a patch size and a seed; the data module
(:mod:`gipc.data.datamodule`) only loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from torch.utils.data import Dataset, Subset

from gipc.data.datasets import PairFolder, PatchDataset, SynthesizedPatches
from gipc.data.embedded import embedded_set
from gipc.data.photos import photo_pool
from gipc.data.scene import Scene, check_share, held_out_scene, split_names
from gipc.data.synthesis import SMALLEST_SIDE, DefocusRecipe
from gipc.errors import DataError
from gipc.typecheck import check_values, hints


@dataclass(frozen=True)
class Split:
    """Training patches, and the whole images validation and test score."""

    train: Dataset
    val: Sequence[Scene]
    test: Sequence[Scene]


class PairSet(Protocol):
    def split(self, patch_size: int, seed: int) -> Split:
        """The run's pairs for ``patch_size`` patches, split and drawn with ``seed``."""


def at_least(key: str, value: int | None, low: int, optional: bool = False) -> None:
    """The one check of the data config's counts: ``value`` an integer >= ``low`` (or None when ``optional``)."""
    if not (optional and value is None) and (not isinstance(value, int) or value < low):
        raise DataError(f"{key} must be an integer >= {low}, got {value!r}")


def _first(scenes: Sequence[Scene], count: int) -> Sequence[Scene]:
    """The first ``count`` scenes, lazily: a folder reads an image only when it is used."""
    return Subset(scenes, range(min(count, len(scenes))))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class _Patches:
    """Options of sources made once (embedded, folder): patches cut from fixed training pairs."""

    stride: int | None = None
    patches_per_epoch: int | None = None
    flips: bool = False
    val_count: int = 2

    def __post_init__(self) -> None:
        at_least("data.source.stride", self.stride, 1, optional=True)
        at_least("data.source.patches_per_epoch", self.patches_per_epoch, 1, optional=True)
        at_least("data.source.val_count", self.val_count, 1)

    def _split(self, train: Sequence[Scene], held_out: Sequence[Scene], patch_size: int, seed: int) -> Split:
        """Validation on the first ``val_count`` held-out images, test on all of them (as in the paper)."""
        if not held_out:
            raise DataError("no held-out images for validation/test; raise data.source.test_fraction or add images to test/")
        patches = PatchDataset(train, patch_size, self.stride, self.patches_per_epoch, seed=seed, flips=self.flips)
        return Split(patches, _first(held_out, self.val_count), held_out)


@dataclass(frozen=True, kw_only=True)
class EmbeddedPairs(_Patches):
    """The embedded set (:func:`gipc.data.embedded.embedded_set`): blur ``sigma`` and map softening
    ``soft`` in px, photos cut to ``max_side``, ``test_fraction`` held out, ``map_source`` forcing one
    decision-map source, ``photos`` a subset of its names."""

    test_fraction: float
    sigma: float
    soft: float = 0.0
    max_side: int
    map_source: str | None = None
    photos: Sequence[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("sigma", "soft"):
            if not getattr(self, key) >= 0.0:
                raise DataError(f"data.source.{key} must be >= 0 (px), got {getattr(self, key)!r}")
        at_least("data.source.max_side", self.max_side, SMALLEST_SIDE)
        check_share("data.source.test_fraction", self.test_fraction)

    def split(self, patch_size: int, seed: int) -> Split:
        built = embedded_set(
            test_fraction=self.test_fraction, seed=seed, sigma=self.sigma, soft=self.soft, max_side=self.max_side,
            map_source=self.map_source, names=tuple(self.photos) if self.photos is not None else None,
        )
        return self._split(list(built.train), list(built.test), patch_size, seed)


@dataclass(frozen=True, kw_only=True)
class FolderPairs(_Patches):
    """A folder ``gipc-build-data`` wrote: ``root/train`` and ``root/test``, each ``A/ B/ GT/``."""

    root: str

    def __post_init__(self) -> None:
        super().__post_init__()
        root = Path(self.root)
        for sub in ("train", "test"):
            if not (root / sub).is_dir():
                if root.is_dir() and any(root.iterdir()):  # a folder of something else, photos perhaps
                    how = (f"it is no gipc-build-data set; build one from its photos with `gipc-build-data --source {root} "
                           f"--out NEW_DIR`, or train on them with data=photos 'data.source.photo_dirs=[{root}]'")
                else:
                    how = f"build one with `gipc-build-data --out {root} ...`"
                raise DataError(f"data.source.root {root}: no {sub}/ folder; {how}")

    def split(self, patch_size: int, seed: int) -> Split:
        train, test = PairFolder(Path(self.root) / "train"), PairFolder(Path(self.root) / "test")
        for folder in (train, test):
            if not folder.has_gt:
                raise DataError(f"{folder.root} has no GT/ folder; a built data set needs ground truth")
        return self._split(train, test, patch_size, seed)


class SynthesizedPairs:
    """Pairs synthesized from a photo pool: the embedded photos (``embedded_photos``) and the folders
    ``photo_dirs``, longest side cut to ``max_side``, split by the seed and ``test_fraction``.

    Training draws ``patches_per_epoch`` fresh patches per epoch with ``synthesis`` (a
    :class:`~gipc.data.synthesis.DefocusRecipe`'s ranges); each held-out photo becomes one
    whole-image pair drawn with ``held_out_synthesis``: the first ``val_count`` validate, the others
    test (disjoint, so a checkpoint chosen on validation is scored on photos no choice has seen).
    """

    def __init__(
        self,
        synthesis: Mapping[str, Any],
        held_out_synthesis: Mapping[str, Any],
        patches_per_epoch: int,
        photo_dirs: Sequence[str] = (),
        embedded_photos: bool = True,
        max_side: int | None = None,
        test_fraction: float = 0.2,
        val_count: int = 3,
        flips: bool = True,
    ) -> None:
        at_least("data.source.patches_per_epoch", patches_per_epoch, 1)
        at_least("data.source.val_count", val_count, 1)
        at_least("data.source.max_side", max_side, SMALLEST_SIDE, optional=True)
        check_share("data.source.test_fraction", test_fraction)
        for key, recipe in (("synthesis", synthesis), ("held_out_synthesis", held_out_synthesis)):
            check_values(hints(DefocusRecipe), recipe, f"data.source.{key}.")
        try:
            self.recipe, self.held_out_recipe = DefocusRecipe(**synthesis), DefocusRecipe(**held_out_synthesis)
        except (TypeError, ValueError) as err:
            raise DataError(f"bad data.source.synthesis or data.source.held_out_synthesis: {err}") from None
        self.patches_per_epoch, self.photo_dirs, self.embedded_photos = patches_per_epoch, tuple(photo_dirs), embedded_photos
        self.max_side, self.test_fraction, self.val_count, self.flips = max_side, test_fraction, val_count, flips

    def pool(self) -> dict[str, Any]:
        """The photos by name (:func:`gipc.data.photos.photo_pool`)."""
        return photo_pool(self.embedded_photos, self.photo_dirs, self.max_side)

    def split(self, patch_size: int, seed: int) -> Split:
        pool = self.pool()
        train, held = split_names(list(pool), self.test_fraction, seed)
        if len(held) <= self.val_count:
            raise DataError(
                f"{len(held)} held-out photos (of {len(pool)}) cannot give {self.val_count} for validation and some for test; "
                "add photos (data.source.photo_dirs=[DIR]), raise data.source.test_fraction or lower data.source.val_count"
            )
        scenes = [held_out_scene(name, pool[name], self.held_out_recipe, seed) for name in held]
        patches = SynthesizedPatches([pool[name] for name in train], patch_size, self.recipe, self.patches_per_epoch, seed, self.flips, names=train)
        return Split(patches, scenes[: self.val_count], scenes[self.val_count :])
