"""Checkpoints a kill cannot corrupt (atomic writes, a real ``last.ckpt``, never a diverged model) and the
training state beyond weights and optimisers that a resumed run needs to go on as if never stopped."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
import warnings
from types import FrameType
from typing import Any, Literal, Mapping

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gipc.errors import ConfigError, NonFiniteLossError
from gipc.files import atomic_path

log = logging.getLogger(__name__)


def global_rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python RNG states as plain lists and tensors (loadable with
    ``torch.load(weights_only=True)``, unlike numpy's own state tuple)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": list(random.getstate()),
    }


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`global_rng_state` saved (CUDA only when this process has the same devices)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class TrainingProgress:
    """The GAN's own counters and random stream, saved in every checkpoint (key ``gipc``).

    ``label_rng`` draws the soft labels (section 4.2) from ``seed``: the module's own generator, so a
    resumed run draws the labels the uninterrupted run would have drawn. ``lr_scale`` is what the
    divergence guard's ``reduce_lr`` has halved the learning rates to.
    """

    def __init__(self, seed: int) -> None:
        self.d_steps, self.g_steps, self.lr_scale = 0, 0, 1.0
        self.label_rng = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        """The counters, the label stream and the process-wide RNGs, all loadable weights-only."""
        return {
            "d_steps": self.d_steps,
            "g_steps": self.g_steps,
            "lr_scale": self.lr_scale,
            "label_rng": self.label_rng.get_state(),
            "global_rng": global_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any], resuming: bool) -> None:
        """Take over a checkpoint's state; the process-wide RNGs only when ``resuming`` a fit (loading
        weights to fuse leaves them alone)."""
        self.d_steps = state.get("d_steps", 0)
        self.g_steps = state.get("g_steps", 0)
        self.lr_scale = state.get("lr_scale", 1.0)
        if "label_rng" in state:
            self.label_rng.set_state(state["label_rng"])
        if resuming and "global_rng" in state:
            set_global_rng_state(state["global_rng"])

    def __getstate__(self) -> dict[str, Any]:
        # DDP's spawn start method pickles the module through torch.multiprocessing, which cannot carry a
        # torch.Generator (its state is a temporary tensor shared by file descriptor): send the state as bytes.
        return {**self.__dict__, "label_rng": self.label_rng.get_state().numpy().tobytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        rng = torch.Generator()
        rng.set_state(torch.frombuffer(bytearray(state["label_rng"]), dtype=torch.uint8))
        self.__dict__.update({**state, "label_rng": rng})


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
      :class:`~gipc.errors.NonFiniteLossError` and the last good checkpoint stays.

    * on ``requeue_signal`` (Slurm's warning before a time limit or a preemption, ``--signal`` of
      sbatch; submitit asks for SIGUSR2) the current batch finishes, ``last.ckpt`` is written, and
      the job is handed back: to the handler that was there before (submitit's requeues the job
      and exits), else ``scontrol requeue`` of ``$SLURM_JOB_ID`` and a clean stop. The requeued job
      continues from ``last.ckpt`` (:mod:`gipc.sweep`, :mod:`gipc.runstate`).

    Lightning counts every optimizer step as a train step: with ``t`` D steps per G step one batch
    is ``t + 1`` steps, so ``every_n_train_steps=3`` saves after every batch when ``t = 2``.
    """

    def __init__(self, *args: Any, save_last: bool | Literal["link"] | None = True, requeue_signal: str | None = "SIGUSR2", **kwargs: Any) -> None:
        if save_last == "link":
            raise ConfigError("callbacks.model_checkpoint.save_last=link would make last.ckpt a symlink; use true")
        if requeue_signal is not None and not isinstance(getattr(signal, str(requeue_signal), None), signal.Signals):
            raise ConfigError(f"callbacks.model_checkpoint.requeue_signal must name a signal such as SIGUSR2, got {requeue_signal!r}")
        super().__init__(*args, save_last=save_last, **kwargs)
        self.requeue_signal = None if requeue_signal is None else signal.Signals[requeue_signal]
        self._signalled: tuple[int, FrameType | None] | None = None
        self._previous: Any = None
        self.handed_back = False
        """True once a requeue signal stopped training: the run ends without its test stage."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.requeue_signal is not None and _main_thread():
            self._previous = signal.signal(self.requeue_signal, self._note_signal)

    def _note_signal(self, signum: int, frame: FrameType | None) -> None:
        """Only note it: the checkpoint is written at the end of the batch, where the state is whole."""
        self._signalled = (signum, frame)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skips a step already saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self.requeue_signal is not None and self._previous is not None and _main_thread():
            signal.signal(self.requeue_signal, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Lightning warns that with manual optimization the checkpoint holds the weights after the
        # optimizer steps: for a finished batch that is exactly the state a resume needs.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
            super().on_train_batch_end(trainer, pl_module, *args)
            # Every rank stops at the same batch, whichever of them the signal reached.
            if self.requeue_signal is not None and trainer.strategy.reduce_boolean_decision(self._signalled is not None, all=False):
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
                self._hand_back(trainer)

    def _hand_back(self, trainer: L.Trainer) -> None:
        """After the checkpoint: the previous handler (submitit requeues and exits), else requeue by hand and stop."""
        signum, frame = self._signalled or (int(self.requeue_signal), None)
        previous, self._signalled, self.handed_back = self._previous, None, True
        log.warning("%s: last.ckpt written at step %d; handing the job back for requeue", signal.Signals(signum).name, trainer.global_step)
        self._restore_handler()
        trainer.should_stop = True
        if callable(previous):
            previous(signum, frame)
        elif trainer.is_global_zero and os.environ.get("SLURM_JOB_ID"):
            job = os.environ["SLURM_JOB_ID"]
            array = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else job
            code = subprocess.call(["scontrol", "requeue", job])
            log.warning("scontrol requeue %s: %s", job, "requeued" if code == 0 else f"failed with exit code {code}")

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        bad = [name for name, p in trainer.lightning_module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(
                f"weights {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} are no longer finite at train step "
                f"{trainer.global_step}, so they were not saved; lower model.lr"
            )
        super()._save_checkpoint(trainer, filepath)


def _main_thread() -> bool:
    """Signal handlers can only be set from the main thread (joblib's thread workers are not)."""
    return threading.current_thread() is threading.main_thread()
