"""gipc-select: checkpoints ranked on held-out pairs, the pick recorded, bad input in one line."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

import pytest
import torch

from gipc.color import fuse_color
from gipc.data.datasets import PairFolder
from gipc.data.scene import Scene
from gipc.fusion import default_rule
from gipc.imaging import write_image
from gipc.inference import choose_path, prepare
from gipc.metrics import psnr
from gipc.metrics.msssim import _warn_fewer_scales
from gipc.pretrained import load_generator
from gipc.rundir import run_datamodule
from gipc.selection import candidates, mean_ranks, score_checkpoints
from gipc.runstate import checkpoint_step
from gipc.cli.select import main

from helpers import fuser_by_hand, run_dir_with_checkpoints


def _val_psnr_by_hand(checkpoint: Path, scenes: Sequence[Scene]) -> float:
    """Mean PSNR of the checkpoint's direct output over ``scenes``: the plain generator on the Y planes
    (helpers.fuser_by_hand), chroma by the saturation rule."""
    fuse = fuser_by_hand(load_generator(checkpoint).eval())
    return statistics.fmean(float(psnr(fuse_color(fuse, s.a[None], s.b[None]), s.gt[None])) for s in scenes)


def test_mean_ranks_by_hand() -> None:
    rows = [{"p": 30.0, "q": 0.70}, {"p": 32.0, "q": 0.60}, {"p": 31.0, "q": 0.70}]
    # p ranks 3, 1, 2; q ranks 1, 3, 1 (a tie shares the better rank).
    assert mean_ranks(rows, ["p", "q"]) == [2.0, 2.0, 1.5]


def test_checkpoint_step_reads_the_name() -> None:
    assert checkpoint_step(Path("epoch003-step0001200.ckpt")) == 1200
    assert checkpoint_step(Path("last.ckpt")) == -1


def test_select_scores_every_checkpoint_and_records_the_pick(tmp_path: Path, capsys, recwarn: pytest.WarningsRecorder) -> None:
    run = run_dir_with_checkpoints(tmp_path)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for letter in "AB":
        write_image(pairs / f"x-{letter}.png", torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(ord(letter))))
    _warn_fewer_scales.cache_clear()  # it warns once a process: earlier tests may have had it
    assert main([str(run), "--pairs", str(pairs)]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        f"gipc-select: scoring 2 checkpoint(s) under rule {default_rule()[0]}: 1 held-out synthetic pair(s) (PSNR, SSIM) and 1 pair(s) of {pairs} (Q^AB/F)"
    )
    assert not [w for w in recwarn if "MS-SSIM" in str(w.message)]  # only what the table ranks is scored: no word of 40 px pairs' MS-SSIM
    record = (run / "selection.md").read_text()
    assert "epoch000-step0000100.ckpt" in record and "epoch000-step0000200.ckpt" in record
    assert record.count("(picked)") == 1
    # The pick is the lowest mean rank, a tie going to the later step, and the header names it.
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in record.splitlines() if line.startswith("| epoch")]
    best = min(rows, key=lambda row: (float(row[-1]), -int(row[1])))
    assert best[0].endswith("**(picked)**")
    assert record.splitlines()[0].endswith(f"picked: {best[0].removesuffix(' **(picked)**')}")
    assert record.startswith(f"Checkpoints scored by `gipc-select` under rule {default_rule()[0]};")  # the rule gipc-fuse ships
    assert main([str(run), "--pairs", str(pairs), "--min-step", "200"]) == 0  # at or after: step 200 stays
    assert "step0000100" not in (run / "selection.md").read_text()
    stale = (run / "selection.md").read_text()
    assert main([str(run), "--pairs", str(pairs), "--min-step", "200", "--recalibrate-bn", "2"]) == 0
    recalibrated = (run / "selection.md").read_text()
    assert recalibrated.count("step0000200") == 2 and recalibrated != stale  # scored with other BN statistics


def test_select_ranks_higher_scores_first_and_scores_the_validation_scenes(tmp_path: Path) -> None:
    run = run_dir_with_checkpoints(tmp_path)
    # A third, later checkpoint whose generator paints black (output conv zeroed, bias -5: tanh -> -1): under the
    # direct rule it is worst on both ranked columns (Q^AB/F near 0: no edges), so only a ranking upside down picks it.
    state = torch.load(run / "checkpoints" / "epoch000-step0000200.ckpt", weights_only=True)
    state["state_dict"]["generator.decoder.3.weight"].zero_()
    state["state_dict"]["generator.decoder.3.bias"].fill_(-5.0)
    torch.save(state, run / "checkpoints" / "epoch000-step0000300.ckpt")
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for letter in "AB":
        write_image(pairs / f"x-{letter}.png", torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(ord(letter))))
    assert main([str(run), "--pairs", str(pairs), "--rule", "direct"]) == 0
    record = (run / "selection.md").read_text()
    rows = {row[0].removesuffix(" **(picked)**"): row for row in (
        [cell.strip() for cell in line.strip("|").split("|")] for line in record.splitlines() if line.startswith("| epoch"))}
    black = rows["epoch000-step0000300.ckpt"]
    assert all(float(black[col]) < float(row[col]) for row in rows.values() if row is not black for col in (2, 4))  # PSNR, Q^AB/F
    assert "(picked)" not in black[0] and record.count("(picked)") == 1
    # The val PSNR column is the mean over the run's validation scenes (never its test scenes), computed by hand.
    by_hand = _val_psnr_by_hand(run / "checkpoints" / "epoch000-step0000100.ckpt", run_datamodule(run).val_scenes)
    assert float(rows["epoch000-step0000100.ckpt"][2]) == pytest.approx(by_hand, abs=0.02)


def test_checkpoints_are_scored_under_the_rule_they_will_ship_with(tmp_path: Path) -> None:
    run = run_dir_with_checkpoints(tmp_path)
    data = run_datamodule(run)
    checkpoint = sorted((run / "checkpoints").glob("*.ckpt"))[0]
    rows = {rule: score_checkpoints([checkpoint], data.val_scenes, data.val_scenes, rule=rule)[0] for rule in ("direct", "map")}

    # direct: the plain nn.Module (no BatchNorm folding, channels_last, autocast or Fusion) on the Y planes in
    # [-1, 1], chroma by the saturation rule. Selection runs choose_path("cpu"): bf16 autocast on a CPU with
    # native bf16 (8-bit mantissa; measured 4e-4 dB off fp32 here, while the other checkpoint scores 0.15 dB
    # away), fp32 elsewhere (float rounding only).
    tolerance = 1e-3 if choose_path("cpu").precision == "fp32" else 1e-2
    assert rows["direct"]["val_PSNR"] == pytest.approx(_val_psnr_by_hand(checkpoint, data.val_scenes), abs=tolerance)

    # map: every fused pixel is A's or B's (all three channels), both sources are used, and it scores those images.
    network = prepare(load_generator(checkpoint), choose_path("cpu"))
    fused = [network.fusion("map").fuse([s.a, s.b]) for s in data.val_scenes]
    for image, scene in zip(fused, data.val_scenes):
        from_a, from_b = (image == scene.a).all(dim=0), (image == scene.b).all(dim=0)
        assert (from_a | from_b).all() and from_a.any() and from_b.any()
    scores = [float(psnr(f[None], s.gt[None])) for f, s in zip(fused, data.val_scenes)]
    assert rows["map"]["val_PSNR"] == pytest.approx(sum(scores) / len(scores), abs=1e-6)
    assert abs(rows["map"]["val_PSNR"] - rows["direct"]["val_PSNR"]) > 1.0


def test_every_pairs_folder_is_scored(tmp_path: Path) -> None:
    """--pairs is repeatable: the Q^AB/F column is the mean over the pairs of every folder (one pair each here)."""
    run = run_dir_with_checkpoints(tmp_path)
    folders = [tmp_path / "pairs1", tmp_path / "pairs2"]
    for seed, folder in enumerate(folders):
        folder.mkdir()
        for i, letter in enumerate("AB"):
            write_image(folder / f"x-{letter}.png", torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(2 * seed + i)))
    assert main([str(run), "--pairs", str(folders[0]), "--pairs", str(folders[1]), "--min-step", "200", "--rule", "direct"]) == 0
    (row,) = [line.split("|") for line in (run / "selection.md").read_text().splitlines() if line.startswith("| epoch")]
    checkpoint, val = run / "checkpoints" / "epoch000-step0000200.ckpt", run_datamodule(run).val_scenes
    each = [score_checkpoints([checkpoint], val, list(PairFolder(f)), rule="direct")[0]["pairs_QABF"] for f in folders]
    assert abs(each[0] - each[1]) > 1e-3  # the folders score apart, so dropping either shows
    assert float(row[5]) == pytest.approx(sum(each) / 2, abs=1e-4)


def test_the_final_weights_in_last_ckpt_are_a_candidate_unless_a_snapshot_holds_them(tmp_path: Path) -> None:
    """Training that ends between two snapshots keeps its final weights in last.ckpt alone: they are scored
    too, at the step the file holds; a last.ckpt written at a snapshot's step is that snapshot, scored once."""
    run = run_dir_with_checkpoints(tmp_path)
    snapshot = torch.load(run / "checkpoints" / "epoch000-step0000200.ckpt", weights_only=True)
    torch.save({**snapshot, "global_step": 200}, run / "checkpoints" / "last.ckpt")
    assert [p.name for p in candidates(run)] == ["epoch000-step0000100.ckpt", "epoch000-step0000200.ckpt"]
    torch.save({**snapshot, "global_step": 250}, run / "checkpoints" / "last.ckpt")  # trained on past the last snapshot
    assert [p.name for p in candidates(run)] == ["epoch000-step0000100.ckpt", "epoch000-step0000200.ckpt", "last.ckpt"]
    assert [p.name for p in candidates(run, min_step=201)] == ["last.ckpt"]
    pairs = tmp_path / "pairs"
    for letter in "AB":
        write_image(pairs / f"x-{letter}.png", torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(ord(letter))))
    assert main([str(run), "--pairs", str(pairs), "--min-step", "150"]) == 0
    rows = [line for line in (run / "selection.md").read_text().splitlines() if line.startswith("| epoch") or line.startswith("| last")]
    assert [row.split(" | ")[0].removesuffix(" **(picked)**") for row in rows] == ["| epoch000-step0000200.ckpt", "| last.ckpt"]
    assert rows[1].split(" | ")[1] == "250"


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing", "--pairs", "{tmp}"], "no such run dir"),
    (["{tmp}", "--pairs", "{tmp}"], "not a training run dir (no checkpoints/ folder); give outputs/<task>/runs/<time>"),
    (["{tmp}/run", "--pairs", "{tmp}"], "checkpoints holds no checkpoint at or after step 0"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_help_describes_the_command_without_markup(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Score a run's checkpoints on held-out data and pick one" in out and "``" not in out
