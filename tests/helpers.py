"""Shared test pieces: repo paths, the `python gipc/run.py` subprocess runner, tiny training data, generators."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

import torch
from omegaconf import OmegaConf
from torch import nn
from PIL import ImageCms
from torch.utils.data import Dataset

import gipc.cli.common
from gipc.configs import CONF_DIR, conf_group
from gipc.decision import MapSettings
from gipc.imaging import write_image
from gipc.losses import LossWeights
from gipc.module import GIPCGAN
from gipc.models import Discriminator, Generator
from gipc.pretrained import start_from

REPO = Path(__file__).resolve().parents[1]
CONF = CONF_DIR
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
    """The paper's loss weights as conf/loss/gipc.yaml holds them, with overrides."""
    return LossWeights(**{**conf_group("loss"), **over})


def paper_generator(**over: object) -> Generator:
    """Table 1's generator as conf/model/gipc.yaml sets it, with overrides (e.g. width=4 for speed)."""
    return Generator(**{**conf_group("model")["generator"], **over})


def fuser_by_hand(generator: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``generator`` as a [0, 1] luminance fuser written out from the paper's [-1, 1] convention, with
    no inference wrapper (BatchNorm folding, autocast, tiling) in between: the expectation that
    gipc's own fusion paths are checked against."""

    def fuse(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ((generator(ya * 2 - 1, yb * 2 - 1) + 1) / 2).clamp(0, 1)

    return fuse


def paper_discriminator(patch_size: int, **over: object) -> Discriminator:
    """Table 2's discriminator as conf/model/gipc.yaml sets it, for ``patch_size`` patches."""
    return Discriminator(patch_size, **{**conf_group("model")["discriminator"], **over})


def paper_model(generator: dict | None = None, init_generator: str | None = None, **over: object) -> GIPCGAN:
    """A GIPCGAN with conf/model/gipc.yaml's settings on PATCH-sized patches; ``generator`` entries
    override Table 1's (e.g. width=4 for speed), ``init_generator`` names its starting weights as
    ``model.init_generator`` does, ``over`` any other constructor argument."""
    model = conf_group("model")
    del model["init_generator"]
    del model["generator"], model["discriminator"]
    net = paper_generator(**(generator or {}))
    if init_generator:
        start_from(net, init_generator)
    return GIPCGAN(**{"generator": net, "discriminator": paper_discriminator(PATCH), "loss": paper_weights(), **model, **over})


def random_eval_generator(seed: int = 0, **kwargs: int) -> Generator:
    """Untrained generator in eval mode whose output varies strongly (default init gives a near-constant
    image), with BatchNorm statistics far from the identity so that folding them is a real test."""
    torch.manual_seed(seed)
    gen = paper_generator(**kwargs).eval()
    for module in gen.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, a=0.2)
            torch.nn.init.normal_(module.bias, std=0.1)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return gen


def save_lightning_ckpt(path: Path, gen: Generator, hparams: dict | None = None) -> Path:
    """A checkpoint laid out like the GIPCGAN LightningModule's (generator.* and discriminator.* weights)."""
    state = {f"generator.{k}": v for k, v in gen.state_dict().items()}
    state["discriminator.head.weight"] = torch.zeros(1, 3)
    torch.save({"state_dict": state, "hyper_parameters": {"generator": hparams or {}}}, path)
    return path


def run_dir_with_checkpoints(tmp_path: Path, batches_per_step: int = 1) -> Path:
    """A run dir as training leaves it: config.yaml of a synthesized data set and two checkpoints."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        write_image(photos / f"p{i}.png", torch.rand(3, 48, 56, generator=torch.Generator().manual_seed(i)))
    recipe = dict(sigma=[1.0, 2.0], soft=[0.0, 1.0], fraction=[0.3, 0.7], blob_size=[8, 16])
    source = dict(_target_="gipc.data.pair_sets.SynthesizedPairs", patches_per_epoch=8, embedded_photos=False,
                  photo_dirs=[str(photos)], test_fraction=0.6, val_count=1, synthesis=recipe, held_out_synthesis=recipe)
    data = dict(_target_="gipc.data.datamodule.FusionDataModule", batch_size=2, patch_size=16, seed=0, source=source,
                batches_per_step=batches_per_step)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"data": data}), run / "config.yaml")
    for step, seed in ((100, 0), (200, 1)):
        torch.manual_seed(seed)
        state = {f"generator.{k}": v for k, v in paper_generator(width=4).state_dict().items()}
        torch.save({"state_dict": state, "hyper_parameters": {"generator": {"width": 4}}},
                   run / "checkpoints" / f"epoch000-step{step:07d}.ckpt")
    return run


def net_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR of network outputs in [-1, 1] (peak-to-peak 2)."""
    return float(10 * torch.log10(4.0 / ((x - y) ** 2).mean()))


def icc_profiles() -> tuple[bytes, bytes]:
    """Two real ICC profiles of different bytes: sRGB's and CIE XYZ's, as littlecms makes them."""
    return tuple(ImageCms.ImageCmsProfile(ImageCms.createProfile(space)).tobytes() for space in ("sRGB", "XYZ"))


def texture(channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A detailed image in [0.1, 0.9]: blur removes most of its content, so focus is easy to see."""
    g = torch.Generator().manual_seed(seed)
    return 0.1 + 0.8 * torch.rand(1, channels, height, width, generator=g)


HARD_MAP = MapSettings(window=7, match_exposure=False, detail=(0,), closeness=(1.0,), focus=(1.0,), focus_window=(7,), clean=15, decisive=float("inf"), min_region=0.0, region_margin=float("inf"), seam=0, seam_evidence=0.05, radius=0, eps=0.1)
"""A decision map without the default's refinements: one closeness and one focus term, a plain 15 px vote, no regions, seams or softening."""


def recorded_bars(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The (description, length) of every inner progress bar the commands open from now on (gipc.cli.common's),
    each bar passing its items through unchanged."""
    bars: list[tuple[str, int]] = []
    monkeypatch.setattr(gipc.cli.common, "tqdm", lambda items, desc, **kwargs: bars.append((desc, len(items))) or items)
    return bars
