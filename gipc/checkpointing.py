"""Checkpoints a kill cannot corrupt: atomic writes, a real ``last.ckpt``, never a diverged model."""

from __future__ import annotations

import os
import warnings
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gipc.files import atomic_path
from gipc.module import NonFiniteLossError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temp file beside the target, flush it to disk, then rename it.

    A kill (or a full disk) during ``torch.save`` leaves the previous file whole: the rename is
    the only step that touches the target, and it is atomic on one file system.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with the guarantees resume relies on.

    * ``last.ckpt`` is always a complete file (``save_last="link"``, a symlink to a file top-k may
      delete, is refused) and is written once more when training ends, so it holds the final
      weights even when the run stops between two ``every_n_train_steps`` saves;
    * a model whose weights are no longer finite is never saved: training stops with
      :class:`~gipc.module.NonFiniteLossError` and the last good checkpoint stays.

    Lightning counts every optimizer step as a train step: with ``t`` D steps per G step one batch
    is ``t + 1`` steps, so ``every_n_train_steps=3`` saves after every batch when ``t = 2``.
    """

    def __init__(self, *args: Any, save_last: bool | None = True, **kwargs: Any) -> None:
        if save_last == "link":
            raise ValueError("callbacks.model_checkpoint.save_last=link would make last.ckpt a symlink; use true")
        super().__init__(*args, save_last=save_last, **kwargs)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Lightning warns that with manual optimization the checkpoint holds the weights after the
        # optimizer steps: for a finished batch that is exactly the state a resume needs.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
            super().on_train_batch_end(trainer, pl_module, *args)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        bad = [name for name, p in trainer.lightning_module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(
                f"weights {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} are no longer finite at train step "
                f"{trainer.global_step}, so they were not saved; lower model.lr"
            )
        super()._save_checkpoint(trainer, filepath)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skips a step already saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
