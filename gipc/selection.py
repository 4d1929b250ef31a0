"""Checkpoint selection: score a run's checkpoints on held-out data and pick one, never on the test
set (the ``gipc-select`` command is :mod:`gipc.cli.select`).

Each checkpoint of ``<run>/checkpoints`` (the step-named snapshots, and ``last.ckpt`` where training
ended past the last of them: :func:`candidates`) fuses, under the fusion rule its weights will ship with
(``conf/fusion/default.yaml``'s unless told otherwise), the run's validation pairs (the held-out
synthetic pairs its data config builds, with ground truth: PSNR, SSIM) and every pair folder given
with ``--pairs`` (real pairs without ground truth: Q^AB/F). The pick is the best mean rank over the two
columns, val PSNR and pairs Q^AB/F, so neither a blurry-but-safe nor a sharp-but-wrong model wins
alone. ``selection.md`` in the run dir records the table and the pick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from gipc.data.scene import Scene
from gipc.evaluate import evaluate_pairs
from gipc.inference import choose_path, prepare
from gipc.models.batchnorm import recalibrate_batchnorm
from gipc.pretrained import load_generator
from gipc.report import summarize
from gipc.runstate import checkpoint_step, saved_step

Inputs = tuple[torch.Tensor, torch.Tensor]

RANKED = ("val_PSNR", "pairs_QABF")
VAL_METRICS = ["PSNR", "SSIM"]
"""What a checkpoint is scored on over the held-out synthetic pairs (against their ground truth) ..."""
PAIR_METRICS = ["QABF"]
"""... and over real pairs: the table's columns, and no other metric's time."""


def fuser_of(checkpoint: Path, calibration: Sequence[Inputs] = (), rule: str | None = None) -> Callable[[Scene], torch.Tensor]:
    """A method for :func:`gipc.evaluate.evaluate_pairs`: the checkpoint's generator on the default inference
    path under ``rule`` (None: the default rule), its BatchNorm statistics first re-estimated on
    ``calibration`` when given (as ``gipc-export --recalibrate-bn`` would write it)."""
    generator = load_generator(checkpoint)
    if calibration:
        recalibrate_batchnorm(generator, calibration)
    fusion = prepare(generator, choose_path("cpu")).fusion(rule)
    return lambda scene: fusion.fuse([scene.a, scene.b])


def mean_ranks(rows: Sequence[Mapping[str, float]], columns: Sequence[str]) -> list[float]:
    """Each row's mean rank over ``columns`` (1 = best = highest value; ties share the better rank)."""
    ranks = [0.0] * len(rows)
    for column in columns:
        values = [row[column] for row in rows]
        for i, value in enumerate(values):
            ranks[i] += 1 + sum(v > value for v in values)
    return [r / len(columns) for r in ranks]


def candidates(run_dir: Path, min_step: int = 0) -> list[Path]:
    """The run's checkpoints at or after ``min_step``, by step: the step-named snapshots, and ``last.ckpt``
    where it holds weights none of them has (training ends between two snapshots: its final weights)."""
    folder = run_dir / "checkpoints"
    steps = {p: step for p in folder.glob("[!.]*.ckpt") if (step := checkpoint_step(p)) >= 0}
    last = saved_step(folder / "last.ckpt")  # read once: its step is in the file, not the name
    if last is not None and last not in steps.values():
        steps[folder / "last.ckpt"] = last
    return sorted((p for p, step in steps.items() if step >= min_step), key=steps.__getitem__)


def step_of(checkpoint: Path) -> int:
    """A checkpoint's global step: in its name, or (``last.ckpt``) in its contents."""
    step = checkpoint_step(checkpoint)
    return step if step >= 0 else saved_step(checkpoint) or 0


def score_checkpoints(
    checkpoints: Sequence[Path], val: Sequence[Scene], pairs: Sequence[Scene], calibration: Sequence[Inputs] = (),
    rule: str | None = None,
) -> list[dict[str, float | str]]:
    """One row per checkpoint under ``rule``: mean val PSNR/SSIM, mean Q^AB/F over ``pairs``, and the mean rank."""
    rows: list[dict[str, float | str]] = []
    for checkpoint in checkpoints:
        method = {checkpoint.name: fuser_of(checkpoint, calibration, rule)}
        val_means = summarize(evaluate_pairs(val, method, only=VAL_METRICS), "method", VAL_METRICS)[checkpoint.name]
        pair_means = summarize(evaluate_pairs(pairs, method, only=PAIR_METRICS), "method", PAIR_METRICS)[checkpoint.name]
        row: dict[str, float | str] = {
            "checkpoint": checkpoint.name,
            "step": float(step_of(checkpoint)),
            "val_PSNR": val_means["PSNR"][0],
            "val_SSIM": val_means["SSIM"][0],
            "pairs_QABF": pair_means["QABF"][0],
        }
        rows.append(row)
        print(f"{checkpoint.name}: val PSNR {row['val_PSNR']:.2f} dB, SSIM {row['val_SSIM']:.4f}, pairs Q^AB/F {row['pairs_QABF']:.4f}", flush=True)
    for row, rank in zip(rows, mean_ranks(rows, RANKED)):  # type: ignore[arg-type]
        row["mean_rank"] = rank
    return rows


def table(rows: Sequence[Mapping[str, float | str]], pick: str) -> str:
    lines = ["| checkpoint | step | val PSNR | val SSIM | pairs Q^AB/F | mean rank |", "|---|---|---|---|---|---|"]
    for row in rows:
        mark = " **(picked)**" if row["checkpoint"] == pick else ""
        lines.append(
            f"| {row['checkpoint']}{mark} | {int(row['step'])} | {row['val_PSNR']:.2f} | {row['val_SSIM']:.4f} "
            f"| {row['pairs_QABF']:.4f} | {row['mean_rank']:.1f} |"
        )
    return "\n".join(lines) + "\n"
