"""Pairs synthesized on the fly: the drawn ranges, equations 18-19 per patch, (seed, index) items,
fresh indices every epoch, the photo pool and the held-out split of data=photos."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import gipc.data.synthesis as synthesis
from gipc.data.datamodule import FusionDataModule
from gipc.data.pair_sets import SynthesizedPairs
from gipc.data.samplers import FreshDraws
from gipc.data.datasets import SynthesizedPatches
from gipc.data.photos import photo_pool
from gipc.data.synthesis import DefocusRecipe, disk_blur, draw_pair, gaussian_blur
from gipc.errors import DataError
from gipc.imaging import write_image

RECIPE = DefocusRecipe(sigma=(1.0, 5.0), soft=(0.0, 4.0), fraction=(0.1, 0.9), blob_size=(8, 32))
HARD = DefocusRecipe(sigma=(2.0, 3.0), soft=(0.0, 0.0), fraction=(0.3, 0.7), blob_size=(8, 16))
SMALL = dict(sigma=[1.0, 2.0], soft=[0.0, 1.0], fraction=[0.3, 0.7], blob_size=[8, 16])


def _photo(seed: int = 0, size: tuple[int, int] = (60, 70), channels: int = 1) -> torch.Tensor:
    return torch.rand(channels, *size, generator=torch.Generator().manual_seed(seed))


def test_sigma_is_drawn_inside_its_range_and_spread_over_it() -> None:
    generator = torch.Generator().manual_seed(0)
    sigmas = torch.stack([draw_pair(_photo(), 16, RECIPE, generator)["sigma"] for _ in range(200)])
    assert sigmas.min() >= 1.0 and sigmas.max() <= 5.0
    assert sigmas.min() < 1.5 and sigmas.max() > 4.5  # uniform over the range, not a point


def test_blob_sizes_are_drawn_from_every_integer_of_their_range_and_no_other() -> None:
    recipe = replace(HARD, blob_size=(8, 10))
    generator = torch.Generator().manual_seed(0)
    assert {recipe.draw_blob_size(generator) for _ in range(200)} == {8, 9, 10}


def test_hard_map_pair_is_sharp_or_blurred_pixel_by_pixel() -> None:
    """Eq. 18-19 with soft = 0: at every pixel one source equals GT and the other the blurred photo,
    blurred with the photo's own pixels around the patch (the margin), not padding."""
    photo = _photo(size=(40, 40))
    # The patch plus its margin is the whole photo, so the crop is the photo itself, up to the drawn
    # rotation and flip: undo neither, compare against GT's own blur instead.
    side = 16 + 2 * HARD.margin
    pair = draw_pair(photo[:, :side, :side], 16, HARD, torch.Generator().manual_seed(3), flips=False)
    sigma = float(pair["sigma"])
    blurred = gaussian_blur(photo[None, :, :side, :side], sigma)[0, :, HARD.margin : HARD.margin + 16, HARD.margin : HARD.margin + 16]
    assert torch.equal(pair["gt"], photo[:, HARD.margin : HARD.margin + 16, HARD.margin : HARD.margin + 16])
    a_sharp = (pair["a"] - pair["gt"]).abs() < 1e-6
    b_sharp = (pair["b"] - pair["gt"]).abs() < 1e-6
    assert torch.all(a_sharp ^ b_sharp | ((blurred - pair["gt"]).abs() < 1e-6))
    assert torch.allclose(torch.where(a_sharp, pair["b"], pair["a"]), blurred, atol=1e-6)
    assert 0 < a_sharp.float().mean() < 1  # both sources hold part of the focus


def test_disk_share_picks_the_kernel_and_zero_keeps_the_gaussian_stream() -> None:
    """disk = 1: every pair's blurred part is the pillbox blur; disk = 0 draws no number for the kernel,
    so Gaussian-only recipes draw the same pairs as before the field existed."""
    photo = _photo(size=(40, 40))
    side = 16 + 2 * HARD.margin
    inner = slice(HARD.margin, HARD.margin + 16)
    disk = replace(HARD, disk=1.0)
    pair = draw_pair(photo[:, :side, :side], 16, disk, torch.Generator().manual_seed(3), flips=False)
    a_sharp = (pair["a"] - pair["gt"]).abs() < 1e-6
    blurred = torch.where(a_sharp, pair["b"], pair["a"])
    sigma = float(pair["sigma"])
    torch.testing.assert_close(blurred, disk_blur(photo[None, :, :side, :side], sigma)[0, :, inner, inner], atol=1e-6, rtol=0)
    assert not torch.allclose(blurred, gaussian_blur(photo[None, :, :side, :side], sigma)[0, :, inner, inner], atol=1e-3)
    image, generator = photo[None], torch.Generator().manual_seed(9)
    before = generator.get_state()
    torch.testing.assert_close(RECIPE.blur(image, 2.0, generator), gaussian_blur(image, 2.0), atol=0, rtol=0)
    assert torch.equal(generator.get_state(), before)  # nothing drawn
    replace(RECIPE, disk=0.5).blur(image, 2.0, generator)
    assert not torch.equal(generator.get_state(), before)  # a share in (0, 1] draws the kernel
    with pytest.raises(ValueError, match="disk must be a share"):
        DefocusRecipe(sigma=(1, 2), soft=(0, 1), fraction=(0.2, 0.8), blob_size=(8, 16), disk=1.5)


@pytest.mark.parametrize("bad, message", [
    ({"sigma": (3.0, 1.0)}, r"sigma must be a range \[low, high\] with 0.0 <= low <= high, got \[3.0, 1.0\]"),
    ({"sigma": (-1.0, 1.0)}, r"sigma must be a range \[low, high\] with 0.0 <= low <= high, got \[-1.0, 1.0\]"),
    ({"soft": (-0.5, 1.0)}, r"soft must be a range \[low, high\] with 0.0 <= low <= high, got \[-0.5, 1.0\]"),
    ({"blob_size": (0, 16)}, r"blob_size must be a range \[low, high\] with 1 <= low <= high, got \[0, 16\]"),
    ({"fraction": (0.0, 0.8)}, r"fraction must lie inside \(0, 1\), got \[0.0, 0.8\]"),
    ({"fraction": (0.2, 1.0)}, r"fraction must lie inside \(0, 1\), got \[0.2, 1.0\]"),
], ids=["sigma-reversed", "sigma-negative", "soft-negative", "blob-size-0", "fraction-0", "fraction-1"])
def test_recipe_rejects_bad_ranges(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DefocusRecipe(**{"sigma": (1, 2), "soft": (0, 1), "fraction": (0.2, 0.8), "blob_size": (8, 16), **bad})


def test_items_depend_on_seed_and_index_only_and_never_run_out() -> None:
    photos = [_photo(0), _photo(1, (80, 64))]
    patches = SynthesizedPatches(photos, 16, RECIPE, length=10, seed=5)
    order = [3, 4, 0, 10, 10_000]
    items = {i: patches[i] for i in order}
    fresh = SynthesizedPatches(photos, 16, RECIPE, length=10, seed=5)  # read in reverse: no state carried between reads
    for i in reversed(order):
        item = fresh[i]
        assert all(torch.equal(items[i][k], item[k]) for k in ("a", "b", "gt")), i
    assert items[10_000]["a"].shape == (1, 16, 16)  # past len: a valid draw...
    for near in (0, 3, 4):  # ...and a new one, not index % len nor a repeat of another
        assert not torch.equal(items[10_000]["gt"], items[near]["gt"]), near
    assert not torch.equal(items[10]["gt"], items[0]["gt"])
    assert not torch.equal(items[3]["gt"], items[4]["gt"])
    other_seed = SynthesizedPatches(photos, 16, RECIPE, length=10, seed=6)
    assert not torch.equal(items[3]["a"], other_seed[3]["a"])


def test_colour_photos_train_on_luminance_and_small_photos_are_refused() -> None:
    patches = SynthesizedPatches([_photo(0, channels=3)], 16, RECIPE, length=4, seed=0)
    assert patches[0]["gt"].shape == (1, 16, 16)
    red = torch.zeros(3, 60, 70)
    red[0] = 1.0  # pure red: its BT.601 luminance is 0.299, not channel 0 (1) nor the channel mean (1/3)
    gt = SynthesizedPatches([red], 16, RECIPE, length=4, seed=0)[0]["gt"]
    torch.testing.assert_close(gt, torch.full_like(gt, 0.299), atol=1e-4, rtol=0)
    with pytest.raises(DataError, match="smaller than a 16px patch plus its 15px blur margin"):
        SynthesizedPatches([_photo(0, (40, 60))], 16, RECIPE, length=4, seed=0)


def test_every_epoch_draws_new_indices() -> None:
    sampler = FreshDraws(6, seed=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert epochs == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17]]


def _photo_dir(root: Path, count: int) -> Path:
    root.mkdir()
    for i in range(count):
        write_image(root / f"p{i}.png", _photo(i, (48, 56), channels=3))
    return root


def test_photo_pool_reads_folders_and_names_problems(tmp_path: Path) -> None:
    pool = photo_pool(False, [_photo_dir(tmp_path / "mine", 3)])
    assert sorted(pool) == ["p0", "p1", "p2"] and pool["p0"].shape == (3, 48, 56)
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        photo_pool(False, [tmp_path / "missing"])
    with pytest.raises(DataError, match="already in the pool"):
        photo_pool(False, [tmp_path / "mine", tmp_path / "mine"])
    with pytest.raises(DataError, match="pool is empty"):
        photo_pool(False, [])
    for i, mark in enumerate("ABC"):  # one focus sequence of three: a pair set too
        (tmp_path / "mine" / f"p{i}.png").rename(tmp_path / "mine" / f"s0-{mark}.png")
    with pytest.raises(DataError, match=r"photo_dirs: .*mine holds multi-focus pairs \(s0-A.png, s0-B.png, ...\)"):
        photo_pool(False, [tmp_path / "mine"])


def test_a_training_photo_too_small_for_a_patch_is_named(tmp_path: Path) -> None:
    """A thumbnail among the user's photos stopped training with the size alone ("a 40x30 photo")."""
    photos = tmp_path / "mine"
    photos.mkdir()
    for i in range(6):  # 20 px: under a 16 px patch plus its blur margin on each side
        write_image(photos / f"thumb{i}.png", _photo(i, (20, 24), channels=3))
    source = SynthesizedPairs(SMALL, SMALL, patches_per_epoch=8, embedded_photos=False, photo_dirs=[str(photos)], test_fraction=0.5, val_count=1)
    module = FusionDataModule(source, batch_size=2, patch_size=16, seed=0, batches_per_step=3)
    with pytest.raises(DataError, match=r"^photo 'thumb\d' is 24x20, smaller than a 16px patch plus its \d+px blur margin; .*, or take it out of the photos$"):
        module.setup("fit")


def test_synthesized_module_holds_out_disjoint_val_and_test_photos(tmp_path: Path) -> None:
    source = SynthesizedPairs(
        SMALL, SMALL, patches_per_epoch=8, embedded_photos=False, photo_dirs=[str(_photo_dir(tmp_path / "mine", 10))],
        test_fraction=0.4, val_count=2,
    )
    module = FusionDataModule(source, batch_size=2, patch_size=16, seed=0, batches_per_step=3)
    module.setup("fit")
    val = {s.name for s in module.val_scenes}
    test = {s.name for s in module.test_scenes}
    assert len(val) == 2 and len(test) == 2 and not val & test
    batch = next(iter(module.train_dataloader()))
    assert batch["a"].shape == (6, 1, 16, 16)
    for scene in module.test_scenes:  # whole held-out photos in colour, with their ground truth
        assert scene.a.shape == scene.gt.shape == (3, 48, 56)
    too_many = SynthesizedPairs(SMALL, SMALL, patches_per_epoch=8, embedded_photos=False, photo_dirs=source.photo_dirs,
                                test_fraction=0.4, val_count=4)
    with pytest.raises(DataError, match=re.escape("4 held-out photos (of 10) cannot give 4 for validation and some for test; add photos")):
        FusionDataModule(too_many, batch_size=2, patch_size=16).setup("fit")


def test_held_out_pairs_follow_their_own_recipe_and_training_patches_flip_only_when_asked(tmp_path: Path) -> None:
    """Held-out maps drawn with soft = 0 are hard though training draws soft ones; with flips off every training
    patch's GT is an upright crop of a training photo."""
    root = tmp_path / "gray"
    root.mkdir()
    for i in range(10):
        write_image(root / f"p{i}.png", _photo(i, (40, 48)))
    soft, hard = {**SMALL, "soft": [1.0, 2.0]}, {**SMALL, "soft": [0.0, 0.0]}
    source = SynthesizedPairs(soft, hard, patches_per_epoch=8, embedded_photos=False, photo_dirs=[str(root)], test_fraction=0.4,
                              val_count=2, flips=False)
    split, pool = source.split(16, seed=0), source.pool()
    for scene in [*split.val, *split.test]:
        assert set(scene.focus_map.unique().tolist()) == {0.0, 1.0}, scene.name
    held = {scene.name for scene in [*split.val, *split.test]}
    for i in range(8):
        gt = split.train[i]["gt"][0]
        found = [name for name, photo in pool.items() for y, x in (photo[0, :-15, :-15] == gt[0, 0]).nonzero().tolist()
                 if torch.equal(photo[0, y : y + 16, x : x + 16], gt)]  # the crops whose top left pixel is GT's, compared whole
        assert len(found) == 1 and found[0] not in held, i


def test_spread_pairs_carry_a_halo_in_either_source() -> None:
    """spread = 1: a hard-map pair made by defocus_spread has pixels where neither source is GT nor GT's
    blur (the near layer's halo over the far one, which eq. 18-19 pairs never have: see the test
    above), and the coin puts the near layer in focus in A for some draws and in B for others."""
    photo = _photo(size=(40, 40))
    side = 16 + 2 * HARD.margin
    inner = slice(HARD.margin, HARD.margin + 16)
    spread = replace(HARD, spread=1.0)
    halo_in = set()
    for seed in range(12):
        pair = draw_pair(photo[:, :side, :side], 16, spread, torch.Generator().manual_seed(seed), flips=False)
        blurred = gaussian_blur(photo[None, :, :side, :side], float(pair["sigma"]))[0, :, inner, inner]
        plain = {k: ((pair[k] - pair["gt"]).abs() < 1e-6) | ((pair[k] - blurred).abs() < 1e-6) for k in ("a", "b")}
        halo_in |= {k for k, plain_k in plain.items() if (~plain_k).any()}
        assert not ((~plain["a"]) & (~plain["b"])).all()  # the halo is a band, not the whole patch
    assert halo_in == {"a", "b"}
    with pytest.raises(ValueError, match="spread must be a share"):
        DefocusRecipe(sigma=(1, 2), soft=(0, 1), fraction=(0.2, 0.8), blob_size=(8, 16), spread=-0.1)


def test_a_spread_share_makes_that_share_of_the_pairs_by_defocus_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """spread = 0.25: of 400 pairs about a quarter come from defocus_spread (binomial sd 8.7 pairs: 100 +- 35
    is over 4 sd), the rest by eq. 18-19."""
    spread_calls = []
    original = synthesis.defocus_spread
    monkeypatch.setattr(synthesis, "defocus_spread", lambda *args: spread_calls.append(1) or original(*args))
    quarter = replace(HARD, spread=0.25)
    generator, photo = torch.Generator().manual_seed(0), _photo(size=(40, 40))
    for _ in range(400):
        draw_pair(photo, 8, quarter, generator, flips=False)
    assert 65 <= len(spread_calls) <= 135


def test_spread_zero_draws_no_coin_so_older_recipes_keep_their_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """As for disk: any share above 0 draws one number to choose the pair's recipe, a share of 0 none."""
    draws = []
    rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: draws.append(1) or rand(*args, **kwargs))
    counts = []
    for share in (0.0, 1e-9):  # 1e-9: the coin is drawn, and (almost surely) says eq. 18-19 as 0 does
        recipe = replace(HARD, spread=share)
        draws.clear()
        draw_pair(_photo(size=(40, 40)), 8, recipe, torch.Generator().manual_seed(0), flips=False)
        counts.append(len(draws))
    assert counts[1] == counts[0] + 1
