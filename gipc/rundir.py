"""A finished training run's directory: the data it trained and validated on, rebuilt from its saved config.

Tools that work on a run after the fact (``gipc-select``, ``gipc-export --recalibrate-bn``) need
the exact pairs the run saw; its ``config.yaml`` holds the data config and seed that rebuild them.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gipc.color import to_net
from gipc.data.datamodule import FusionDataModule
from gipc.errors import DataError


def run_dir_of(checkpoint: Path) -> Path:
    """The run dir a checkpoint was written into (``<run>/checkpoints/<name>.ckpt``)."""
    return checkpoint.resolve().parent.parent


LOADER_KEYS = ("_target_", "batch_size", "patch_size", "num_workers", "seed", "test_root")
"""What ``conf/data/*.yaml`` keep beside ``source``: the loading options."""
OLD_SOURCES = {
    "gipc.data.pair_sets.FolderPairs": ("root", "stride", "patches_per_epoch", "flips", "val_count"),
    "gipc.data.pair_sets.SynthesizedPairs": (
        "synthesis", "held_out_synthesis", "patches_per_epoch", "photo_dirs", "embedded_photos", "max_side",
        "test_fraction", "val_count", "flips",
    ),
    "gipc.data.pair_sets.EmbeddedPairs": (
        "test_fraction", "sigma", "soft", "max_side", "map_source", "photos", "stride", "patches_per_epoch", "flips", "val_count",
    ),
}
"""Each source and the keys it took from the flat ``data`` config of runs made before ``data.source``."""


def upgrade_data_config(data: dict[str, Any]) -> dict[str, Any]:
    """A run's ``data`` config in today's layout: a flat one (runs made before ``data.source``, e.g. the
    committed studies) has its source's keys moved under ``source`` and the keys no source of its kind
    took dropped; a current one comes back as it is."""
    if "source" in data:
        return data
    kind = (
        "gipc.data.pair_sets.FolderPairs" if data.get("root") is not None
        else "gipc.data.pair_sets.SynthesizedPairs" if data.get("synthesis") is not None
        else "gipc.data.pair_sets.EmbeddedPairs"
    )
    source = {"_target_": kind, **{k: data[k] for k in OLD_SOURCES[kind] if k in data}}
    return {**{k: data[k] for k in LOADER_KEYS if k in data}, "source": source}


def run_datamodule(run_dir: Path) -> FusionDataModule:
    """The run's data module, set up for fitting (same photos, same seed, same held-out pairs)."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise DataError(f"{run_dir}: no config.yaml; is it a gipc run dir?")
    data = upgrade_data_config(OmegaConf.to_container(OmegaConf.load(config).data))
    datamodule: FusionDataModule = instantiate(data)
    datamodule.setup("fit")
    return datamodule


def training_inputs(data: FusionDataModule, batches: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` generator inputs ``(a, b)`` in the network's range, as the run trained on them.

    Loader batches hold ``batches_per_step`` training batches (one per D or G step); each is split
    back into batches of ``batch_size`` so BatchNorm sees the batch statistics training saw.
    """
    loaded = (
        (to_net(a), to_net(b))
        for batch in data.train_dataloader()
        for a, b in zip(batch["a"].split(data.batch_size), batch["b"].split(data.batch_size))
    )
    return itertools.islice(loaded, batches)
