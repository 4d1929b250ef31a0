"""A finished training run's directory: the data it trained and validated on, rebuilt from its saved config.

Tools that work on a run after the fact (``gipc-select``, ``gipc-export --recalibrate-bn``) need
the exact pairs the run saw; its ``config.yaml`` holds the data config and seed that rebuild them.
"""

from __future__ import annotations

import inspect
import itertools
from pathlib import Path
from typing import Any, Iterator

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gipc.color import to_net
from gipc.configs import conf_group
from gipc.data.datamodule import FusionDataModule
from gipc.data.pair_sets import EmbeddedPairs, FolderPairs, SynthesizedPairs
from gipc.errors import DataError


def run_dir_of(checkpoint: Path) -> Path:
    """The run dir a checkpoint was written into (``<run>/checkpoints/<name>.ckpt``)."""
    return checkpoint.resolve().parent.parent


def _arguments(cls: type) -> tuple[str, ...]:
    return tuple(inspect.signature(cls).parameters)


def upgrade_data_config(data: dict[str, Any]) -> dict[str, Any]:
    """A run's ``data`` config in today's layout: a flat one (runs made before ``data.source``, e.g. the
    committed studies) has the keys its source takes moved under ``source``, the keys no source of its
    kind took dropped, and settings it predates taken from ``conf/data/source``; a current one comes
    back as it is."""
    if "source" in data:
        return data
    kind, name = ((FolderPairs, "folder") if data.get("root") is not None
                  else (SynthesizedPairs, "photos") if data.get("synthesis") is not None else (EmbeddedPairs, "embedded"))
    source = {**conf_group("data/source", name), "_target_": f"{kind.__module__}.{kind.__qualname__}",
              **{k: data[k] for k in _arguments(kind) if k in data}}
    return {k: data[k] for k in ("_target_", *_arguments(FusionDataModule)) if k in data} | {"source": source}


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
