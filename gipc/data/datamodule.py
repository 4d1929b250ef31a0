"""The LightningDataModule: luminance patch batches for training, whole colour images for val/test.

Sources: the embedded set (default, built in memory from scikit-image's photos), or a folder
built by ``gipc-build-data`` (``root/train`` and ``root/test``, each ``A/ B/ GT/``); optionally a
separate ``test_root`` of real pairs without ground truth (e.g. Lytro) replaces the held-out
images at test time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, Subset

from gipc.data.datasets import PairFolder, PatchDataset, SynthesizedPatches, WholeImageDataset
from gipc.data.embedded import embedded_set
from gipc.data.photos import photo_pool
from gipc.data.scene import Scene, held_out_scene, split_names
from gipc.data.synthesis import DefocusRecipe
from gipc.errors import DataError

DISCRIMINATOR_STRIDE = 16
"""The discriminator halves the patch four times (Table 2), so patches must be multiples of 16."""


def _at_least(name: str, value: int | None, low: int) -> None:
    if value is not None and (not isinstance(value, int) or value < low):
        raise DataError(f"data.{name} must be an integer >= {low}, got {value!r}")


class EpochShuffle(Sampler[int]):
    """A shuffle whose order depends only on (seed, epoch), not on how many epochs this process has run.

    A torch ``RandomSampler`` draws each epoch's order from one running generator, so a run resumed
    at epoch 3 would replay epoch 0's order; here Lightning's ``set_epoch`` picks the order directly.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        # SeedSequence mixes (seed, epoch) so that seed s at epoch e + 1 is not seed s + 1 at epoch e.
        mixed = int(np.random.SeedSequence((self.seed, self.epoch)).generate_state(1, np.uint64)[0])
        yield from torch.randperm(self.size, generator=torch.Generator().manual_seed(mixed)).tolist()


def _first(scenes: Sequence[Scene], count: int) -> Sequence[Scene]:
    """The first ``count`` scenes, lazily: a folder reads an image only when it is used."""
    return Subset(scenes, range(min(count, len(scenes))))  # type: ignore[arg-type]


class FreshDraws(EpochShuffle):
    """Epoch ``e`` hands out the new indices ``e * size ... (e + 1) * size - 1``: with
    :class:`~gipc.data.datasets.SynthesizedPatches` every epoch sees pairs never drawn before, and
    a resumed epoch draws what the uninterrupted one would have."""

    def __iter__(self) -> Iterator[int]:
        yield from range(self.epoch * self.size, (self.epoch + 1) * self.size)


class ResumableLoader(DataLoader):
    """A train DataLoader Lightning checkpoints mid-epoch: ``state_dict`` holds the epoch and the
    batches handed out in it; after ``load_state_dict`` the next pass over that epoch skips them.

    With :class:`EpochShuffle` the resumed batch sequence is the uninterrupted run's. Skipped batches
    are read and dropped (cheap for in-memory patches), so the skip also holds per rank under DDP,
    where Lightning wraps the sampler. Iteration starts lazily, after Lightning's ``set_epoch``.
    """

    def __init__(self, dataset: Any, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._epoch, self._served = 0, 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        epoch = getattr(self.sampler, "epoch", 0)
        skip = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume, self._epoch, self._served = None, epoch, skip
        batches = super().__iter__()
        for _ in range(skip):
            next(batches, None)
        for batch in batches:
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches"]))


class FusionDataModule(L.LightningDataModule):
    """Train on aligned Y patches of (A, B, GT); validate on a few held-out images, test on all of them.

    The train loader yields ``batch_size * batches_per_step`` patches per batch so the module can
    split it into fresh sub-batches for each D step and the G step (Algorithm 1).
    """

    def __init__(
        self,
        batch_size: int,
        patch_size: int,
        stride: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        root: str | None = None,
        test_root: str | None = None,
        patches_per_epoch: int | None = None,
        val_count: int = 2,
        flips: bool = False,
        sigma: float = 2.0,
        soft: float = 0.0,
        max_side: int | None = 256,
        map_source: str | None = None,
        photos: Sequence[str] | None = None,
        synthesis: Mapping[str, Any] | None = None,
        held_out_synthesis: Mapping[str, Any] | None = None,
        photo_dirs: Sequence[str] = (),
        embedded_photos: bool = True,
        *,
        test_fraction: float,
        batches_per_step: int = 1,
    ) -> None:
        """``batch_size``, ``patch_size`` and ``test_fraction`` come from ``conf/data`` (the paper's b = 32,
        80x80 and 30 of 120 images held out).

        ``root=None`` selects the embedded set, whose options are ``sigma`` (blur std, px),
        ``soft`` (map softening std, px), ``max_side``, ``test_fraction``, ``map_source`` (force one
        decision-map source) and ``photos`` (a subset of its photo names).

        ``synthesis`` (a :class:`DefocusRecipe`'s ranges) switches to pairs synthesized on the fly
        from a photo pool: the embedded photos (``embedded_photos``) and the folders ``photo_dirs``,
        split by ``seed`` and ``test_fraction``; the held-out photos become whole-image pairs drawn
        with ``held_out_synthesis``: the first ``val_count`` validate, the others test (disjoint,
        so a checkpoint chosen on validation is scored on photos no choice has seen).
        """
        super().__init__()
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("batches_per_step", batches_per_step, 1),
            ("patch_size", patch_size, DISCRIMINATOR_STRIDE),
            ("stride", stride, 1),
            ("num_workers", num_workers, 0),
            ("patches_per_epoch", patches_per_epoch, 1),
            ("val_count", val_count, 1),
        ):
            _at_least(name, value, low)
        if patch_size % DISCRIMINATOR_STRIDE:
            raise DataError(f"data.patch_size must be a multiple of {DISCRIMINATOR_STRIDE} (the discriminator's down-sampling), got {patch_size}")
        if root is not None:
            root_path = Path(root)
            for sub in ("train", "test"):
                if not (root_path / sub).is_dir():
                    raise DataError(f"data.root {root}: no {sub}/ folder; build one with `gipc-build-data --out {root} ...`")
        if test_root is not None and not Path(test_root).is_dir():
            raise DataError(f"data.test_root {test_root} does not exist or is not a folder")
        self.batch_size, self.patch_size, self.stride = batch_size, patch_size, stride
        self.num_workers, self.seed, self.batches_per_step = num_workers, seed, batches_per_step
        self.root, self.test_root = root, test_root
        self.patches_per_epoch, self.val_count, self.flips = patches_per_epoch, val_count, flips
        self.embedded_options = dict(
            seed=seed,
            sigma=sigma,
            soft=soft,
            max_side=max_side,
            test_fraction=test_fraction,
            map_source=map_source,
            names=tuple(photos) if photos is not None else None,
        )
        if (synthesis is None) != (held_out_synthesis is None):
            raise DataError("data.synthesis and data.held_out_synthesis go together: set both or neither")
        if synthesis is not None and root is not None:
            raise DataError("data.synthesis makes pairs from photos; it cannot be combined with data.root (a built folder)")
        try:
            self.recipes = None if synthesis is None else (DefocusRecipe(**synthesis), DefocusRecipe(**held_out_synthesis))
        except (TypeError, ValueError) as err:
            raise DataError(f"bad data.synthesis or data.held_out_synthesis: {err}") from None
        self.photo_dirs, self.embedded_photos = tuple(photo_dirs), embedded_photos
        self.train_set: PatchDataset | SynthesizedPatches | None = None
        self.val_scenes: Sequence[Scene] | None = None
        self.test_scenes: Sequence[Scene] | None = None

    def _scenes(self) -> tuple[Sequence[Scene], Sequence[Scene]]:
        if self.root is None:
            built = embedded_set(**self.embedded_options)
            return list(built.train), list(built.test)
        train, test = PairFolder(Path(self.root) / "train"), PairFolder(Path(self.root) / "test")
        for folder in (train, test):
            if not folder.has_gt:
                raise DataError(f"{folder.root} has no GT/ folder; a built data set needs ground truth")
        return train, test

    def _setup_synthesized(self) -> None:
        """Training draws from the train photos; val and test are fixed pairs of disjoint held-out photos."""
        recipe, held_out_recipe = self.recipes
        pool = photo_pool(self.embedded_photos, self.photo_dirs, self.embedded_options["max_side"])
        train, held = split_names(list(pool), self.embedded_options["test_fraction"], self.seed)
        if len(held) <= self.val_count:
            raise DataError(
                f"{len(held)} held-out photos cannot give {self.val_count} for validation and some for test; "
                "raise data.test_fraction or lower data.val_count"
            )
        scenes = [held_out_scene(name, pool[name], held_out_recipe, self.seed) for name in held]
        self.val_scenes, self.test_scenes = scenes[: self.val_count], scenes[self.val_count :]
        if self.patches_per_epoch is None:
            raise DataError("data.patches_per_epoch must be set for synthesized patches (they never run out)")
        self.train_set = SynthesizedPatches(
            [pool[name] for name in train], self.patch_size, recipe, self.patches_per_epoch, self.seed, self.flips
        )

    def setup(self, stage: str | None = None) -> None:
        """Read or synthesize the images once; later stages reuse them."""
        if self.test_scenes is not None:
            return
        if self.recipes is not None:
            self._setup_synthesized()
        else:
            train, held_out = self._scenes()
            if not held_out:
                raise DataError("no held-out images for validation/test; raise data.test_fraction or add images to test/")
            self.val_scenes, self.test_scenes = _first(held_out, self.val_count), held_out
            self.train_set = PatchDataset(
                train, self.patch_size, self.stride, self.patches_per_epoch, seed=self.seed, flips=self.flips
            )
        loaded = self.batch_size * self.batches_per_step
        if len(self.train_set) < loaded:
            raise DataError(
                f"only {len(self.train_set)} training patches but one step loads {loaded} "
                f"(batch_size {self.batch_size} x {self.batches_per_step}); raise patches_per_epoch or lower batch_size"
            )

    def train_dataloader(self) -> ResumableLoader:
        return ResumableLoader(
            self.train_set,
            batch_size=self.batch_size * self.batches_per_step,
            sampler=(FreshDraws if isinstance(self.train_set, SynthesizedPatches) else EpochShuffle)(len(self.train_set), self.seed),
            drop_last=True,  # every batch must split into batches_per_step equal sub-batches
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Worker seeds come from here, not from the global RNG.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _whole(self, scenes: Sequence[Scene]) -> DataLoader:
        return DataLoader(WholeImageDataset(scenes), batch_size=1, shuffle=False, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._whole(self.val_scenes)

    def test_dataloader(self) -> DataLoader:
        return self._whole(PairFolder(self.test_root) if self.test_root is not None else self.test_scenes)
