"""The MFI-DRC builder: equations 18-19 on disk, byte-identical rebuilds, splits, refusal to clobber."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from gipc.data.build import build_dataset
from gipc.cli.build_data import main
from gipc.data.datamodule import FusionDataModule
from gipc.data.pair_sets import FolderPairs
from gipc.errors import DataError, OutputExistsError
from gipc.imaging import read_image, write_image

SIGMA = 1.5


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, Path]:
    """Six random 8-bit photos (one gray) and a known mask per photo: left 20 columns in focus."""
    source, masks = tmp_path / "photos", tmp_path / "masks"
    for i in range(6):
        channels = 1 if i == 5 else 3
        image = torch.rand(channels, 32, 40, generator=torch.Generator().manual_seed(i))
        write_image(source / f"p{i}.png", image)
        mask = torch.zeros(1, 32, 40)
        mask[..., :20] = 1.0
        write_image(masks / f"p{i}.png", mask)
    return source, masks


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_known_map_gives_image_where_focused_and_blur_elsewhere(photos, tmp_path: Path) -> None:
    source, masks = photos
    manifest = build_dataset(tmp_path / "out", source, maps="file", mask_dir=masks, sigma=SIGMA, seed=0)
    entry = manifest["images"][0]
    split = entry["split"]
    out = tmp_path / "out" / split
    truth = read_image(source / "p0.png").pixels
    a = read_image(out / "A" / "p0.png").pixels
    b = read_image(out / "B" / "p0.png").pixels
    assert torch.equal(read_image(out / "GT" / "p0.png").pixels, truth)
    assert torch.equal(a[..., :20], truth[..., :20]) and torch.equal(b[..., 20:], truth[..., 20:])
    # independent blur: scipy, mirror borders, +-3 sigma support
    blurred = torch.from_numpy(
        np.stack([ndimage.gaussian_filter(c.double().numpy(), SIGMA, mode="mirror", truncate=3.0) for c in truth])
    ).float()
    torch.testing.assert_close(a[..., 20:], blurred[..., 20:], atol=0.5 / 255 + 1e-5, rtol=0)
    torch.testing.assert_close(b[..., :20], blurred[..., :20], atol=0.5 / 255 + 1e-5, rtol=0)
    assert entry["map_source"] == "file" and entry["map_file"] == "p0.png" and entry["foreground_fraction"] == 0.5


def test_16bit_photos_build_16bit_pairs_level_for_level_and_8bit_maps(tmp_path: Path) -> None:
    """A gray and an RGB 16-bit photo: GT keeps every level, A the photo's levels where its map is 1, B where it is 0."""
    source = tmp_path / "photos"
    photos = {f"p{c}": torch.randint(0, 65536, (c, 32, 40), generator=torch.Generator().manual_seed(c)) for c in (1, 3)}
    for name, levels in photos.items():
        write_image(source / f"{name}.png", levels / 65535, bit_depth=16)
    manifest = build_dataset(tmp_path / "out", source, maps="blobs", sigma=SIGMA)
    assert sorted(entry["name"] for entry in manifest["images"]) == sorted(photos)
    for entry in manifest["images"]:
        out, levels = tmp_path / "out" / entry["split"], photos[entry["name"]]
        read = {sub: read_image(out / sub / f"{entry['name']}.png") for sub in ("A", "B", "GT", "maps")}
        assert entry["bit_depth"] == 16 and [image.bit_depth for image in read.values()] == [16, 16, 16, 8]
        a, b, gt = ((read[sub].pixels.double() * 65535).round().long() for sub in ("A", "B", "GT"))
        focus = read["maps"].pixels[0] == 1
        assert 0 < focus.float().mean() < 1
        assert torch.equal(gt, levels) and torch.equal(a[:, focus], levels[:, focus]) and torch.equal(b[:, ~focus], levels[:, ~focus])


def test_same_command_rebuilds_the_same_bytes(photos, tmp_path: Path) -> None:
    source, _ = photos
    options = dict(maps="blobs", sigma=SIGMA, soft=1.0, seed=3)
    manifest = build_dataset(tmp_path / "one", source, **options)
    build_dataset(tmp_path / "two", source, **options)
    first = _digests(tmp_path / "one")
    assert first == _digests(tmp_path / "two")
    listed = {f: d for image in manifest["images"] for f, d in image["files"].items()}
    assert listed == {k: v for k, v in first.items() if k != "manifest.json"}
    assert len(listed) == 6 * 4
    stored = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert (stored["seed"], stored["sigma"], stored["soft"], stored["kernel_size"]) == (3, SIGMA, 1.0, 11)
    build_dataset(tmp_path / "three", source, **{**options, "seed": 4})
    assert _digests(tmp_path / "three") != first


def test_a_folder_build_records_the_map_source_it_used(photos, tmp_path: Path) -> None:
    source, _ = photos
    manifest = build_dataset(tmp_path / "out", source, sigma=SIGMA)  # no maps given: the folder default
    assert manifest["maps"] == "region_competition"
    assert {image["map_source"] for image in manifest["images"]} == {"region_competition"}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["maps"] == "region_competition"


def test_splits_do_not_overlap_and_train_on_the_build(photos, tmp_path: Path) -> None:
    source, _ = photos
    manifest = build_dataset(tmp_path / "out", source, maps="blobs", test_fraction=0.34, seed=1)
    names = {split: {p.stem for p in (tmp_path / "out" / split / "GT").iterdir()} for split in ("train", "test")}
    assert len(names["train"]) == 4 and len(names["test"]) == 2 and names["train"].isdisjoint(names["test"])
    assert manifest["counts"] == {"train": 4, "test": 2}
    assert {i["name"] for i in manifest["images"] if i["split"] == "test"} == names["test"]
    module = FusionDataModule(FolderPairs(root=str(tmp_path / "out"), stride=8), batch_size=2, patch_size=16)
    module.setup("fit")
    assert len(module.train_set) == 4 * (3 * 4)  # 32x40 with 16px patches every 8 px
    assert sorted(b["name"][0] for b in module.test_dataloader()) == sorted(names["test"])
    shutil.rmtree(tmp_path / "out" / "test" / "GT")
    with pytest.raises(DataError, match=r"test has no GT/ folder; a built data set needs ground truth$"):
        FolderPairs(root=str(tmp_path / "out")).split(16, seed=0)


def test_non_empty_out_is_refused_and_left_alone(photos, tmp_path: Path) -> None:
    source, _ = photos
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="is not empty; choose a new folder or pass --overwrite"):
        build_dataset(out, source, maps="blobs")
    with pytest.raises(OutputExistsError, match="not a gipc-build-data output"):
        build_dataset(out, source, maps="blobs", overwrite=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "out", "photos"]  # no temp folders


def test_overwrite_replaces_an_earlier_build(photos, tmp_path: Path) -> None:
    source, _ = photos
    build_dataset(tmp_path / "out", source, maps="blobs", seed=1)
    build_dataset(tmp_path / "out", source, maps="blobs", seed=2, overwrite=True)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "out", "photos"]


def test_a_failure_midway_leaves_nothing(photos, tmp_path: Path) -> None:
    source, masks = photos
    write_image(masks / "p3.png", torch.zeros(1, 31, 40), overwrite=True)  # wrong size: fails on the 4th photo
    with pytest.raises(DataError, match="resize the mask"):
        build_dataset(tmp_path / "out", source, maps="file", mask_dir=masks)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "photos"]


@pytest.mark.parametrize("maps, refusal", [
    ("file", "p3.png is .*resize the mask"),
    ("disparity", r"depth map \(\d+, \d+\) does not match image \(\d+, \d+\)"),  # the mask read as a depth image
], ids=["file", "disparity"])
def test_max_side_scales_a_mask_of_the_photo_size_and_refuses_another(photos, tmp_path: Path, maps: str, refusal: str) -> None:
    source, masks = photos  # 32 x 40 photos and masks
    near = torch.zeros(1, 32, 40)
    near[..., :12] = 1.0  # 30 % of the frame: a depth cut at the median lies in the far part, not at the boundary
    write_image(masks / "p0.png", near, overwrite=True)
    build_dataset(tmp_path / "ok", source, maps=maps, mask_dir=masks, max_side=20)
    halved = torch.zeros(1, 16, 20)
    halved[..., :6] = 1.0  # the left 6 columns exactly: no mask column half in focus, no depth invented between near and far
    assert torch.equal(read_image(tmp_path / "ok" / "train" / "maps" / "p0.png").pixels, halved)
    write_image(masks / "p3.png", torch.zeros(1, 40, 32), overwrite=True)  # another image's mask, turned
    for max_side in (20, 64):  # downscaled, or a max side the photos are already under
        with pytest.raises(DataError, match=refusal):
            build_dataset(tmp_path / f"out{max_side}", source, maps=maps, mask_dir=masks, max_side=max_side)


def test_input_errors(photos, tmp_path: Path) -> None:
    source, masks = photos
    with pytest.raises(DataError, match="needs --mask-dir"):
        build_dataset(tmp_path / "out", source, maps="file")
    (masks / "p2.png").unlink()
    with pytest.raises(DataError, match="none for p2"):
        build_dataset(tmp_path / "out", source, maps="file", mask_dir=masks)
    with pytest.raises(OutputExistsError, match="holds the input .*photos; choose a folder outside the inputs"):
        build_dataset(tmp_path, source, maps="blobs")
    with pytest.raises(DataError, match="does not exist"):
        build_dataset(tmp_path / "out", tmp_path / "nope")


def test_a_pair_set_is_refused_as_photos_and_photos_named_like_a_camera_are_not(photos, tmp_path: Path, capsys) -> None:
    source, _ = photos
    pairs, camera = tmp_path / "pairs", tmp_path / "camera"
    pairs.mkdir(), camera.mkdir()
    for stem in ("g01-A", "g01-B", "g02-A", "g02-B"):
        shutil.copy(source / "p0.png", pairs / f"{stem}.png")
    assert main(["--source", str(pairs), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds multi-focus pairs (g01-A.png, g01-B.png, ...), not all-in-focus photos" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    # photos that only look paired in part, or by digits as a camera numbers them, are photos
    (pairs / "g02-B.png").rename(pairs / "g02.png")
    for stem in ("IMG_1", "IMG_2", "IMG_3"):
        shutil.copy(source / "p0.png", camera / f"{stem}.png")
    for folder in (pairs, camera):
        assert build_dataset(tmp_path / f"set-{folder.name}", folder, maps="blobs")["counts"]["train"] >= 2


def test_command_line_embedded_and_one_line_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    main(["--embedded", "--out", str(out), "--maps", "blobs", "--max-side", "48", "--seed", "2"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 13, "test": 4} and manifest["max_side"] == 48
    assert all(max(i["size"]) == 48 for i in manifest["images"])
    capsys.readouterr()
    assert main(["--embedded", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gipc-build-data: error: output folder") and "\n" not in err


def test_unusable_inputs_are_one_line_before_the_build_starts(photos, tmp_path: Path, capsys) -> None:
    source, masks = photos
    (source / "notes.png").write_text("not an image")
    cases = [
        ([], "notes.png: not an image"),
        (["--maps", "disparity"], "--maps disparity needs --mask-dir with one depth image per photo"),
        (["--maps", "blobs", "--mask-dir", str(masks)], "--mask-dir is only used by --maps file or --maps disparity, not blobs"),
        (["--mask-dir", str(masks)], "--mask-dir is only used by --maps file or --maps disparity, not region_competition"),
        (["--sigma", "0"], "--sigma must be > 0 and --soft >= 0 (got 0.0, 0.0)"),
        (["--sigma", "1.5", "--soft", "-1"], "--sigma must be > 0 and --soft >= 0 (got 1.5, -1.0)"),
        (["--max-side", "15"], "--max-side must be >= 16, got 15"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main(["--source", str(source), "--out", str(tmp_path / "out"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gipc-build-data: error: ") and err.count("\n") == 1 and message in err, err  # no progress bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "photos"]


def test_a_mask_that_is_no_image_is_one_line_before_the_build_starts(photos, tmp_path: Path, capsys) -> None:
    source, masks = photos
    (masks / "p3.png").write_text("not an image")
    assert main(["--source", str(source), "--out", str(tmp_path / "out"), "--maps", "file", "--mask-dir", str(masks)]) == 2
    assert capsys.readouterr().err == f"gipc-build-data: error: {masks / 'p3.png'}: not an image, or a corrupt one\n"  # no progress bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "photos"]


@pytest.mark.parametrize(("size", "extra", "message"), [
    ((40, 6), [], "40x6 is too small for --sigma 2, whose 13 px blur needs a shorter side over 6 px"),  # 2 * ceil(3 * 2) + 1 = 13
    ((400, 20), ["--max-side", "64"], "64x3 (after --max-side 64) is too small for --sigma 2, whose 13 px blur needs a shorter side over 6 px"),
    ((40, 5), ["--sigma", "1.5"], "40x5 is too small for --sigma 1.5, whose 11 px blur needs a shorter side over 5 px"),
], ids=["photo", "after-max-side", "sigma"])
def test_a_photo_too_small_to_blur_is_one_line_before_the_build_starts(
    photos, tmp_path: Path, capsys, size: tuple[int, int], extra: list[str], message: str
) -> None:
    source, _ = photos
    width, height = size
    write_image(source / "p9.png", torch.rand(3, height, width))
    assert main(["--source", str(source), "--out", str(tmp_path / "out"), "--maps", "blobs", *extra]) == 2
    assert capsys.readouterr().err == f"gipc-build-data: error: {source / 'p9.png'}: {message}; use a smaller --sigma or a larger photo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "photos"]


def test_embedded_with_masks_named_after_none_of_its_photos_is_refused(photos, tmp_path: Path, capsys) -> None:
    _, masks = photos  # p0.png ... : no embedded photo has those names, so the build would use none
    assert main(["--embedded", "--out", str(tmp_path / "out"), "--maps", "file", "--mask-dir", str(masks)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--mask-dir {masks} has no file named after an embedded photo (astronaut, " in err, err
    assert not (tmp_path / "out").exists()


def test_an_error_midway_is_its_own_line_after_the_progress_bar(photos, tmp_path: Path, capsys) -> None:
    source, masks = photos
    write_image(masks / "p3.png", torch.zeros(1, 31, 40), overwrite=True)  # wrong size: fails on the 4th photo
    assert main(["--source", str(source), "--out", str(tmp_path / "out"), "--maps", "file", "--mask-dir", str(masks)]) == 2
    last = capsys.readouterr().err.rstrip("\n").split("\n")[-1]
    assert last.startswith("gipc-build-data: error: mask ") and "p3.png" in last


def _killed_at_the_third_image(source: Path, out: Path, signal_name: str) -> subprocess.CompletedProcess:
    """gipc-build-data in a child process that sends itself ``signal_name`` as it writes its 3rd image,
    as `kill`, `timeout` or `kill -9` would."""
    script = (
        "import os, signal, sys\n"
        "import gipc.data.build as build\n"
        "from gipc.cli.build_data import main\n"
        "write, calls = build._write_scene, []\n"
        "def killed(*args):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 3:\n"
        f"        os.kill(os.getpid(), signal.{signal_name})\n"
        "    return write(*args)\n"
        "build._write_scene = killed\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, "--source", str(source), "--out", str(out), "--maps", "blobs"],
        capture_output=True, text=True, timeout=120,
    )


def test_sigterm_midway_leaves_nothing(photos, tmp_path: Path) -> None:
    source, _ = photos
    done = _killed_at_the_third_image(source, tmp_path / "out", "SIGTERM")
    assert done.returncode == 143 and "interrupted; nothing written" in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "photos"]  # no hidden half-built folder


def test_the_folder_a_sigkill_leaves_goes_with_the_next_build(photos, tmp_path: Path, monkeypatch) -> None:
    source, _ = photos
    done = _killed_at_the_third_image(source, tmp_path / "out", "SIGKILL")  # nothing of it can clean up
    assert done.returncode == -9
    (left,) = tmp_path.glob(".out.staging-*")
    assert len(list(left.rglob("*.png"))) == 8  # two scenes of four images each, written before the kill
    monkeypatch.setattr("gipc.files.SETTLE_S", 0.0)  # the leftover may be younger than the 2 s a writer has to lock it
    build_dataset(tmp_path / "out", source, maps="blobs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "out", "photos"]
