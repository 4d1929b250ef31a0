"""Shared test pieces: repo paths, the `python gipc/run.py` subprocess runner, tiny training data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

from gipc.losses import LossWeights

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
RUN = REPO / "gipc" / "run.py"


def run_gipc(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python gipc/run.py ARGS`` in ``cwd`` (where outputs/ lands), W&B offline."""
    result = subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


PATCH = 16


class Patches(Dataset):
    """Random (a, b, gt) patch triplets; gt is the pixel-wise max, a stand-in all-in-focus target."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.rand(n, 1, PATCH, PATCH, generator=g)
        self.b = torch.rand(n, 1, PATCH, PATCH, generator=g)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"a": self.a[i], "b": self.b[i], "gt": torch.maximum(self.a[i], self.b[i])}


def paper_weights(**over: object) -> LossWeights:
    """The paper's loss weights (conf/loss/gipc.yaml), with overrides."""
    base = dict(lam=9.3, beta1=1.3, beta2=4.5, l1=0.1, l2=1.0, l3=0.1, l4=1.0, l5=0.1, l6=1.0,
                real_label=(0.7, 1.2), fake_label=(0.0, 0.3))
    return LossWeights(**{**base, **over})
