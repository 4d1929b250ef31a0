"""Orders of the training patches that a resumed run replays exactly, and the loader that checkpoints its place."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffle(Sampler[int]):
    """A shuffle whose order depends only on (seed, epoch), not on how many epochs this process has run.

    A torch ``RandomSampler`` draws each epoch's order from one running generator, so a run resumed
    at epoch 3 would replay epoch 0's order; here Lightning's ``set_epoch`` picks the order directly.
    An epoch of ``passes`` passes hands out every index that many times, each pass in its own order.
    """

    def __init__(self, size: int, seed: int, passes: int = 1) -> None:
        self.size, self.seed, self.passes, self.epoch = size, seed, passes, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size * self.passes

    def __iter__(self) -> Iterator[int]:
        for again in range(self.passes):
            # SeedSequence mixes (seed, epoch) so that seed s at epoch e + 1 is not seed s + 1 at epoch e.
            key = (self.seed, self.epoch) if again == 0 else (self.seed, self.epoch, again)
            mixed = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0])
            yield from torch.randperm(self.size, generator=torch.Generator().manual_seed(mixed)).tolist()


class FreshDraws(EpochShuffle):
    """Epoch ``e`` hands out the new indices ``e * n ... (e + 1) * n - 1``, ``n = size * passes``: with
    :class:`~gipc.data.datasets.SynthesizedPatches` every epoch sees pairs never drawn before, and
    a resumed epoch draws what the uninterrupted one would have."""

    def __iter__(self) -> Iterator[int]:
        yield from range(self.epoch * len(self), (self.epoch + 1) * len(self))


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
