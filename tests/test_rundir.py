"""Run dirs made before ``data.source`` still rebuild their data: the flat data config is upgraded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gipc.data.pair_sets import EmbeddedPairs, SynthesizedPairs
from gipc.errors import DataError
from gipc.rundir import run_datamodule, run_dir_of, upgrade_data_config
from helpers import REPO, run_dir_with_checkpoints


def test_a_committed_study_config_upgrades_to_its_synthesized_source() -> None:
    old = yaml.safe_load((REPO / "docs" / "results" / "ablation-cpu" / "seed1-none" / "config.yaml").read_text())["data"]
    assert "source" not in old and old["synthesis"] is not None  # the flat layout the studies were run with
    new = upgrade_data_config(old)
    assert set(new) == {"_target_", "batch_size", "patch_size", "num_workers", "seed", "test_root", "source"}
    source = instantiate(new["source"])  # no photo is read until split()
    assert isinstance(source, SynthesizedPairs)
    assert (source.photo_dirs, source.val_count, source.patches_per_epoch) == (tuple(old["photo_dirs"]), old["val_count"], old["patches_per_epoch"])
    assert list(source.held_out_recipe.sigma) == old["held_out_synthesis"]["sigma"]


def test_flat_embedded_and_folder_configs_pick_their_source() -> None:
    # Settings a flat config predates come from conf/data/source (test_fraction 0.25, max_side 256, ...).
    embedded = upgrade_data_config({"batch_size": 2, "sigma": 3.0, "root": None, "synthesis": None, "photo_dirs": []})
    assert embedded["source"]["_target_"] == "gipc.data.pair_sets.EmbeddedPairs"
    assert instantiate(embedded["source"]) == EmbeddedPairs(sigma=3.0, test_fraction=0.25, max_side=256)
    folder = upgrade_data_config({"root": "built", "stride": 8, "sigma": 2.0, "synthesis": None})
    assert folder["source"] == {"_target_": "gipc.data.pair_sets.FolderPairs", "root": "built", "stride": 8,
                                "patches_per_epoch": None, "flips": False, "val_count": 2}
    assert upgrade_data_config(embedded) is embedded


def test_an_old_run_dir_rebuilds_the_same_pairs_as_a_new_one(tmp_path: Path) -> None:
    run = run_dir_with_checkpoints(tmp_path)
    new = run_datamodule(run)
    data = OmegaConf.to_container(OmegaConf.load(run / "config.yaml").data)
    flat = {k: v for k, v in data.items() if k != "source"} | {k: v for k, v in data["source"].items() if k != "_target_"}
    old_run = tmp_path / "old"
    old_run.mkdir()
    OmegaConf.save(OmegaConf.create({"data": flat}), old_run / "config.yaml")
    old = run_datamodule(old_run)
    assert [s.name for s in old.val_scenes] == [s.name for s in new.val_scenes]
    assert all(torch.equal(a.a, b.a) for a, b in zip(old.val_scenes, new.val_scenes))
    assert torch.equal(old.train_set[3]["a"], new.train_set[3]["a"])


def test_a_checkpoint_belongs_to_the_folder_above_its_checkpoints_folder(tmp_path: Path) -> None:
    # Lightning writes <run>/checkpoints/<name>.ckpt
    assert run_dir_of(tmp_path / "run" / "checkpoints" / "last.ckpt") == tmp_path / "run"


def test_a_folder_without_config_is_refused_as_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no config.yaml; is it a gipc run dir"):
        run_datamodule(tmp_path)
