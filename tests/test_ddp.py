"""DDP under Hydra on CPU: 2 gloo processes train and test; one set of outputs; metrics equal one process's.

Three test images on two ranks make DistributedSampler repeat one image: the report must still list
each image once, with the means a single process computes from the same weights.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from gipc.color import fuse_color
from gipc.inference import choose_path, prepare
from gipc.metrics import fusion_metrics
from gipc.pretrained import load_generator
from helpers import run_gipc

DATA = (
    "data.patch_size=16",
    "data.batch_size=2",
    "data.source.max_side=64",
    "data.source.photos=[astronaut,coffee,camera,coins,moon,cell]",
    "data.source.test_fraction=0.5",  # 3 held-out images: an uneven split over 2 ranks
    "data.source.val_count=3",
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_test_and_report_once(tmp_path):
    result = run_gipc(
        tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "logger=csv",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.log_every_n_steps=1",
        "callbacks.test_report.baselines=[average]", *DATA,
    )
    # The metrics are reduced over the ranks before they are logged: Lightning has nothing to warn about.
    assert "sync_dist=True" not in result.stdout + result.stderr
    (run,) = (tmp_path / "outputs" / "quick" / "runs").iterdir()  # rank 1 reused rank 0's run dir
    assert (run / "train_ddp_process_1.log").is_file() and not (run / "FAILED").exists()
    assert (run / "config.yaml").is_file() and (run / ".hydra" / "config.yaml").is_file()

    # Every loss term each rank logged is finite.
    logged = read_csv(run / "csv" / "metrics.csv")
    losses = [float(r[k]) for r in logged for k in r if k.startswith("train/") and k.endswith("_loss") and r[k]]
    assert losses and all(math.isfinite(v) for v in losses)

    # Each held-out image once per method, and one fused PNG each: the padded repeat is dropped.
    rows = read_csv(run / "metrics.csv")
    names = ["astronaut", "cell", "coffee"]
    for method in ("gipc", "average"):
        assert sorted(r["image"] for r in rows if r["method"] == method) == names
    fused = sorted((run / "fused").iterdir())
    assert [p.name for p in fused] == [f"{n}.png" for n in names]  # no temp files left either
    for path in fused:
        with Image.open(path) as png:
            png.verify()

    # Single-process evaluation of the same weights on the same images gives the same table.
    cfg = OmegaConf.create(yaml.safe_load((run / "config.yaml").read_text()))
    generator = load_generator(run / "checkpoints" / "last.ckpt")
    datamodule = instantiate(cfg.data, batches_per_step=cfg.model.d_steps_per_g_step + 1)
    datamodule.setup("test")
    reference: dict[str, dict[str, float]] = {}
    fuse_y = prepare(generator, choose_path("cpu")).fuse_y  # the test stage's inference path
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            scores = fusion_metrics(batch["a"], batch["b"], fuse_color(fuse_y, batch["a"], batch["b"]), batch.get("gt"))
            for i, name in enumerate(batch["name"]):
                reference[name] = {k: float(v[i]) for k, v in scores.items()}
    assert sorted(reference) == names
    ours = {r["image"]: r for r in rows if r["method"] == "gipc"}
    for name, values in reference.items():
        for metric, value in values.items():
            assert float(ours[name][metric]) == pytest.approx(value, rel=1e-4, abs=1e-4), (name, metric)

    # The logged test/* means (torchmetrics summed over ranks) are the single-process means, not
    # means over 4 images with one counted twice.
    test_row = next(r for r in logged if r.get("test/QABF"))
    for metric in ("QABF", "EN", "PSNR"):
        mean = sum(v[metric] for v in reference.values()) / len(reference)
        assert float(test_row[f"test/{metric}"]) == pytest.approx(mean, rel=1e-4, abs=1e-4)


@pytest.mark.slow
def test_ddp_inside_a_multirun_with_spawned_workers(tmp_path):
    """A sweep job cannot re-run its command line per rank; spawned workers (start_method=spawn) can,
    and the job still reports each image once."""
    run_gipc(
        tmp_path, "-m", "loss.ratio=0.2", "trainer=ddp", "trainer.strategy.start_method=spawn", "trainer.accelerator=cpu",
        "trainer.devices=2", "logger=wandb", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
        "callbacks.test_report.baselines=[]", "callbacks.test_report.shipped=false", *DATA,
    )
    (sweep,) = (tmp_path / "outputs" / "quick" / "multiruns").iterdir()
    (job,) = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert job.name.startswith("0_") and not (job / "FAILED").exists()
    assert yaml.safe_load((job / "config.yaml").read_text())["loss"]["l1"] == 0.2
    rows = read_csv(job / "metrics.csv")
    for method in ("gipc", "gipc+map"):  # the paper's direct output and the map rule, each image once
        assert sorted(r["image"] for r in rows if r["method"] == method) == ["astronaut", "cell", "coffee"]
    assert {r["method"] for r in rows} == {"gipc", "gipc+map"}
    assert sorted(p.name for p in (job / "fused").iterdir()) == ["astronaut.png", "cell.png", "coffee.png"]
