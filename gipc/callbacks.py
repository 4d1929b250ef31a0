"""Lightning callbacks of the training run: the test report (fused images + metric tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import WandbLogger

from gipc.color import fuse_color
from gipc.report import numeric_columns, write_report

MODEL_NAME = "gipc"


class TestReport(L.Callback):
    """Writes every fused test image and a per-image metric table of the model and classic baselines.

    Each rank writes the images it fused; the metric rows are gathered and rank zero writes
    ``metrics.csv`` / ``metrics.md`` once, so a DDP run leaves one set of outputs.
    """

    def __init__(self, out_dir: str, baselines: Sequence[str] = (), image_dir: str = "fused") -> None:
        self.out_dir = Path(out_dir)
        self.baselines = list(baselines)
        self.image_dir = image_dir
        self.rows: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows, self.written = [], []

    @torch.inference_mode()
    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        from gipc.baselines import BASELINES
        from gipc.imaging import write_image
        from gipc.metrics import fusion_metrics

        a, b, gt = batch["a"], batch["b"], batch.get("gt")
        fused = {MODEL_NAME: outputs["fused"]}
        fused.update({name: fuse_color(BASELINES[name], a, b) for name in self.baselines})
        for i, image_name in enumerate(batch["name"]):
            path = self.out_dir / self.image_dir / f"{image_name}.png"
            write_image(path, fused[MODEL_NAME][i].float().cpu(), overwrite=True)
            self.written.append(path)
        for method, image in fused.items():
            values = fusion_metrics(a, b, image, gt)
            for i, image_name in enumerate(batch["name"]):
                self.rows.append({"image": image_name, "method": method, **{k: float(v[i]) for k, v in values.items()}})

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self.rows
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list[list[dict[str, Any]]] = [[] for _ in range(trainer.world_size)]
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero or not rows:
            return
        rows.sort(key=lambda r: (r["method"] != MODEL_NAME, r["method"], r["image"]))
        write_report(rows, self.out_dir, group="method")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                columns = ["image", "method", *numeric_columns(rows)]
                logger.log_table(key="test/per_image", columns=columns, data=[[r.get(c) for c in columns] for r in rows])
