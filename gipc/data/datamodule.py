"""The LightningDataModule: luminance patch batches for training, whole colour images for val/test.

Where the pairs come from is its ``source`` (:mod:`gipc.data.pair_sets`, ``data.source`` in the
config); an optional ``test_root`` of real pairs without ground truth (e.g. Lytro) replaces the
held-out images at test time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from gipc.data.datasets import PairFolder, SynthesizedPatches, WholeImageDataset
from gipc.data.pair_sets import PairSet, Split, at_least
from gipc.data.samplers import EpochShuffle, FreshDraws, ResumableLoader
from gipc.data.scene import Scene
from gipc.errors import DataError

class FusionDataModule(L.LightningDataModule):
    """Train on aligned Y patches of (A, B, GT); validate on a few held-out images, test on all of them.

    The train loader yields ``batch_size * batches_per_step`` patches per batch so the module can
    split it into fresh sub-batches for each D step and the G step (Algorithm 1).
    """

    def __init__(
        self,
        source: PairSet,
        batch_size: int,
        patch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        test_root: str | None = None,
        batches_per_step: int = 1,
        paper_epoch: bool = False,
    ) -> None:
        """``batch_size`` and ``patch_size`` come from ``conf/data`` (the paper's b = 32 and 80x80);
        ``seed`` splits the source and draws its patches. A loaded batch holds ``batches_per_step``
        batches (the t D steps' and the G step's); with ``paper_epoch`` an epoch is Algorithm 1's
        m = n / b G steps, so every patch is drawn ``batches_per_step`` times, else one pass over them."""
        super().__init__()
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("batches_per_step", batches_per_step, 1),
            ("patch_size", patch_size, 1),  # the discriminator checks the multiple its convs need
            ("num_workers", num_workers, 0),
        ):
            at_least(f"data.{name}", value, low)
        if test_root is not None and not Path(test_root).is_dir():
            raise DataError(f"data.test_root {test_root} does not exist or is not a folder")
        self.source, self.batch_size, self.patch_size = source, batch_size, patch_size
        self.num_workers, self.seed, self.test_root, self.batches_per_step = num_workers, seed, test_root, batches_per_step
        self.paper_epoch = paper_epoch
        self.split: Split | None = None

    @property
    def train_set(self) -> Dataset:
        return self._ready().train

    @property
    def val_scenes(self) -> Sequence[Scene]:
        return self._ready().val

    @property
    def test_scenes(self) -> Sequence[Scene]:
        return self._ready().test

    def _ready(self) -> Split:
        if self.split is None:
            raise RuntimeError("FusionDataModule.setup() has not run")
        return self.split

    def setup(self, stage: str | None = None) -> None:
        """Read or synthesize the images once; later stages reuse them."""
        if self.split is not None:
            return
        split = self.source.split(self.patch_size, self.seed)
        loaded = self.batch_size * self.batches_per_step // self._passes  # a paper epoch draws each patch t + 1 times
        if len(split.train) < loaded:
            raise DataError(
                f"only {len(split.train)} training patches but an epoch needs at least {loaded} "
                f"(batch_size {self.batch_size}, {self.batches_per_step} batches per step); raise patches_per_epoch or lower batch_size"
            )
        self.split = split

    def train_dataloader(self) -> ResumableLoader:
        train = self.train_set
        return ResumableLoader(
            train,
            batch_size=self.batch_size * self.batches_per_step,
            sampler=(FreshDraws if isinstance(train, SynthesizedPatches) else EpochShuffle)(
                len(train), self.seed, self._passes
            ),
            drop_last=True,  # every batch must split into batches_per_step equal sub-batches
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.on_cuda,
            # Worker seeds come from here, not from the global RNG.
            generator=torch.Generator().manual_seed(self.seed),
        )

    @property
    def _passes(self) -> int:
        """Passes over the training patches per epoch: one per D and G batch of a step in a paper epoch."""
        return self.batches_per_step if self.paper_epoch else 1

    @property
    def on_cuda(self) -> bool:
        """Whether the trainer runs on a CUDA device: its batches are then pinned, so that the copy to the
        GPU runs beside the step instead of first through a pageable staging buffer (a GPU profile saw
        every batch copied from pageable memory)."""
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _whole(self, scenes: Sequence[Scene]) -> DataLoader:
        return DataLoader(WholeImageDataset(scenes), batch_size=1, shuffle=False, num_workers=self.num_workers, pin_memory=self.on_cuda)

    def val_dataloader(self) -> DataLoader:
        return self._whole(self.val_scenes)

    def test_dataloader(self) -> DataLoader:
        return self._whole(PairFolder(self.test_root) if self.test_root is not None else self.test_scenes)
