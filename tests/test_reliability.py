"""In-process reliability checks: config validation, run-dir protection, atomic checkpoints, the
checkpoint callback's guarantees, and the pieces that make a resumed run exact (sampler, loader, RNGs)."""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import re
import signal
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.fabric.plugins.io import torch_io
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, TensorDataset

from gipc.checkpointing import AtomicCheckpointIO, RunCheckpoint, TrainingProgress
from gipc.data.samplers import EpochShuffle, ResumableLoader
from gipc.data.datasets import PatchDataset
from gipc.data.scene import Scene
from gipc.errors import ConfigError, NonFiniteLossError
from gipc.experiment import run_experiment
from gipc.module import GIPCGAN
from gipc.runstate import FAILED as FAILED_MARKER
from helpers import CONF, Patches, paper_model

TINY = [
    "logger=none",
    "test=false",
    "data.patch_size=32",
    "data.batch_size=2",
    "data.source.max_side=64",
    "data.source.val_count=1",
    "data.source.patches_per_epoch=12",
    "data.source.photos=[astronaut,camera,coffee,chelsea]",
]


def run(tmp_path: Path, *overrides: str) -> None:
    # Another data config has another source: the embedded source's options of TINY do not apply to it.
    tiny = [o for o in TINY if not o.startswith("data.source.")] if any(o.startswith("data=") for o in overrides) else TINY
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*tiny, f"paths.output_dir={tmp_path}", *overrides])
    run_experiment(cfg)


def refused(tmp_path: Path, capsys, *overrides: str) -> str:
    """Run, expect the one-line refusal (exit code 2), return its message."""
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, *overrides)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    return errors[0].removeprefix("error: ")


def test_a_runs_library_warnings_read_as_one_line_and_the_callers_format_comes_back(tmp_path: Path, monkeypatch) -> None:
    """MS-SSIM's warning on the embedded set's small test images printed as Python's two lines, a path
    into torchmetrics first; during a run every warning is one ``warning:`` line, like its errors."""
    import gipc.experiment

    formatwarning = warnings.formatwarning
    seen = []
    monkeypatch.setattr(gipc.experiment, "_run", lambda cfg, out: seen.append(warnings.formatwarning("careful", UserWarning, "/site/x.py", 4)))
    run(tmp_path)
    assert seen == ["warning: careful\n"] and warnings.formatwarning is formatwarning


# ------------------------------------------------------------------------- config validation
CASES = {
    "negative lambda": (["loss.lam=-1"], r"^bad loss config: loss\.lam must be >= 0, got -1"),
    "negative adversarial weight": (["loss.l4=-0.5"], r"^bad loss config: loss\.l4 must be >= 0, got -0\.5"),
    "patch below 16": (["data.patch_size=8"], r"^bad data config: data\.patch_size must be a positive multiple of 16 .*got 8"),
    "patch not a multiple of 16": (["data.patch_size=40"], r"^bad data config: data\.patch_size must be a positive multiple of 16 .*got 40"),
    "batch size 0": (["data.batch_size=0"], r"^bad data config: data\.batch_size must be an integer >= 1, got 0"),
    "negative learning rate": (["model.lr=-1"], r"^bad model config: model\.lr must be > 0, got -1"),
    "zero learning rate": (["model.lr=0"], r"^bad model config: model\.lr must be > 0, got 0"),
    "one Adam beta": (["model.betas=[0.5]"], r"^bad model config: model\.betas must be a list of 2 numbers, got \[0\.5\]$"),
    "Adam beta of 1": (["model.betas=[0.5,1.0]"], r"^bad model config: model\.betas must be two values in \[0, 1\), got \[0\.5, 1\.0\]$"),
    # a value of the wrong kind, refused by what it would build (gipc.typecheck) before any work starts
    "lambda not a number": (["loss.lam=abc"], r"^bad loss config: loss\.lam must be a number, got 'abc'$"),
    "soft labels not a range": (["loss.real_label=[0.7]"], r"^bad loss config: loss\.real_label must be a list of 2 numbers, got \[0\.7\]$"),
    "ratio not a number": (["loss.ratio=abc"], r"^bad loss config: loss\.ratio must be a number or null, got 'abc'$"),
    "learning rate not a number": (["model.lr=abc"], r"^bad model config: model\.lr must be a number, got 'abc'$"),
    "width not an integer": (["model.generator.width=abc"], r"^bad model\.generator config: model\.generator\.width must be an integer, got 'abc'$"),
    "widths not a list": (["model.discriminator.channels=abc"], r"^bad model config: model\.discriminator\.channels must be a list of integers, got 'abc'$"),
    "blur not a number": (["data.source.sigma=abc"], r"^bad data config: data\.source\.sigma must be a number, got 'abc'$"),
    "flips not true or false": (["data.source.flips=abc"], r"^bad data config: data\.source\.flips must be true or false, got 'abc'$"),
    "synthesis share not a number": (["data=photos", "data.source.synthesis.disk=abc"], r"^bad data config: data\.source\.synthesis\.disk must be a number, got 'abc'$"),
    "baselines not a list": (["callbacks.test_report.baselines=gff"], r"^bad callbacks\.test_report config: callbacks\.test_report\.baselines must be a list of strings, got 'gff'$"),
    "checkpoint interval not a number": (["callbacks.model_checkpoint.every_n_train_steps=abc"], r"^bad callbacks\.model_checkpoint config: callbacks\.model_checkpoint\.every_n_train_steps must be an integer or null, got 'abc'$"),
    "map eps not a number": (["fusion.map.eps=abc"], r"^bad callbacks\.test_report config: map eps must be a number, got 'abc'$"),
    "train not true or false": (["train=abc"], r"^train must be true or false, got 'abc'$"),
    "overwrite not true or false": (["overwrite=yes"], r"^overwrite must be true or false, got 'yes'$"),
    # ranges Lightning or torch would refuse only once training starts (or never: an in-place LeakyReLU's negative slope)
    "generator width 0": (["model.generator.width=0"], r"^bad model\.generator config: model\.generator\.width must be >= 1, got 0$"),
    "negative LeakyReLU slope": (["model.discriminator.slope=-0.2"], r"^bad model config: model\.discriminator\.slope must be >= 0 .*got -0\.2$"),
    "discriminator without layers": (["model.discriminator.channels=[]"], r"^bad model config: model\.discriminator\.channels must be one or more widths >= 1, got \[\]$"),
    "negative blur": (["data.source.sigma=-1"], r"^bad data config: data\.source\.sigma must be >= 0 \(px\), got -1$"),
    "everything held out": (["data.source.test_fraction=1"], r"^bad data config: data\.source\.test_fraction must be a share in \[0, 1\), got 1$"),
    "photos cut below 16 px": (["data.source.max_side=8"], r"^bad data config: data\.source\.max_side must be an integer >= 16, got 8$"),
    "negative ratio": (["loss.ratio=-1"], r"^bad loss config: loss\.ratio must be >= 0, got -1"),
    "seed not an integer": (["seed=abc"], r"^seed must be an integer, got 'abc'$"),
    "no seed": (["seed=null"], r"^seed must be an integer, got None$"),
    "negative seed": (["seed=-5"], r"^seed must be in \[0, 4294967295\] \(numpy's seeds\), got -5$"),
    "d steps below 1": (["model.d_steps_per_g_step=0"], r"^bad model config: model\.d_steps_per_g_step must be >= 1, got 0"),
    "bad divergence action": (["model.on_nonfinite=ignore"], r"^bad model config: model\.on_nonfinite must be stop, skip or reduce_lr"),
    "misspelt fusion rule": (["fusion.rule=mapp"], r"^bad fusion config: fusion\.rule must be one of direct, map, got .mapp."),
    "unknown baseline": (["callbacks.test_report.baselines=[gff,nope]"], r"^bad callbacks\.test_report config: callbacks\.test_report\.baselines: no baseline nope; choose from average, "),
    "unknown extra metric": (["callbacks.test_report.extra_metrics=[QS]"], r"^bad callbacks\.test_report config: callbacks\.test_report\.extra_metrics: no metric QS; choose from QMI, "),
    "missing data dir": (["data=folder", "data.source.root=/nonexistent/mfi-drc"], r"^bad data config: data\.source\.root /nonexistent/mfi-drc: no train/ folder"),
    "misspelt key added with +": (["+data.batchsize=2"], r"^bad data config: .*unexpected keyword argument 'batchsize'"),
    # keys added with + that nothing read: the run went on without them (a scalar callback: a traceback)
    "map setting added to fusion": (["+fusion.clen=3"], r"^bad fusion config: fusion has no setting clen; it has rule, map \(the map's settings\) and head_map$"),
    "a callback that is not a config": (["+callbacks.foo=1"], r"^callbacks\.foo must be a config with a _target_ \(or null\), got 1$"),
    # the data's own checks (also held-out photos too few to split) ran in fit, after config.yaml and the W&B run were written
    "too few patches for a batch": (["data.source.patches_per_epoch=1"], r"^only 1 training patches but an epoch needs at least 6 \(batch_size 2, 3 batches per step\)"),
    "nothing to resume": (["resume=true"], r"^nothing to resume: .*checkpoints/last\.ckpt does not exist"),
    "missing ckpt_path": (["ckpt_path=/nonexistent/x.ckpt"], r"^ckpt_path /nonexistent/x\.ckpt does not exist"),
    "last.ckpt as a symlink": (["callbacks.model_checkpoint.save_last=link"], r"save_last=link would make last\.ckpt a symlink"),
    # Lightning's Trainer takes these and fails deep inside fit
    "epochs not a number": (["trainer.max_epochs=ten"], r"^bad trainer config: trainer\.max_epochs must be an integer >= -1, got 'ten'$"),
    "validation every 0 epochs": (["trainer.check_val_every_n_epoch=0"], r"^bad trainer config: trainer\.check_val_every_n_epoch must be an integer >= 1, got 0$"),
    "64-bit training": (["trainer.precision=64"], r"^bad trainer config: trainer\.precision must be one of auto, 32, 32-true, 16, 16-mixed, bf16, bf16-mixed \(fp32 or mixed\), got 64$"),
    "bf16 without fp32 master weights": (["trainer.precision=bf16-true"], r"^bad trainer config: trainer\.precision must be one of .*, got 'bf16-true'$"),
    "batch share above 1": (["trainer.limit_train_batches=1.5"], r"^bad trainer config: trainer\.limit_train_batches must be .* a share in \[0\.0, 1\.0\], got 1\.5$"),
    # a width no machine's memory holds: torch's allocator refuses it while the generator is built
    "generator too large for memory": (["model.generator.width=100000"], r"^bad model\.generator config: out of memory \(DefaultCPUAllocator: can't allocate memory: you tried to allocate \d+ bytes"),
    # strategy=ddp on one device, not devices=2: a regression must not re-run pytest as DDP's second rank
    "DDP without trainer=ddp": (["trainer.accelerator=cpu", "trainer.strategy=ddp", "trainer.devices=1"], r"^training under DDP needs trainer=ddp: .*\(trainer=ddp trainer\.devices=1\)$"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_config_is_one_line_exit_2_failed_marker_and_nothing_else(tmp_path, capsys, case):
    overrides, message = CASES[case]
    error = refused(tmp_path, capsys, *overrides)
    assert re.search(message, error), error
    assert (tmp_path / FAILED_MARKER).read_text().strip() == error
    assert sorted(p.name for p in tmp_path.iterdir()) == [FAILED_MARKER]  # no checkpoint, no config, no logs


# ------------------------------------------------------------------------------- run dirs
def test_training_into_a_run_dir_with_checkpoints_is_refused_and_leaves_it_untouched(tmp_path, capsys):
    old = tmp_path / "checkpoints" / "last.ckpt"
    old.parent.mkdir()
    old.write_bytes(b"an earlier run")
    error = refused(tmp_path, capsys)
    assert "already holds checkpoints (last.ckpt)" in error and "resume=true" in error and "overwrite=true" in error
    assert old.read_bytes() == b"an earlier run" and not (tmp_path / FAILED_MARKER).exists()


def test_overwrite_deletes_old_checkpoints_only_once_the_config_is_sound(tmp_path, capsys):
    old = tmp_path / "checkpoints" / "epoch009-step0000300.ckpt"
    old.parent.mkdir()
    old.write_bytes(b"an earlier run")
    refused(tmp_path, capsys, "overwrite=true", "data.batch_size=0")
    assert old.exists()
    run(tmp_path, "overwrite=true", "trainer.max_steps=0")
    assert not old.exists() and (tmp_path / "config.yaml").exists() and not (tmp_path / FAILED_MARKER).exists()


def test_resuming_under_other_training_settings_is_refused_and_leaves_the_run_untouched(tmp_path, capsys):
    run(tmp_path)
    kept = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    error = refused(tmp_path, capsys, "resume=true", "loss.lam=5", "data.source.sigma=3")
    assert error.startswith(f"resume: {tmp_path} was trained with other settings (") and "or train a new run without resume" in error
    assert "loss.lam 9.3 -> 5" in error and "data.source.sigma 2.0 -> 3" in error and "model.loss" not in error
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == kept  # no FAILED marker either
    steps = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    run(tmp_path, "resume=true", "trainer.max_epochs=10", "data.num_workers=0")  # the trainer may change
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] > steps


# ---------------------------------------------------------------------------- atomic saves
def _half_written(checkpoint: dict, filepath) -> None:
    """A save killed halfway: the first half of the bytes reach the file, then the process dies."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with open(filepath, "wb") as f:
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    raise KeyboardInterrupt("killed during torch.save")


@pytest.mark.parametrize("io_class, survives", [(AtomicCheckpointIO, True), (TorchCheckpointIO, False)])
def test_a_save_killed_halfway_leaves_the_previous_last_ckpt_whole(tmp_path, monkeypatch, io_class, survives):
    last = tmp_path / "checkpoints" / "last.ckpt"
    good = {"state_dict": {"w": torch.arange(1000.0)}, "global_step": 3}
    io_class().save_checkpoint(good, last)
    monkeypatch.setattr(torch_io, "_atomic_save", _half_written)
    with pytest.raises(KeyboardInterrupt):
        io_class().save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 6}, last)
    if survives:
        loaded = torch.load(last, weights_only=True)
        assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], good["state_dict"]["w"])
        assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temp file left
    else:  # the same fault without the rename corrupts the file: the simulation is a real one
        with pytest.raises(Exception):
            torch.load(last, weights_only=True)


# ---------------------------------------------------------------------- checkpoint callback
def tiny_model(**kw) -> GIPCGAN:
    return paper_model(generator={"width": 4}, d_steps_per_g_step=1, **kw)


def fit(tmp_path: Path, batches: int, checkpoint: RunCheckpoint, *callbacks: L.Callback, model: GIPCGAN | None = None) -> GIPCGAN:
    model = model or tiny_model()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, accelerator="cpu", devices=1, plugins=[AtomicCheckpointIO()],
                        callbacks=[*callbacks, checkpoint])
    trainer.fit(model, DataLoader(Patches(batches * 4), batch_size=4))
    return model


@pytest.mark.slow
def test_last_ckpt_is_a_real_file_holding_the_final_step_between_periodic_saves(tmp_path):
    # t = 1: two optimizer steps per batch; 3 batches = steps 2, 4, 6; a periodic save at step 4 only.
    checkpoint = RunCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=4)
    fit(tmp_path, 3, checkpoint)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file() and not last.is_symlink()
    assert torch.load(last, weights_only=True)["global_step"] == 6
    assert torch.load(tmp_path / "ckpt" / "step=4.ckpt", weights_only=True)["global_step"] == 4


class SignalAt(L.Callback):
    """Sends ``signum`` to this process while batch ``at`` trains, as Slurm's warning would arrive mid-batch."""

    def __init__(self, signum: int, at: int) -> None:
        self.signum, self.at = signum, at

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.at:
            os.kill(os.getpid(), self.signum)


@pytest.mark.slow
def test_a_slurm_warning_signal_checkpoints_the_batch_and_hands_the_job_to_submitit(tmp_path):
    """submitit's SIGUSR2 handler requeues the job and exits; the checkpoint must be on disk before it runs."""
    calls = []
    submitit = lambda signum, frame: calls.append((signum, (tmp_path / "ckpt" / "last.ckpt").is_file()))  # noqa: E731
    previous = signal.signal(signal.SIGUSR2, submitit)
    try:
        checkpoint = RunCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=100)
        fit(tmp_path, 5, checkpoint, SignalAt(signal.SIGUSR2, at=1))  # t = 1: two optimizer steps per batch
        assert calls == [(signal.SIGUSR2, True)]  # handed over once, with last.ckpt already written
        assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 4  # batch 1 finished, no more
        assert checkpoint.handed_back and signal.getsignal(signal.SIGUSR2) is submitit
    finally:
        signal.signal(signal.SIGUSR2, previous)


@pytest.mark.slow
def test_without_submitit_the_warning_signal_requeues_through_scontrol(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'scontrol.args'}\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        checkpoint = RunCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=100)
        fit(tmp_path, 5, checkpoint, SignalAt(signal.SIGUSR2, at=2))
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_requeue_signal_must_name_a_signal_or_be_off() -> None:
    with pytest.raises(ConfigError, match="requeue_signal must name a signal such as SIGUSR2, got 'USR9'"):
        RunCheckpoint(requeue_signal="USR9")
    off, before = RunCheckpoint(requeue_signal=None), signal.getsignal(signal.SIGUSR2)  # conf: null = off
    off.on_train_start(None, None)
    assert off.requeue_signal is None and signal.getsignal(signal.SIGUSR2) is before


@pytest.mark.parametrize("rank_zero, requeues", [(True, [["scontrol", "requeue", "4242"]]), (False, [])])
def test_a_hand_back_without_submitit_stops_every_rank_and_requeues_the_job_once(monkeypatch, rank_zero, requeues):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda args: calls.append(args) or 0)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    trainer = SimpleNamespace(global_step=6, is_global_zero=rank_zero, should_stop=False)
    checkpoint = RunCheckpoint()
    checkpoint._hand_back(trainer)
    assert trainer.should_stop and checkpoint.handed_back
    assert calls == requeues  # rank zero alone asks Slurm: one requeue per job, not one per rank


@pytest.mark.slow
def test_non_finite_weights_are_never_saved(tmp_path):
    class PoisonAfterFirstSave(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 4:  # after the step-2 checkpoint, before the step-4 one
                with torch.no_grad():
                    module.discriminator.head.weight.fill_(float("inf"))

    checkpoint = RunCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"discriminator\.head\.weight are no longer finite at train step 4, so they were not saved"):
        fit(tmp_path, 3, checkpoint, PoisonAfterFirstSave())
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.ckpt", "step=2.ckpt"]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("action, scale", [("skip", 1.0), ("reduce_lr", 0.5)])
def test_a_nan_batch_is_skipped_or_halves_the_learning_rates(tmp_path, monkeypatch, action, scale, capsys):
    import gipc.module

    calls, loss = [0], gipc.module.discriminator_loss

    def nan_on_second_call(*args, **kwargs):
        terms = loss(*args, **kwargs)
        calls[0] += 1
        return {**terms, "fake_gra": terms["fake_gra"] * float("nan")} if calls[0] == 2 else terms

    class Lr(L.Callback):
        lrs: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.lrs.append(module.optimizers()[0].param_groups[0]["lr"])

    monkeypatch.setattr(gipc.module, "discriminator_loss", nan_on_second_call)
    model = fit(tmp_path, 3, RunCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2), Lr(), model=tiny_model(on_nonfinite=action))
    assert (model.progress.d_steps, model.progress.g_steps, model.progress.lr_scale) == (2, 2, scale)  # batch 1 (t = 1) dropped
    assert "D loss term(s) fake_gra became non-finite at G step 1 (D step 1)" in capsys.readouterr().out
    # Linear decay over 3 batches, the skipped one included; reduce_lr scales from the next step on.
    assert Lr.lrs == pytest.approx([1e-4 * 2 / 3, 1e-4 / 3 * scale, 0.0])


def test_running_out_of_memory_in_training_is_one_line_exit_1_and_a_failed_marker(tmp_path, monkeypatch, capsys):
    """A batch too large for the memory is no bug: one line naming the knobs, the FAILED marker holding
    it, no traceback (a GPU's out-of-memory error reads the same way)."""

    def too_large(self, batch, batch_idx):
        torch.empty(1 << 60, dtype=torch.uint8)  # no machine's memory: torch's allocator refuses it

    monkeypatch.setattr(GIPCGAN, "training_step", too_large)
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path)
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    assert re.fullmatch(
        r"error: out of memory \(DefaultCPUAllocator: can't allocate memory: you tried to allocate \d+ bytes\. Error code 12 \(Cannot allocate memory\)\); "
        r"a smaller data\.batch_size or data\.patch_size needs less; no checkpoint was written yet",
        errors[0],
    ), errors
    assert (tmp_path / FAILED_MARKER).read_text().strip() == errors[0].removeprefix("error: ")


def test_the_objective_of_a_trial_stopped_before_any_validation_is_validated_once(tmp_path, capsys):
    """An Optuna trial that trains fewer steps than an epoch had no val/QABF to report: every trial
    failed and the sweep ended in Optuna's traceback ("No trials are completed yet"). The run now
    validates its final model once; a metric the run never logs is one line."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, f"paths.output_dir={tmp_path}", "trainer.max_steps=3", "+optimized_metric=val/QABF"])
    value = run_experiment(cfg)
    assert isinstance(value, float) and 0.0 < value <= 1.0  # a Q^AB/F
    capsys.readouterr()
    assert refused(tmp_path / "typo", capsys, "trainer.max_steps=3", "+optimized_metric=val/QAB").startswith(
        "optimized_metric=val/QAB: the run logs no such metric; it logs val/CC, "
    )


def test_a_ckpt_path_no_run_can_continue_from_is_one_line(tmp_path, capsys):
    """An exported generator given as ckpt_path ended in Lightning's KeyError traceback."""
    exported, other = tmp_path / "g.pt", tmp_path / "other.ckpt"
    torch.save({"format": "gipc-generator/1", "generator": {}, "state_dict": {}}, exported)
    torch.save({"state_dict": {}}, other)
    assert refused(tmp_path / "a", capsys, f"ckpt_path={exported}") == (
        f"{exported}: a generator file (gipc-export), not a training checkpoint; fine-tune from its weights with model.init_generator={exported}"
    )
    assert refused(tmp_path / "b", capsys, f"ckpt_path={other}") == (
        f"{other}: not a Lightning checkpoint of a gipc run (no pytorch-lightning_version); give <run dir>/checkpoints/last.ckpt"
    )


def test_a_full_disk_is_one_line_naming_the_file_and_how_to_go_on(tmp_path, monkeypatch, capsys):
    """A checkpoint the disk has no room for ended in a traceback: it is a resource, like memory. The
    first save goes through here, the next finds the disk full: the line says to continue from it."""
    save, saves = AtomicCheckpointIO.save_checkpoint, []

    def fills_up(self, checkpoint, path, storage_options=None):
        saves.append(path)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", fills_up)
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, "trainer.max_epochs=2", "callbacks.model_checkpoint.every_n_train_steps=3", "callbacks.model_checkpoint.save_top_k=0")
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert errors == [
        f"error: no space left on the device (writing {saves[1]}); the last good checkpoint, kept: {last}; "
        f"free some space, then continue with the same command plus resume={tmp_path}"
    ]
    assert saves[0] == str(last) and last.is_file()
    assert (tmp_path / FAILED_MARKER).read_text().strip() == errors[0].removeprefix("error: ")


# ------------------------------------------------------------------------ exact-resume pieces
def test_epoch_shuffle_depends_only_on_seed_and_epoch():
    def order(seed: int, epoch: int, before: int = 0) -> list[int]:
        sampler = EpochShuffle(50, seed)
        for e in range(before):  # epochs this process has already run must not matter
            sampler.set_epoch(e)
            list(sampler)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert sorted(order(1, 0)) == list(range(50))
    assert order(1, 3) == order(1, 3, before=3)
    assert order(1, 0) != order(1, 1) and order(1, 1) != order(2, 0) and order(1, 0) != order(2, 0)


def test_resumable_loader_continues_the_epoch_where_its_state_says():
    dataset = TensorDataset(torch.arange(40))
    make = lambda: ResumableLoader(dataset, batch_size=4, sampler=EpochShuffle(40, 7), drop_last=True)  # noqa: E731
    full = make()
    full.sampler.set_epoch(2)
    batches = [b[0].tolist() for b in full]
    interrupted = make()
    interrupted.sampler.set_epoch(2)
    it = iter(interrupted)
    seen = [next(it)[0].tolist() for _ in range(3)]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "batches": 3} and seen == batches[:3]

    resumed = make()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)  # what Lightning does after loading the state, before the first batch
    assert [b[0].tolist() for b in resumed] == batches[3:]
    resumed.sampler.set_epoch(3)  # the skip applies to the saved epoch only
    assert len(list(resumed)) == len(batches)


def test_flipped_patches_do_not_depend_on_the_global_rng():
    gt = torch.rand(1, 48, 48, generator=torch.Generator().manual_seed(3))
    dataset = PatchDataset([Scene("s", gt, 1 - gt, gt)], 16, stride=8, flips=True, seed=5)
    torch.manual_seed(0)
    first = [dataset[i]["a"] for i in range(len(dataset))]
    torch.manual_seed(1)
    assert all(torch.equal(dataset[i]["a"], x) for i, x in enumerate(first))
    again = PatchDataset([Scene("s", gt, 1 - gt, gt)], 16, stride=8, flips=True, seed=5)
    assert all(torch.equal(again[i]["a"], x) for i, x in enumerate(first))
    assert len(set(dataset.flip_codes.tolist())) == 4


def test_a_resumed_fit_takes_over_the_counters_the_lr_scale_and_every_random_stream():
    saved = TrainingProgress(seed=3)
    saved.d_steps, saved.g_steps, saved.lr_scale = 8, 4, 0.25
    torch.rand(2, generator=saved.label_rng)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    buffer = io.BytesIO()
    torch.save(saved.state_dict(), buffer)  # as the checkpoint holds it

    def draws(progress: TrainingProgress) -> tuple:
        return torch.rand(3, generator=progress.label_rng).tolist(), random.random(), float(np.random.rand()), torch.rand(3).tolist()

    expected = draws(saved)  # what the uninterrupted run draws next
    random.seed(0), np.random.seed(0), torch.manual_seed(0)  # a new process has drawn otherwise
    resumed = TrainingProgress(seed=99)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True), resuming=True)
    assert (resumed.d_steps, resumed.g_steps, resumed.lr_scale) == (8, 4, 0.25)
    assert draws(resumed) == expected


def test_the_module_pickles_for_ddp_spawn_with_its_label_stream_and_counters():
    model = tiny_model(seed=5)
    torch.rand(3, generator=model.progress.label_rng)
    model.progress.g_steps, model.progress.lr_scale = 7, 0.25
    copy = pickle.loads(pickle.dumps(model))  # what torch.multiprocessing's spawn does, minus fd sharing
    assert (copy.progress.g_steps, copy.progress.lr_scale) == (7, 0.25)
    assert torch.equal(torch.rand(4, generator=copy.progress.label_rng), torch.rand(4, generator=model.progress.label_rng))


def test_soft_label_generator_travels_in_the_checkpoint_and_loading_to_fuse_keeps_global_rngs():
    model = tiny_model(seed=3)
    torch.rand(5, generator=model.progress.label_rng)
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    expected = torch.rand(5, generator=model.progress.label_rng)

    restored = tiny_model(seed=99)

    def draws() -> tuple:
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    before = draws()
    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    restored.on_load_checkpoint(checkpoint)  # no trainer: e.g. gipc-fuse loading weights
    assert torch.equal(torch.rand(5, generator=restored.progress.label_rng), expected)
    assert draws() == before


WANDB = ("logger=wandb", "logger.wandb.name=x", "logger.wandb.group=g", "logger.wandb.tags=[t]")
"""The W&B logger outside a Hydra run, which its ``${hydra:...}`` name, group and tags need."""


def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_the_run_summary_comes_after_wandb_has_finished_its_run(tmp_path, monkeypatch):
    """W&B prints its run summary and sync hint as its run ends: ended first, it no longer buries the
    run's own last lines (its files and metrics table) under 30 lines of its own."""
    import wandb

    import gipc.experiment

    _offline_wandb(monkeypatch)
    seen = []
    monkeypatch.setattr(gipc.experiment, "_print_summary", lambda trainer, output_dir: seen.append(wandb.run))
    run(tmp_path, *WANDB, "trainer.max_epochs=1")
    assert seen == [None]


def test_a_run_is_done_when_it_ends_as_asked_without_a_test_stage_and_not_while_it_trains_again(tmp_path, monkeypatch):
    """``test=false`` writes no test table: the run's DONE says it ended as asked, so a resumed sweep
    skips it and --status says done (it read "partial" before); trained again and stopped, it is not done."""
    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from gipc.runstate import resume_action, unfinished_runs

    (tmp_path / "config.yaml").write_text("seed: 42\n")  # as a sweep job's dir holds it while it trains
    run(tmp_path, "trainer.max_epochs=1")  # TINY: test=false
    assert (tmp_path / "DONE").is_file() and not (tmp_path / "metrics.csv").exists()
    assert resume_action(tmp_path) == "skip" and unfinished_runs(tmp_path) == []

    def stopped(self, *args, **kwargs):
        raise SIGTERMException

    monkeypatch.setattr(L.Trainer, "fit", stopped)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    with pytest.raises(SystemExit) as stop:
        run(tmp_path, "trainer.max_epochs=2", "resume=true")
    assert stop.value.code == 143 and not (tmp_path / "DONE").exists()
    assert resume_action(tmp_path) == "continue" and [run_dir for run_dir, _ in unfinished_runs(tmp_path)] == [tmp_path]


@pytest.mark.parametrize("stop", ["error", "ctrl-c"])
def test_a_runs_error_line_comes_after_wandb_has_finished_its_run(stop, tmp_path, monkeypatch):
    """A run that fails or is interrupted says so, and how to go on, in its last line: W&B's footer
    (30 lines) came after it and buried it."""
    import lightning as L
    import wandb

    import gipc.experiment
    from gipc.errors import DataError

    _offline_wandb(monkeypatch)

    def stopped(self, *args, **kwargs):
        raise DataError("a photo went missing") if stop == "error" else KeyboardInterrupt

    monkeypatch.setattr(L.Trainer, "fit", stopped)
    lines = []
    monkeypatch.setattr(gipc.experiment, "print", lambda *args, **kwargs: lines.append((args[0], wandb.run)), raising=False)
    with pytest.raises(SystemExit):
        run(tmp_path, *WANDB)
    assert [(line.split(";")[0], open_run) for line, open_run in lines] == [
        ("error: a photo went missing" if stop == "error" else "error: interrupted", None)
    ]


@pytest.mark.parametrize(
    "override", ["train=false", "trainer.max_epochs=0", "trainer.max_steps=0", "trainer.limit_train_batches=0", "trainer.limit_train_batches=0.0"]
)
def test_testing_without_training_needs_a_trained_generator(tmp_path, capsys, override):
    """``train=false`` (or a trainer told to train no epoch, step or batch) with no checkpoint scored a
    randomly initialised generator as the run's ``gipc`` row (Q^AB/F 0.10 on the embedded test pairs), without a word."""
    assert refused(tmp_path, capsys, override, "test=true") == (
        f"{override} trains nothing, and no trained generator is named (the test would score random weights): give "
        "ckpt_path=<run dir>/checkpoints/last.ckpt, or model.init_generator=<weights file, or shipped>"
    )
    assert not (tmp_path / "checkpoints").exists()


def test_a_required_value_left_out_is_one_line_in_process_too(tmp_path, capsys):
    """``data=folder`` without ``data.source.root`` (``???``) ended in OmegaConf's traceback."""
    assert refused(tmp_path, capsys, "data=folder") == "bad data config: data.source.root: required, and not given"


def test_a_gpu_trainer_without_a_gpu_says_so_and_names_the_cpu_trainer(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert refused(tmp_path, capsys, "trainer=gpu") == (
        "trainer.accelerator=gpu: no CUDA GPU is visible here; train on the CPU with trainer=cpu (or the default trainer)"
    )
