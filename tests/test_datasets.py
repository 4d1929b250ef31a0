"""Folder readers and the patch / whole-image datasets, on the shared Lytro and grayscale sets and on generated images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gipc.color import split_luma
from gipc.data import datasets
from gipc.data.datasets import PairFolder, PatchDataset, SequenceFolder, SynthesizedPatches, WholeImageDataset
from gipc.data.scene import Scene
from gipc.data.synthesis import DefocusRecipe, synthesize_pair
from gipc.errors import DataError, ImageError
from gipc.imaging import read_matching, write_image


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _scene(name: str, height: int, width: int, seed: int = 0, channels: int = 3) -> Scene:
    gt = _rand(channels, height, width, seed=seed)
    a, b = synthesize_pair(gt[None], (_rand(1, 1, height, width, seed=seed + 1) > 0.5).float(), sigma=1.0)
    return Scene(name, a[0], b[0], gt)


def _write_folder(root: Path, scenes: list[Scene]) -> None:
    for scene in scenes:
        for sub, pixels in (("A", scene.a), ("B", scene.b), ("GT", scene.gt)):
            write_image(root / sub / f"{scene.name}.png", pixels)


def test_lytro_pairs_read_lazily_without_gt(lytro_pairs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    monkeypatch.setattr(datasets, "read_matching", lambda paths: reads.append(paths) or read_matching(paths))
    folder = PairFolder(lytro_pairs)
    assert len(folder) == 20 and not folder.has_gt and not reads  # listing reads no image
    assert folder.entries[0][0] == "lytro-01"
    scene = folder[19]
    assert [[p.name for p in paths] for paths in reads] == [["lytro-20-A.jpg", "lytro-20-B.jpg"]]  # only the pair asked for
    assert scene.name == "lytro-20" and scene.a.shape == scene.b.shape == (3, 520, 520) and scene.gt is None
    item = WholeImageDataset(folder)[0]
    assert set(item) == {"a", "b", "name"} and item["name"] == "lytro-01"


def test_lytro_triples_are_sequences_not_pairs(lytro_triple: Path) -> None:
    sequences = SequenceFolder(lytro_triple)
    assert len(sequences) == 4
    name, images = sequences[0]
    assert name == "lytro-01" and len(images) == 3
    assert [im.path.name for im in images] == ["lytro-01-A.jpg", "lytro-01-B.jpg", "lytro-01-C.jpg"]
    with pytest.raises(DataError, match="3 sources, and pair metrics take two"):
        PairFolder(lytro_triple)


def test_grayscale_pairs_keep_one_channel_and_their_sizes(grayscale_pairs: Path) -> None:
    folder = PairFolder(grayscale_pairs)
    assert len(folder) == 10
    shapes = {folder.entries[i][0]: folder[i].a.shape for i in range(len(folder))}
    assert shapes["g05"] == (1, 176, 268) and shapes["g10"] == (1, 160, 160)
    assert all(s[0] == 1 for s in shapes.values())
    assert WholeImageDataset(folder)[4]["b"].shape == (1, 176, 268)


def test_paired_subfolders_with_gt(tmp_path: Path) -> None:
    scenes = [_scene("s1", 20, 24), _scene("s0", 20, 24, seed=5)]
    _write_folder(tmp_path, scenes)
    folder = PairFolder(tmp_path)
    assert [e[0] for e in folder.entries] == ["s0", "s1"] and folder.has_gt
    torch.testing.assert_close(folder[1].gt, scenes[0].gt, atol=0.5 / 255, rtol=0)
    assert set(WholeImageDataset(folder)[0]) == {"a", "b", "gt", "name"}


def test_gt_must_name_the_scenes_of_the_sources(tmp_path: Path) -> None:
    """Grouping errors are gipc.data.sources' (tests/test_sources.py); GT/ is PairFolder's own."""
    for name in ["A/x.png", "B/x.png", "GT/y.png"]:
        write_image(tmp_path / name, torch.zeros(1, 4, 4))
    with pytest.raises(DataError, match=r"GT and the sources name different scenes \(x, y\); every folder needs the same names"):
        PairFolder(tmp_path)


def test_missing_folder_and_size_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        PairFolder(tmp_path / "nope")
    write_image(tmp_path / "x-A.png", torch.zeros(3, 8, 8))
    write_image(tmp_path / "x-B.png", torch.zeros(3, 8, 9))
    with pytest.raises(ImageError, match="x-B.png is 9x8 but .*x-A.png is 8x8"):
        PairFolder(tmp_path)[0]


def test_a_true_map_is_read_gray_and_must_have_the_sources_size(tmp_path: Path) -> None:
    for name in ("A/x.png", "B/x.png", "A/y.png", "B/y.png"):
        write_image(tmp_path / name, torch.zeros(3, 8, 8))
    write_image(tmp_path / "maps" / "x.png", torch.ones(3, 8, 8))  # a white colour mask: A in focus everywhere
    write_image(tmp_path / "maps" / "y.png", torch.ones(1, 8, 9))
    folder = PairFolder(tmp_path)
    assert torch.equal(folder[0].focus_map, torch.ones(1, 8, 8))
    with pytest.raises(DataError, match=r"maps/y\.png: the decision map's size differs from the sources' \(8, 8\)"):
        folder[1]


@pytest.mark.parametrize(("height", "width", "patch", "stride"), [(64, 64, 32, 32), (70, 95, 32, 7), (33, 48, 32, 1), (32, 48, 32, 8)])
def test_grid_length_is_the_closed_form(height: int, width: int, patch: int, stride: int) -> None:
    scenes = [_scene("a", height, width), _scene("b", width, height, seed=2)]
    expected = 2 * ((height - patch) // stride + 1) * ((width - patch) // stride + 1)
    assert len(PatchDataset(scenes, patch, stride)) == expected
    assert PatchDataset.grid_count(height, width, patch, stride) * 2 == expected


def test_patches_are_aligned_crops_of_the_luminance() -> None:
    """16 px patches every 5 px: the 40x52 image has tops 0..20 (5 rows) x lefts 0..35 (8 columns) = 40
    patches, row by row; the 36x36 one 5 x 5 = 25 from index 40 on."""
    scenes = [_scene("rgb", 40, 52), _scene("gray", 36, 36, seed=3, channels=1)]
    dataset = PatchDataset(scenes, 16, stride=5)
    assert len(dataset) == 65
    by_hand = {0: (0, 0, 0), 7: (0, 0, 35), 8: (0, 5, 0), 32: (0, 20, 0), 39: (0, 20, 35), 40: (1, 0, 0), 46: (1, 5, 5), 64: (1, 20, 20), -1: (1, 20, 20)}
    for index, (image, top, left) in by_hand.items():
        assert dataset.locate(index) == (image, top, left), index
        scene = scenes[image]
        item = dataset[index]
        for key, full in (("a", scene.a), ("b", scene.b), ("gt", scene.gt)):
            luma = split_luma(full[None])[0][0] if full.shape[0] == 3 else full
            torch.testing.assert_close(item[key], luma[:, top : top + 16, left : left + 16])


def test_a_equals_gt_everywhere_when_the_map_is_all_focus() -> None:
    gt = _rand(3, 48, 48, seed=4)
    a, b = synthesize_pair(gt[None], torch.ones(1, 1, 48, 48), sigma=2.0)
    dataset = PatchDataset([Scene("s", a[0], b[0], gt)], 16, stride=None, count=50, seed=1)
    for i in range(len(dataset)):
        item = dataset[i]
        torch.testing.assert_close(item["a"], item["gt"])
        assert not torch.allclose(item["b"], item["gt"], atol=1e-3)


def test_random_crops_are_seeded_and_cover_the_images() -> None:
    scenes = [_scene("a", 40, 40), _scene("b", 64, 30, seed=2)]
    first = PatchDataset(scenes, 16, stride=None, count=400, seed=3)
    again = PatchDataset(scenes, 16, stride=None, count=400, seed=3)
    spots = [first.locate(i) for i in range(len(first))]
    assert spots == [again.locate(i) for i in range(len(again))]
    assert spots != [PatchDataset(scenes, 16, count=400, seed=4).locate(i) for i in range(400)]
    assert {s[0] for s in spots} == {0, 1}
    assert all(0 <= top <= scenes[i].a.shape[1] - 16 and 0 <= left <= scenes[i].a.shape[2] - 16 for i, top, left in spots)
    assert len(set(spots)) > 300  # drawn over every pixel position, not a coarse grid
    edge = PatchDataset([_scene("e", 16, 18)], 16, count=30, seed=0)
    assert {edge.locate(i) for i in range(30)} == {(0, 0, 0), (0, 0, 1), (0, 0, 2)}  # the last position too
    assert len(PatchDataset(scenes, 16)) == 13 * 13 + 25 * 8  # default: as many as a stride-2 (16 / 8) grid


def test_grid_subset_is_a_seeded_subset_of_the_grid() -> None:
    scenes = [_scene("a", 64, 64)]
    full = {PatchDataset(scenes, 16, 4).locate(i) for i in range(169)}
    subset = PatchDataset(scenes, 16, 4, count=20, seed=2)
    spots = [subset.locate(i) for i in range(len(subset))]
    assert len(subset) == 20 and len(set(spots)) == 20 and set(spots) <= full


def test_flips_move_a_b_and_gt_together_in_all_four_orientations() -> None:
    gt = _rand(1, 64, 64, seed=6)
    dataset = PatchDataset([Scene("s", gt, 1 - gt, gt)], 16, stride=16, flips=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        for i in range(len(dataset)):
            item = dataset[i]
            _, top, left = dataset.locate(i)
            crop = gt[:, top : top + 16, left : left + 16]
            (dims,) = [d for d in ((), (1,), (2,), (1, 2)) if torch.equal(item["a"], crop.flip(d) if d else crop)]
            torch.testing.assert_close(item["b"], 1 - item["a"])
            assert torch.equal(item["gt"], item["a"])
            seen.add(dims)
    assert seen == {(), (1,), (2,), (1, 2)}  # as is, upside down, mirrored, both


def test_paper_scale_grid_indexes_without_materialising_patches() -> None:
    """Section 4.1: 184,885 patches of 80x80 from 90 images. Here 89 images give 45x45 grid
    positions each (124x124, stride 1) and one 99x312 image gives 20x233: 89*2025 + 4660."""
    scenes = [Scene(f"im{i}", *(torch.zeros(1, 124, 124),) * 3) for i in range(89)]
    scenes.append(Scene("last", *(torch.zeros(1, 99, 312),) * 3))
    dataset = PatchDataset(scenes, 80, stride=1)
    assert len(dataset) == 184_885
    image_bytes = sum(3 * s.a.numel() * 4 for s in scenes)
    assert dataset.nbytes == image_bytes and dataset.positions is None
    assert dataset.locate(184_884) == (89, 19, 232)
    item = dataset[184_884]
    assert item["a"].shape == (1, 80, 80)
    assert item["a"].untyped_storage().data_ptr() == dataset.images[89].untyped_storage().data_ptr()  # a view
    with pytest.raises(IndexError):
        dataset[184_885]


def test_synthesized_patches_pick_photos_in_proportion_to_their_area(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every region of the pool equally likely: a photo of three times the area gives three in four draws."""
    monkeypatch.setattr(datasets, "draw_pair", lambda photo, *args: {"a": photo, "b": photo, "gt": photo})  # the photo drawn
    recipe = DefocusRecipe(sigma=(1.0, 2.0), soft=(0.0, 0.0), fraction=(0.3, 0.7), blob_size=(8, 16))
    patches = SynthesizedPatches([torch.zeros(1, 40, 120), torch.zeros(1, 40, 40)], 16, recipe, length=1000, seed=0)
    small = sum(patches[i]["gt"].shape[-1] == 40 for i in range(len(patches)))
    assert 200 < small < 300  # 250 expected, sd 14


def test_patch_dataset_errors() -> None:
    with pytest.raises(DataError, match="smaller than the 32px patches"):
        PatchDataset([_scene("tiny", 20, 40)], 32)
    with pytest.raises(DataError, match="no ground truth"):
        PatchDataset([Scene("real", torch.zeros(3, 40, 40), torch.zeros(3, 40, 40))], 16)
    with pytest.raises(DataError, match="no training images"):
        PatchDataset([], 16)
