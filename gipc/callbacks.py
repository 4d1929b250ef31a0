"""Lightning callbacks of the training run: the test report (fused images + metric tables) and W&B image panels."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import WandbLogger

from gipc.baselines import BASELINES
from gipc.choices import expand, unknown
from gipc.color import fuse_color, luma
from gipc.decision import MapSettings
from gipc.errors import ConfigError
from gipc.fusion import Fusion, check_rule, map_settings
from gipc.imaging import write_image
from gipc.losses import LaplacianKind, gradient
from gipc.metrics import EXTRA_NAMES
from gipc.models.generator import HEADS
from gipc.pretrained import pretrained, shipped_weights_exist
from gipc.report import numeric_columns, score_batch, write_report
from gipc.tiling import remember_last

MODEL_NAME = "gipc"
SHIPPED_NAME = "gipc-shipped"
"""The report's row for the model gipc ships (gipc.pretrained), beside the model the run trained."""
MAP_SUFFIX = "+map"
"""Rows of a network under the map rule (gipc.fusion) are named ``<network row>+map``."""


def _real_count(outputs: Any, names: Sequence[str]) -> int:
    """Samples of a batch that are real images, not DDP padding (the module's ``real`` output)."""
    return int(outputs.get("real", len(names))) if isinstance(outputs, dict) else len(names)


class TestReport(L.Callback):
    """Writes every fused test image and a per-image metric table of the model and classic baselines.

    With ``shipped`` the table also scores the model gipc ships (row ``gipc-shipped``), so a short
    run shows what a trained model does; an install without shipped weights leaves the row out.
    Rows ``gipc`` and ``gipc-shipped`` are the paper's direct output; with ``fusion`` (the config
    group: its ``map`` settings, ``head_map`` over them for a map head) each network also fuses
    under the map rule (rows ``<name>+map``, images in ``fused-map/``), and where the test pairs
    know their true decision map its accuracy and boundary F-score are scored. ``extra_metrics``
    (:data:`gipc.metrics.EXTRA_NAMES`) adds the MFIF survey's further metrics to every row.

    The run's own rows give its logged test metrics (``test/QABF``, ...), so the test set is scored
    once. Each rank writes the images it fused; the metric rows are gathered and rank zero writes
    ``metrics.csv`` / ``metrics.md`` once, so a DDP run leaves one set of outputs. The repeats
    DistributedSampler pads an uneven test set with are skipped, so every image appears once and
    the means equal a single-process run's.
    """

    def __init__(
        self,
        out_dir: str,
        baselines: Sequence[str] = (),
        image_dir: str = "fused",
        shipped: bool = True,
        fusion: Mapping[str, Any] | None = None,
        extra_metrics: Sequence[str] = (),
    ) -> None:
        self.extra_metrics = expand(extra_metrics, EXTRA_NAMES)
        if problem := unknown(self.extra_metrics, EXTRA_NAMES, "metric"):  # before the run trains
            raise ConfigError(f"callbacks.test_report.extra_metrics: {problem}")
        baselines = expand(baselines, BASELINES)
        if problem := unknown(baselines, BASELINES, "baseline"):  # before the run trains, too
            raise ConfigError(f"callbacks.test_report.baselines: {problem}")
        self.out_dir = Path(out_dir)
        self.baselines = baselines
        self.image_dir = image_dir
        self.shipped = shipped
        # per generator head, built here so that a bad value stops the run before it trains; the test
        # stage scores every rule, but a misspelt fusion.rule must not pass unnoticed either
        if fusion is not None and "rule" in fusion:
            check_rule(fusion["rule"], "fusion.rule")
        self.map_settings: dict[str, MapSettings] | None = None if fusion is None else {head: map_settings(fusion, head) for head in HEADS}
        self.fusions: dict[str, Fusion] = {}
        self.rows: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []
        networks = {MODEL_NAME: pl_module.test_network} if getattr(pl_module, "test_network", None) is not None else {}
        if self.shipped and shipped_weights_exist():
            networks[SHIPPED_NAME] = pretrained(pl_module.device)
        # The run's own direct output comes from the module's test step; every other (network, rule) is fused
        # here, a network's rules sharing one pass per batch (the run's own: the test step's).
        own = getattr(pl_module, "test_fusion", None)
        self.fusions = {}
        for name, network in networks.items():
            direct = network.fusion("direct")
            # One pass per batch, whole-image outputs remembered (tiles, above 1 MP, inside it).
            shared = own.net if name == MODEL_NAME and own is not None else remember_last(direct.sized_net)
            if name != MODEL_NAME:
                self.fusions[name] = replace(direct, net=shared, tile=0)
            if self.map_settings is not None:
                self.fusions[name + MAP_SUFFIX] = replace(network.fusion("map", self.map_settings[network.head]), net=shared, tile=0)

    @torch.inference_mode()
    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        real = _real_count(outputs, batch["name"])
        if not real:
            return
        names = list(batch["name"])[:real]
        a, b = batch["a"][:real], batch["b"][:real]
        gt, true_map = (None if batch.get(key) is None else batch[key][:real] for key in ("gt", "focus_map"))
        fused, maps = {MODEL_NAME: outputs["fused"][:real]}, {}
        for name, fusion in self.fusions.items():
            result = fusion([a, b])
            fused[name] = result.image
            if (shades := result.map_image()) is not None:
                maps[name] = shades
        fused.update({name: fuse_color(BASELINES[name], a, b) for name in self.baselines})
        direct, mapped = self.image_dirs
        for i, image_name in enumerate(names):
            write_image(self.out_dir / direct / f"{image_name}.png", fused[MODEL_NAME][i].float().cpu(), overwrite=True)
            if MODEL_NAME + MAP_SUFFIX in fused:
                write_image(self.out_dir / mapped / f"{image_name}.png", fused[MODEL_NAME + MAP_SUFFIX][i].float().cpu(), overwrite=True)
        self.rows += score_batch(names, a, b, fused, gt, maps, true_map, self.extra_metrics)

    @property
    def image_dirs(self) -> tuple[str, str]:
        """The folders (in the run dir) of the run's test images under the paper's rule and under the map rule."""
        return self.image_dir, f"{self.image_dir}-map"

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows, self.fusions = self.rows, {}  # the fusions hold their last batch
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list[list[dict[str, Any]]] = [[] for _ in range(trainer.world_size)]
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not rows:
            return
        # The run's test metrics (test/QABF, ...) are these rows' means: the test set is scored once, here.
        # Every rank holds all rows, so sync_dist's mean leaves the means as they are (and keeps Lightning quiet).
        own = [r for r in rows if r["method"] == MODEL_NAME]
        pl_module.log_dict({f"test/{k}": statistics.fmean(float(r[k]) for r in own if r.get(k) is not None)
                            for k in numeric_columns(own) if any(r.get(k) is not None for r in own)}, sync_dist=True)
        if not trainer.is_global_zero:
            return
        order = [MODEL_NAME, MODEL_NAME + MAP_SUFFIX, SHIPPED_NAME, SHIPPED_NAME + MAP_SUFFIX]
        rows.sort(key=lambda r: (order.index(r["method"]) if r["method"] in order else len(order), r["method"], r["image"]))
        write_report(rows, self.out_dir, group="method")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                columns = ["image", "method", *numeric_columns(rows)]
                logger.log_table(key="test/per_image", columns=columns, data=[[r.get(c) for c in columns] for r in rows])


def image_panel(
    a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None, laplacian: LaplacianKind
) -> torch.Tensor:
    """One (C, 2H, kW) picture: A, B, fused (and ground truth) on top, their Laplacian maps below.

    Inputs are (C, H, W) in [0, 1]. The maps are |Laplacian| of the luminance, all divided by the
    same maximum, so a sharper image shows brighter edges than a blurred one beside it.
    """
    images = [x for x in (a, b, fused, gt) if x is not None]
    stack = torch.stack(images).float()
    maps = gradient(luma(stack), laplacian).abs()
    maps = (maps / maps.amax().clamp_min(torch.finfo(maps.dtype).tiny)).expand_as(stack)
    return torch.cat([torch.cat(list(stack), dim=2), torch.cat(list(maps), dim=2)], dim=1)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8, the array form wandb.Image takes without torchvision."""
    pixels = image.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).cpu()
    return pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()


class ImagePanels(L.Callback):
    """Logs validation panels (see :func:`image_panel`) to W&B every ``every_n_epochs`` epochs.

    Up to ``max_images`` validation images per logged epoch, from rank zero; with no
    :class:`WandbLogger` in the trainer it does nothing, so csv/none runs pay nothing.
    """

    def __init__(self, every_n_epochs: int = 1, max_images: int = 2, key: str = "val/panels") -> None:
        for name, value in (("every_n_epochs", every_n_epochs), ("max_images", max_images)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"callbacks.image_panels.{name} must be an integer >= 1, got {value!r}")
        self.every_n_epochs, self.max_images, self.key = every_n_epochs, max_images, key
        self.panels: list[tuple[str, np.ndarray, str]] = []

    def _loggers(self, trainer: L.Trainer) -> list[WandbLogger]:
        if trainer.sanity_checking or not trainer.is_global_zero or (trainer.current_epoch + 1) % self.every_n_epochs:
            return []
        return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.panels = []

    @torch.no_grad()
    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if len(self.panels) >= self.max_images or not self._loggers(trainer):
            return
        names = list(batch.get("name") or [f"{batch_idx}_{i}" for i in range(len(batch["a"]))])
        take = min(_real_count(outputs, names), self.max_images - len(self.panels))
        laplacian = pl_module.weights.laplacian  # the kernel the losses see (conf/loss)
        gt = batch.get("gt")
        for i in range(take):
            panel = image_panel(batch["a"][i], batch["b"][i], outputs["fused"][i], None if gt is None else gt[i], laplacian)
            caption = f"{names[i]}: A | B | fused{' | GT' if gt is not None else ''} (Laplacian below)"
            self.panels.append((names[i], _to_uint8(panel), caption))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.panels:
            return
        # One key per image: validation images differ in size, and W&B wants one size per key.
        for logger in self._loggers(trainer):
            for name, panel, caption in self.panels:
                logger.log_image(key=f"{self.key}/{name}", images=[panel], caption=[caption], step=trainer.global_step)
        self.panels = []
