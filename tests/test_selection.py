"""gipc-select: checkpoints ranked on held-out pairs, the pick recorded, bad input in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gipc.imaging import write_image
from gipc.models import Generator
from gipc.selection import checkpoint_step, main, mean_ranks


def test_mean_ranks_by_hand() -> None:
    rows = [{"p": 30.0, "q": 0.70}, {"p": 32.0, "q": 0.60}, {"p": 31.0, "q": 0.70}]
    # p ranks 3, 1, 2; q ranks 1, 3, 1 (a tie shares the better rank).
    assert mean_ranks(rows, ["p", "q"]) == [2.0, 2.0, 1.5]


def test_checkpoint_step_reads_the_name() -> None:
    assert checkpoint_step(Path("epoch003-step0001200.ckpt")) == 1200
    assert checkpoint_step(Path("last.ckpt")) == -1


def _run_dir(tmp_path: Path) -> Path:
    """A run dir as training leaves it: config.yaml of a synthesized data set and two checkpoints."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        write_image(photos / f"p{i}.png", torch.rand(3, 48, 56, generator=torch.Generator().manual_seed(i)))
    recipe = dict(sigma=[1.0, 2.0], soft=[0.0, 1.0], fraction=[0.3, 0.7], blob_size=[8, 16])
    data = dict(_target_="gipc.data.datamodule.FusionDataModule", batch_size=2, patch_size=16, patches_per_epoch=8,
                seed=0, embedded_photos=False, photo_dirs=[str(photos)], test_fraction=0.6, val_count=1,
                max_side=None, synthesis=recipe, held_out_synthesis=recipe)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"data": data}), run / "config.yaml")
    for step, seed in ((100, 0), (200, 1)):
        torch.manual_seed(seed)
        state = {f"generator.{k}": v for k, v in Generator(width=4).state_dict().items()}
        torch.save({"state_dict": state, "hyper_parameters": {"generator": {"width": 4}}},
                   run / "checkpoints" / f"epoch000-step{step:07d}.ckpt")
    return run


def test_select_scores_every_checkpoint_and_records_the_pick(tmp_path: Path, capsys) -> None:
    run = _run_dir(tmp_path)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for letter in "AB":
        write_image(pairs / f"x-{letter}.png", torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(ord(letter))))
    assert main([str(run), "--pairs", str(pairs)]) == 0
    record = (run / "selection.md").read_text()
    assert "epoch000-step0000100.ckpt" in record and "epoch000-step0000200.ckpt" in record
    assert record.count("(picked)") == 1
    assert main([str(run), "--pairs", str(pairs), "--min-step", "150"]) == 0
    assert "step0000100" not in (run / "selection.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing", "--pairs", "{tmp}"], "no such run dir"),
    (["{tmp}", "--pairs", "{tmp}"], "holds no step-named checkpoint"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
