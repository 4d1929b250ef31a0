"""The fuse command: checkpoints, source grouping, outputs, bad input, Ctrl-C, tiling and memory."""

from __future__ import annotations

import errno
import io
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageFilter

import gipc
import gipc.align
import gipc.cli.common
import gipc.cli.fuse
import gipc.inference
from gipc.baselines import BASELINES
from gipc.color import fuse_color
from gipc.configs import conf_group
from gipc.errors import CheckpointError, UserError
from gipc.fuse import RECORD, fuse_images
from gipc.cli.evaluate import main as eval_main
from gipc.cli.fuse import main
from gipc.imaging import read_image, write_image
from gipc.inference import choose_path, prepare
from gipc.pretrained import load_generator

from helpers import fuser_by_hand, icc_profiles, paper_generator, random_eval_generator, recorded_bars, save_lightning_ckpt

PEAK_KIB = """
def peak_kib():  # VmHWM: unlike ru_maxrss, which a child inherits from its parent across exec (pytest's own peak)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
"""

MEMORY_PROBE = PEAK_KIB + """
import sys, torch
from gipc.configs import conf_group
from gipc.fuse import fuse_images
from gipc.inference import choose_path, network_fuser
from gipc.tiling import auto_tiling
from gipc.models.generator import Generator

height, width, tile, overlap = (int(v) for v in sys.argv[1:])
gen = Generator(**conf_group("model")["generator"]).eval()
a, b = torch.rand(3, height, width), torch.rand(3, height, width)
fuse_y = auto_tiling(network_fuser(gen), tile if tile >= 0 else None, overlap)
fuse_images(fuse_y, [a[:, :16, :16], b[:, :16, :16]])  # warm up the conv kernels' workspaces
before = peak_kib()
with torch.inference_mode():
    fuse_images(fuse_y, [a, b])
print(before, peak_kib())  # KiB
"""

STACK_PROBE = PEAK_KIB + """
import sys, kornia, torch
from gipc.fusion import Fusion, default_rule

count, side = int(sys.argv[1]), int(sys.argv[2])
sharp = kornia.filters.box_blur(torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(0)), 3)
blurred = kornia.filters.gaussian_blur2d(sharp, (13, 13), (2.0, 2.0))
band = torch.arange(side) * count // side  # frame k is sharp in the k-th of count vertical bands
frames = [(torch.where(band == k, sharp, blurred) * 255).round().byte() for k in range(count)]  # as gipc-fuse holds them
del sharp, blurred, band
fusion = Fusion(torch.maximum, "map", default_rule()[1])
fusion([frame[..., :64, :64] for frame in frames])  # warm up
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak from here on
before = peak_kib()
with torch.inference_mode():
    fusion(frames)
print(before, peak_kib())  # KiB
"""


def _peak_growth_mib(script: str, *runs: tuple[str, ...]) -> list[float]:
    """Each run's peak RSS growth (MiB) under ``script``, two processes at once (each reads its own peak);
    glibc's mmap threshold fixed, so that freed large buffers leave the process and the peak is what was live."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    probes = [subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, env=env) for args in runs]
    growth = []
    for probe in probes:
        out, _ = probe.communicate(timeout=300)
        assert probe.returncode == 0
        before_kib, after_kib = map(int, out.split())
        growth.append((after_kib - before_kib) / 1024)
    return growth


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return save_lightning_ckpt(tmp_path / "gen.ckpt", random_eval_generator())


def _gray(path: Path, array: np.ndarray) -> Path:
    PILImage.fromarray(array).save(path)
    return path


def _three_pairs(tmp_path: Path, seed: int) -> Path:
    """A folder of three random 8x10 gray pairs p1..p3."""
    rng = np.random.default_rng(seed)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for stem in ("p1", "p2", "p3"):
        for letter in "AB":
            _gray(pairs / f"{stem}-{letter}.png", rng.integers(0, 256, (8, 10)).astype(np.uint8))
    return pairs


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line; the line before it, if any, may only be the header naming the rule or method."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(lines) and len(lines) <= 2
    if len(lines) == 2:
        assert lines[0].startswith(("gipc-fuse: rule ", "gipc-fuse: method "))
    return lines[-1]


# --- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_the_same_generator_in_eval_mode(tmp_path: Path) -> None:
    gen = random_eval_generator(seed=3, width=8)
    loaded = load_generator(save_lightning_ckpt(tmp_path / "g.ckpt", gen, {"width": 8}))
    assert not loaded.training
    assert loaded.enc_a[0][0].out_channels == 8
    for (name, ours), theirs in zip(gen.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(ours, theirs), name


def _truncated(path: Path) -> None:
    whole = save_lightning_ckpt(path.with_name("whole.ckpt"), random_eval_generator()).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("name, make, message", [
    ("nope.ckpt", lambda path: None, r"nope\.ckpt: no such checkpoint file"),
    ("run", lambda path: save_lightning_ckpt(_mkdir(path / "checkpoints") / "last.ckpt", random_eval_generator()),
     r"run: is a folder, not a checkpoint file; give a checkpoint file, .*run/checkpoints/last\.ckpt or the one gipc-select picks$"),
    ("checkpoints", lambda path: save_lightning_ckpt(_mkdir(path) / "last.ckpt", random_eval_generator()),
     r"checkpoints: is a folder, not a checkpoint file; give a checkpoint file, .*checkpoints/last\.ckpt or the one gipc-select picks$"),
    ("photos", _mkdir, r"photos: is a folder, not a checkpoint file; give a checkpoint file$"),
    ("junk.ckpt", lambda path: path.write_bytes(os.urandom(2000)), r"junk\.ckpt: not a readable PyTorch checkpoint"),
    ("cut.ckpt", _truncated, r"cut\.ckpt: not a readable PyTorch checkpoint"),
    ("linear.ckpt", lambda path: torch.save({"state_dict": torch.nn.Linear(4, 2).state_dict()}, path),
     r"linear\.ckpt: holds no generator weights"),
    ("bare.pt", lambda path: torch.save(torch.nn.Linear(4, 2).state_dict(), path),
     r"bare\.pt: not a Lightning checkpoint \(no state_dict\)"),
    # width 8 weights under hyper-parameters that claim the default width 16
    ("w8.ckpt", lambda path: save_lightning_ckpt(path, paper_generator(width=8)),
     r"do not fit Generator\(\{\}\): 0 missing, 0 unexpected, \d+ of another shape"),
    ("new.ckpt", lambda path: save_lightning_ckpt(path, paper_generator(), {"heads": 4}),
     r"generator settings \{'heads': 4\} do not fit this version"),
], ids=["missing", "run-dir", "checkpoints-dir", "other-dir", "random-bytes", "truncated", "another-model", "bare-state-dict", "another-shape", "unknown-settings"])
def test_bad_checkpoints_are_refused_with_the_reason(tmp_path: Path, name: str, make, message: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(CheckpointError, match=message):
        load_generator(path)


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], grayscale_pairs: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    code = main(["--ckpt", str(junk), str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png"), "--out", str(out)])
    assert code == 2 and not out.exists()
    assert _error_line(capsys) == f"gipc-fuse: error: {junk}: not a readable PyTorch checkpoint (UnpicklingError)"


# --- grouping sources (the grouping itself: test_sources.py) -----------------------------------


def test_cli_empty_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    assert main(["--method", "average", "--pairs", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 2
    assert "no images found" in _error_line(capsys)


# --- outputs and bad input through the command ---------------------------------------------------


def test_baseline_on_a_gray_pair_writes_their_mean(tmp_path: Path, grayscale_pairs: Path) -> None:
    a, b = grayscale_pairs / "g09-A.png", grayscale_pairs / "g09-B.png"
    assert main(["--method", "average", str(a), str(b), "-o", str(tmp_path / "out")]) == 0  # -o: --out's short form
    out = np.asarray(PILImage.open(tmp_path / "out" / "g09-fused.png"))
    expected = (np.asarray(PILImage.open(a), float) + np.asarray(PILImage.open(b), float)) / 2
    assert out.dtype == np.uint8 and out.shape == expected.shape == (234, 322)
    assert np.abs(out - expected).max() <= 0.5


@pytest.mark.parametrize("fmt", ["jpg", "tif", "jpeg", "tiff"])
def test_a_folders_outputs_take_the_format_asked_for(tmp_path: Path, grayscale_pairs: Path, fmt: str) -> None:
    """A photographer's folder of JPEG stacks may want JPEGs back: --format names the outputs'
    format; the same pixels as the PNG (to JPEG's loss)."""
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name in ("g09-A.png", "g09-B.png", "g10-A.png", "g10-B.png"):
        (pairs / name).write_bytes((grayscale_pairs / name).read_bytes())
    assert main(["--method", "average", "--pairs", str(pairs), "--out", str(tmp_path / "png")]) == 0
    assert main(["--method", "average", "--pairs", str(pairs), "--out", str(tmp_path / fmt), "--format", fmt]) == 0
    assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == [f"g09-fused.{fmt}", f"g10-fused.{fmt}", RECORD]
    for name in ("g09", "g10"):
        with PILImage.open(tmp_path / fmt / f"{name}-fused.{fmt}") as im:
            assert im.format == {"jpg": "JPEG", "tif": "TIFF", "jpeg": "JPEG", "tiff": "TIFF"}[fmt]
        difference = read_image(tmp_path / fmt / f"{name}-fused.{fmt}").pixels - read_image(tmp_path / "png" / f"{name}-fused.png").pixels
        assert float(difference.abs().max()) * 255 <= (0.0 if fmt.startswith("tif") else 16.0)  # quality 95


def test_a_baseline_fuses_a_large_pair_whole_not_in_the_networks_tiles(tmp_path: Path) -> None:
    # Above 1 MP gipc-fuse tiles the network; a pyramid tiled would differ near the tiles' seams.
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1100, 1000)).astype(np.uint8)
    b = np.asarray(PILImage.fromarray(a).filter(ImageFilter.GaussianBlur(3)))
    out = tmp_path / "f.png"
    assert main(["--method", "laplacian_pyramid", str(_gray(tmp_path / "a.png", a)), str(_gray(tmp_path / "b.png", b)), "--out", str(out)]) == 0
    whole = fuse_color(BASELINES["laplacian_pyramid"], *(torch.from_numpy(x / 255.0).float()[None, None] for x in (a, b)))
    assert np.abs(read_image(out).pixels[0].double().numpy() - whole[0, 0].double().numpy()).max() * 255 <= 0.5 + 1e-3


def test_the_python_apis_network_fusion_runs_a_large_photo_in_tiles() -> None:
    # pretrained().fusion().fuse(...) on a 12 MP photo would need about 24 GB untiled (2 KB per pixel).
    fusion = prepare(random_eval_generator(), choose_path("cpu", "fp32", "torch")).fusion("direct")
    seen: list[tuple[int, ...]] = []
    counted = replace(fusion, net=lambda a, b: seen.append(tuple(a.shape[-2:])) or fusion.net(a, b))
    a, b = torch.rand(2, 1, 1100, 1000, generator=torch.Generator().manual_seed(0))
    assert counted.fuse([a, b]).shape == (1, 1100, 1000)
    # 3 x 3 tiles of up to 512 px overlapping by the generator's 32: ceil((1100 - 32) / 3) + 32 = 388 by
    # ceil((1000 - 32) / 3) + 32 = 355, each rounded up to a multiple of 16
    assert len(seen) == 9 and set(seen) == {(400, 368)}


def test_16bit_sources_give_a_16bit_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 65536, (9, 11)).astype(np.uint16) for _ in range(2))
    out = tmp_path / "f.png"
    assert main(["--method", "average", str(_gray(tmp_path / "a.png", a)), str(_gray(tmp_path / "b.png", b)), "--out", str(out)]) == 0
    fused = read_image(out)
    assert fused.bit_depth == 16
    levels = fused.pixels[0].double().numpy() * 65535
    assert np.abs(levels - (a.astype(float) + b.astype(float)) / 2).max() <= 0.51  # float32 rounding of .5 cases


def test_16bit_rgb_sources_keep_16_bits(tmp_path: Path) -> None:
    """16 bits in, 16 bits out, and the levels between 8-bit ones survive the whole way (not only the file's depth)."""
    rng = np.random.default_rng(1)
    paths, sources = [], []
    for name in ("a.png", "b.png"):
        levels = rng.integers(0, 65536, (6, 15)).astype(np.uint16)
        png.from_array(levels, "RGB;16").save(str(tmp_path / name))
        paths.append(str(tmp_path / name))
        sources.append(torch.from_numpy(levels.reshape(6, 5, 3).astype(np.float64) / 65535).permute(2, 0, 1)[None])
    assert main(["--method", "average", *paths, "--out", str(tmp_path / "f.png")]) == 0
    width, height, rows, info = png.Reader(filename=str(tmp_path / "f.png")).read()
    out = np.array([list(row) for row in rows], dtype=np.float64).reshape(height, width, 3)
    assert info["bitdepth"] == 16 and out.shape == (6, 5, 3)
    expected = (sources[0] + sources[1])[0].permute(1, 2, 0).numpy() / 2 * 65535  # the average, channel by channel
    assert np.abs(out - expected).max() <= 1.0  # float32 arithmetic, then rounding
    assert (out % 257 != 0).mean() > 0.9  # 8-bit levels scaled up would all be multiples of 257


@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 8), (".tif", 16)])
def test_the_fused_image_embeds_the_sources_colour_profile(tmp_path: Path, suffix: str, bits: int) -> None:
    """A phone's Display P3 photo written without its profile reads as sRGB in every viewer: duller.
    The sources' profile goes to the fused file in every format written (one source without a
    profile takes the other's); the map, not a photo, carries none."""
    icc, _ = icc_profiles()
    rng = np.random.default_rng(7)
    paths = []
    for name, embedded in (("a", icc), ("b", None)):
        path = tmp_path / f"{name}.png"
        if bits == 16:
            png.from_array(rng.integers(0, 65536, (6, 15)).astype(np.uint16), "RGB;16").save(str(path))
            if embedded:  # pypng writes no iCCP: a 16-bit source with a profile comes from gipc's own writer
                write_image(path, read_image(path).pixels, 16, overwrite=True, icc=embedded)
        else:
            PILImage.fromarray(rng.integers(0, 256, (6, 5, 3)).astype(np.uint8)).save(path, **({"icc_profile": embedded} if embedded else {}))
        paths.append(str(path))
    assert read_image(paths[0]).icc == icc and read_image(paths[1]).icc is None
    out = tmp_path / f"fused{suffix}"
    assert main([*paths, "--out", str(out), "--save-maps", str(tmp_path / "maps")]) == 0  # the shipped model, the map rule
    with PILImage.open(out) as im:
        assert im.info.get("icc_profile") == icc
    assert read_image(out).icc == icc and read_image(out).bit_depth == (bits if suffix != ".jpg" else 8)
    (saved_map,) = (tmp_path / "maps").iterdir()
    assert read_image(saved_map).icc is None


@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 8), (".tif", 16)])
def test_the_fused_image_keeps_the_first_sources_exif_upright(tmp_path: Path, suffix: str, bits: int) -> None:
    """Camera, lens, exposure and date go with the fused photo (the first source's, as focus-stacking
    tools keep the first frame's), saying orientation 1: its pixels are written upright, and a
    viewer that turned them again by the source's orientation would show them on their side. The
    map carries none."""
    rng = np.random.default_rng(11)
    paths = []
    for name, make in (("a", "First"), ("b", "Second")):
        im = PILImage.fromarray(rng.integers(0, 256, (6, 10, 3)).astype(np.uint8))
        exif = im.getexif()
        exif[0x010F], exif[0x0112] = make, 6  # stored on its side: turn a quarter clockwise to view
        exif.get_ifd(0x8769).update({0x9003: "2026:12:06 10:00:00", 0xA002: 10, 0xA003: 6})
        path = tmp_path / f"{name}.jpg"
        im.save(path, exif=exif, quality=95)
        if bits == 16:  # a 16-bit source with EXIF: gipc's own writer gives one
            path = tmp_path / f"{name}.png"
            write_image(path, read_image(tmp_path / f"{name}.jpg").pixels, 16, exif=read_image(tmp_path / f"{name}.jpg").exif)
        paths.append(str(path))
    assert read_image(paths[0]).pixels.shape == (3, 10, 6)  # turned upright on reading
    out = tmp_path / f"fused{suffix}"
    assert main([*paths, "--out", str(out), "--save-maps", str(tmp_path / "maps")]) == 0
    assert read_image(out).pixels.shape == (3, 10, 6) and read_image(out).bit_depth == bits
    with PILImage.open(out) as im:
        exif = im.getexif()
        assert (exif[0x010F], exif[0x0112]) == ("First", 1)
        assert exif.get_ifd(0x8769) == {0x9003: "2026:12:06 10:00:00", 0xA002: 6, 0xA003: 10}  # the fused image's size
    (saved_map,) = (tmp_path / "maps").iterdir()
    assert read_image(saved_map).exif is None


def test_16bit_sources_into_a_jpeg_are_rounded_to_8_bits_and_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A JPEG asked for by name (a RAW bracket's preview, say) is written at the 8 bits JPEG holds, and
    a line says so once, after the rule's; a folder's --format jpg alike."""
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64)
    paths = [str(_gray(tmp_path / f"{name}.png", np.round(ramp * share).astype(np.uint16))) for name, share in (("a", 0.5), ("b", 0.9))]
    assert main(["--method", "average", *paths, "--out", str(tmp_path / "fused.jpg")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[1] == f"gipc-fuse: JPEG holds 8 bits: {tmp_path / 'fused.jpg'} from 16-bit sources rounded to 8 (.png or .tif keep 16)"
    fused = read_image(tmp_path / "fused.jpg")
    assert fused.bit_depth == 8
    assert np.abs(fused.stored[0].numpy() - ramp * 0.7 / 257).max() <= 2  # the average, rounded, within JPEG's error
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name in ("s-A", "s-B", "t-A", "t-B"):
        _gray(pairs / f"{name}.png", np.round(ramp).astype(np.uint16) if name.startswith("s") else np.zeros((48, 64), np.uint8))
    assert main(["--method", "average", "--pairs", str(pairs), "--out", str(tmp_path / "out"), "--format", "jpg"]) == 0
    assert f"gipc-fuse: JPEG holds 8 bits: {tmp_path / 'out' / 's-fused.jpg'} from 16-bit sources rounded to 8 (.png or .tif keep 16)" in capsys.readouterr().err.splitlines()


def test_sources_with_two_colour_profiles_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Their values mean different colours: copying pixels from both would mix two colour spaces."""
    srgb, xyz = icc_profiles()
    paths = []
    for name, icc in (("a", srgb), ("b", xyz)):
        PILImage.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / f"{name}.jpg", icc_profile=icc)
        paths.append(str(tmp_path / f"{name}.jpg"))
    assert main([*paths, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [  # the only line: from the headers, before the network loads
        f"gipc-fuse: error: {paths[1]} embeds another colour profile (ICC) than {paths[0]}; "
        "convert the sources to one colour space (or strip the profile of those already in it)"
    ]
    assert not (tmp_path / "out").exists()


def test_triple_is_fused_in_turn(tmp_path: Path, lytro_triple: Path) -> None:
    """Average in turn weighs C twice as much as A and B: a wrong order changes the result."""
    names = [lytro_triple / f"lytro-02-{x}.jpg" for x in "ABC"]
    assert main(["--method", "average", *map(str, names), "--out", str(tmp_path / "o")]) == 0
    a, b, c = (read_image(p).pixels.double() for p in names)
    out = read_image(tmp_path / "o" / "lytro-02-fused.png").pixels
    assert (out - (a / 4 + b / 4 + c / 2)).abs().max() <= 0.5 / 255 + 1e-6  # by hand, channel by channel; written rounded
    assert (out - (a / 3 + b / 3 + c / 3)).abs().max() * 255 > 5  # A, B, C equally: levels off


def _shoot(tmp_path: Path) -> Path:
    """A photographer's folder of two focus stacks of gray frames f1, f2, f10 (a camera's numbering)."""
    shoot = tmp_path / "shoot"
    for stack, values in (("b", (0, 60, 240)), ("a", (200, 100, 40))):
        (shoot / stack).mkdir(parents=True)
        for name, value in zip(("f1", "f2", "f10"), values):
            _gray(shoot / stack / f"{name}.png", np.full((4, 6), value, np.uint8))
    return shoot


def test_a_stacks_frames_fuse_in_the_cameras_numbering_from_its_folder_or_a_folder_of_stacks(tmp_path: Path) -> None:
    """Average in turn weighs the last frame twice as much as the first two, so the order shows: f10 is
    last (string order puts it second: 0/4 + 240/4 + 60/2 = 90 for stack b)."""
    shoot, out = _shoot(tmp_path), tmp_path / "out"
    assert main(["--method", "average", "--stacks", str(shoot), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a-fused.png", "b-fused.png", RECORD]
    assert read_image(out / "b-fused.png").stored.unique().tolist() == [135]  # 0/4 + 60/4 + 240/2
    assert read_image(out / "a-fused.png").stored.unique().tolist() == [95]  # 200/4 + 100/4 + 40/2
    assert main(["--method", "average", str(shoot / "b"), "--out", str(tmp_path / "one")]) == 0  # one stack: its folder alone
    assert read_image(tmp_path / "one" / "b-fused.png").stored.unique().tolist() == [135]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stacks", "shoot", "--out", "shoot/out"], "shoot/out: inside shoot, where the next run would read it as a stack; write it outside"),
        (["--stacks", "shoot", "--out", "out", "--save-maps", "shoot/a/maps", "--rule", "map"], "shoot/a/maps: inside shoot, where the next run would read it as a stack; write it outside"),
        (["shoot/b", "--out", "shoot/b/fused.png"], "shoot/b/fused.png: inside shoot/b, where the next run would read it as a frame; write it outside"),
        (["shoot/b", "shoot/a/f1.png", "--out", "out.png"], "shoot/b is a folder: give source files, or one folder of a stack's frames alone"),
        (["--stacks", "shoot", "--out", "out.png"], "out.png: --stacks writes one image per stack; give an output folder"),
        (["--stacks", "shoot", "shoot/a/f1.png", "--out", "out"], "give either source files or --stacks DIR, not both"),
        (["--pairs", "shoot", "--out", "out"], "shoot: no images directly in it; its subfolders a, b hold images: give one of them, or --stacks shoot if each is one focus stack"),
    ],
    ids=["output folder among the stacks", "maps in a stack", "output file among the frames", "a folder among files", "one output file", "files and --stacks", "stacks as pairs"],
)
def test_stacks_outputs_that_would_be_read_as_frames_are_refused_before_any_work(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _shoot(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["--method", "average", *args]) == 2
    assert _error_line(capsys) == f"gipc-fuse: error: {message}"
    assert sorted(tmp_path.rglob("*")) == before


def test_size_mismatch_through_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _gray(tmp_path / "a.png", np.zeros((4, 6), np.uint8))
    b = _gray(tmp_path / "b.png", np.zeros((5, 6), np.uint8))
    assert main(["--method", "average", str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    assert "the sources must be registered images of one size" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_sources_into_a_folder_are_named_for_the_first_source(tmp_path: Path) -> None:
    """Without a focus mark (-A, _1) to strip, the output takes the first source's whole stem."""
    near, far = (_gray(tmp_path / f"{name}.png", np.full((5, 6), value, np.uint8)) for name, value in (("near", 10), ("far", 200)))
    assert main(["--method", "average", str(near), str(far), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RECORD, "near-fused.png"]


def test_non_empty_output_folder_needs_overwrite(tmp_path: Path, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["--method", "average", str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png"), "--out", str(out)]
    assert main(args) == 2
    assert f"output folder {out} is not empty; choose a new folder or pass --overwrite" in _error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["g10-fused.png", RECORD, "keep.txt"]


def test_an_existing_output_file_is_replaced_only_with_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _gray(tmp_path / "a.png", np.full((4, 4), 10, np.uint8))
    b = _gray(tmp_path / "b.png", np.full((4, 4), 200, np.uint8))
    out = _gray(tmp_path / "f.png", np.zeros((4, 4), np.uint8))
    args = ["--method", "average", str(a), str(b), "--out", str(out)]
    assert main(args) == 2
    assert f"{out} already exists; choose another name or pass --overwrite" in _error_line(capsys)
    assert np.asarray(PILImage.open(out)).max() == 0
    assert main([*args, "--overwrite"]) == 0
    assert (np.asarray(PILImage.open(out)) == 105).all()  # (10 + 200) / 2


def test_an_input_is_never_the_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _gray(tmp_path / "a.png", np.full((4, 4), 10, np.uint8))
    b = _gray(tmp_path / "b.png", np.full((4, 4), 200, np.uint8))
    assert main(["--method", "average", str(a), str(b), "--out", str(a), "--overwrite"]) == 2
    assert "it is one of the inputs" in _error_line(capsys)
    assert np.asarray(PILImage.open(a)).max() == 10


def test_disk_full_through_the_command(tmp_path: Path, grayscale_pairs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def full_disk(self: PILImage.Image, fp: os.PathLike, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(PILImage.Image, "save", full_disk)
    out = tmp_path / "out"
    assert main(["--method", "average", str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png"), "--out", str(out)]) == 2
    assert "No space left on device" in _error_line(capsys)
    assert list(out.iterdir()) == []


def test_running_out_of_memory_is_one_line_and_keeps_the_outputs_before_it(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = _three_pairs(tmp_path, seed=2)
    calls = []

    def too_large_on_second_pair(self: object, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            torch.empty(1 << 60, dtype=torch.uint8)  # an allocation no machine can make: torch's allocator refuses it
        return (a + b) / 2

    monkeypatch.setattr(gipc.inference.InferenceGenerator, "fuse_y", too_large_on_second_pair)
    out = tmp_path / "out"
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out)]) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last_line.startswith("gipc-fuse: error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate ")
    assert last_line.endswith("); fewer or smaller images at once need less")
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "p1-fused.png"]


def test_ctrl_c_leaves_only_complete_files(tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = _three_pairs(tmp_path, seed=2)
    calls = []

    def interrupted_on_second_pair(self: object, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return (a + b) / 2

    monkeypatch.setattr(gipc.inference.InferenceGenerator, "fuse_y", interrupted_on_second_pair)
    out = tmp_path / "out"
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out)]) == 130
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last_line == "gipc-fuse: interrupted; 1 of 3 outputs written whole, no partial files; the same command with --skip-existing fuses the rest"
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "p1-fused.png"]
    assert read_image(out / "p1-fused.png").pixels.shape == (1, 8, 10)
    first = _stamped(out / "p1-fused.png")
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out), "--skip-existing"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"gipc-fuse: wrote 2 images to {out} (1 already there)"
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "p1-fused.png", "p2-fused.png", "p3-fused.png"]
    assert _stamped(out / "p1-fused.png") == first and len(calls) == 4  # p1 neither fused nor written again


def _stamped(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_the_pipeline_finishes_and_keeps_every_output_before_a_corrupt_source(tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Job 3's source is decoded while job 2 fuses and job 1 is encoded: damage past its header (which
    the plan reads before any fusion) still ends the run only after outputs 1 and 2 are whole on
    disk, and nothing of job 3 exists."""
    pairs = _three_pairs(tmp_path, seed=3)
    whole = (pairs / "p3-B.png").read_bytes()
    (pairs / "p3-B.png").write_bytes(whole[:45])  # the signature and IHDR intact (33 bytes), the pixel data cut short
    out = tmp_path / "out"
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out)]) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "p3-B.png: truncated or corrupt" in last_line
    assert last_line.endswith("; 2 of 3 outputs written whole; the same command with --skip-existing fuses the rest once that is fixed")
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "p1-fused.png", "p2-fused.png"]
    assert all(read_image(out / name).pixels.shape == (1, 8, 10) for name in ("p1-fused.png", "p2-fused.png"))
    kept = {name: _stamped(out / name) for name in ("p1-fused.png", "p2-fused.png")}
    (pairs / "p3-B.png").write_bytes(whole)
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out), "--skip-existing"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "p1-fused.png", "p2-fused.png", "p3-fused.png"]
    assert {name: _stamped(out / name) for name in kept} == kept
    capsys.readouterr()
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out), "--skip-existing"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == "gipc-fuse: nothing to fuse: all 3 outputs are already there"


def test_keep_going_fuses_past_damaged_groups_names_them_and_exits_2(tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Damage past the header of p1 and p2 (found only when decoded): with --keep-going p3 is still
    fused, each damaged group is named, and the last line counts them; --skip-existing then fuses
    just those once they are whole again."""
    pairs = _three_pairs(tmp_path, seed=5)
    whole = {name: (pairs / name).read_bytes() for name in ("p1-A.png", "p2-B.png")}
    for name, data in whole.items():
        (pairs / name).write_bytes(data[:45])
    out = tmp_path / "out"
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out), "--keep-going"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[1] for line in lines if line.startswith("gipc-fuse: skipped ")] == ["skipped p1-fused.png", "skipped p2-fused.png"]
    assert lines[-1].startswith(f"gipc-fuse: error: 2 of 3 groups could not be fused (p1-fused.png: {pairs / 'p1-A.png'}: truncated or corrupt")
    assert lines[-1].endswith("; 1 more named above); 1 output written whole; the same command with --skip-existing fuses the rest once they are fixed")
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "p3-fused.png"]
    kept = _stamped(out / "p3-fused.png")
    for name, data in whole.items():
        (pairs / name).write_bytes(data)
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out), "--skip-existing", "--keep-going"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [RECORD, "p1-fused.png", "p2-fused.png", "p3-fused.png"] and _stamped(out / "p3-fused.png") == kept


def test_skip_existing_redoes_a_group_whose_map_is_missing_and_refuses_overwrite_beside_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs, out, maps = _three_pairs(tmp_path, seed=4), tmp_path / "out", tmp_path / "maps"
    command = ["--method", "average", "--rule", "map", "--pairs", str(pairs), "--out", str(out), "--save-maps", str(maps)]
    assert main(command) == 0
    kept = {path: _stamped(path) for path in (out / "p1-fused.png", maps / "p1-map.png", out / "p3-fused.png", maps / "p3-map.png")}
    (maps / "p2-map.png").unlink()  # killed between the image and its map
    capsys.readouterr()
    assert main([*command, "--skip-existing"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"gipc-fuse: wrote {out / 'p2-fused.png'} and its map to {maps} (2 already there)"
    assert (maps / "p2-map.png").is_file() and {path: _stamped(path) for path in kept} == kept
    with pytest.raises(SystemExit) as refused:  # argparse's refusal
        main([*command, "--skip-existing", "--overwrite"])
    assert refused.value.code == 2 and "argument --overwrite: not allowed with argument --skip-existing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda pairs: (pairs / "p3-B.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40), "p3-B.png: not an image, or a corrupt one"),
        (lambda pairs: (pairs / "p3-B.png").unlink(), "p3-A.png: unpaired"),
        (lambda pairs: write_image(pairs / "p3-B.png", torch.rand(1, 8, 12), overwrite=True), "p3-B.png is 12x8 but"),
        (lambda pairs: write_image(pairs / "p3-B.png", torch.rand(3, 8, 10), overwrite=True), "p3-B.png is RGB but"),
    ],
    ids=["unreadable", "missing", "other size", "other kind"],
)
def test_a_bad_source_anywhere_in_a_folder_stops_before_the_network_loads_and_writes_nothing(
    tmp_path: Path, damage, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = _three_pairs(tmp_path, seed=4)
    damage(pairs)
    out, maps = tmp_path / "out", tmp_path / "maps"
    assert main(["--ckpt", str(tmp_path / "never-loaded.ckpt"), "--pairs", str(pairs), "--out", str(out), "--save-maps", str(maps)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]  # no header line: the network was never loaded
    assert not out.exists() and not maps.exists()


def test_the_same_file_twice_is_refused(tmp_path: Path, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = grayscale_pairs / "g10-A.png"
    assert main(["--method", "average", str(source), str(source), "--out", str(tmp_path / "o.png")]) == 2
    assert "g10-A.png: the same file is given twice as a source" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tile", "64", "--overlap", "64"], "tile 64 with overlap 64: need tile >= 0 and 0 <= overlap < tile"),
        (["--tile", "-1"], "tile -1: need tile >= 0 and 0 <= overlap < tile"),
        (["--tile", "16"], "tile 16 with overlap 32: need tile >= 0 and 0 <= overlap < tile"),  # the generator's own overlap
        # the automatic tiles' overlap, which a large image meets only when the network runs (a message of its own)
        (["--overlap", "-3"], "tile 512 (automatic) with overlap -3: need tile >= 0 and 0 <= overlap < tile"),
        (["--method", "average", "--tile", "256"], "--tile applies to the network only"),
        (["--method", "average", "--tile", "0"], "--tile applies to the network only"),
        (["--method", "average", "--precision", "bf16"], "--precision and --backend apply to the network only; baselines compute in fp32 with torch"),
        (["--method", "average", "--backend", "torch"], "--precision and --backend apply to the network only; baselines compute in fp32 with torch"),
        (["--device", "cpu", "--precision", "fp16"], "precision fp16 runs on CUDA only; use bf16 or fp32 on a CPU"),
        (["--rule", "direct", "--clean", "15"], "--clean: the decision map's settings, and this rule makes no map: add --rule map, or leave them out"),
        (["--method", "average", "--focus", "0.5", "--no-match-exposure"], "--match-exposure, --focus: the decision map's settings, and this rule makes no map"),
        (["--format", "jpg", "--out", "o.png"], "o.png: a file's suffix names its format; give --format with an output folder"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, ckpt: Path, grayscale_pairs: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    model = [] if "--method" in extra else ["--ckpt", str(ckpt)]
    sources = [str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png")]
    assert main([*model, *sources, "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in _error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_a_gpu(tmp_path: Path, ckpt: Path, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = [str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png")]
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "no CUDA device is available here; use --device cpu" in _error_line(capsys)


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--ckpt", "g.ckpt", "--method", "average", "a.png", "b.png", "--out", "o"])
    assert exit_info.value.code == 2
    assert _error_line(capsys) == "gipc-fuse: error: argument --method: not allowed with argument --ckpt (see --help)"
    with pytest.raises(SystemExit) as exit_info:
        main(["--method", "nope", "a.png", "b.png", "--out", "o"])
    assert exit_info.value.code == 2
    assert _error_line(capsys).startswith("gipc-fuse: error: argument --method: invalid choice: 'nope' (choose from 'average', 'bf', 'dsift', 'dwt', 'gfdf', 'gff',")


def test_a_baseline_says_it_runs_no_network(tmp_path: Path, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = [str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png")]
    assert main(["--method", "gff", *sources, "--out", str(tmp_path / "o.png")]) == 0
    assert capsys.readouterr().err.splitlines()[0] == "gipc-fuse: method gff (a classic baseline, no network): its own output"


def test_a_baseline_under_the_map_rule_takes_the_map_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default map is hard (radius 0): every pixel one source's; ``--radius`` softens its boundaries."""
    texture = np.random.default_rng(0).integers(0, 256, (48, 64)).astype(np.uint8)
    blurred = np.asarray(PILImage.fromarray(texture).filter(ImageFilter.GaussianBlur(2)))
    halves = [np.where(np.arange(64) < 32, sharp, soft) for sharp, soft in ((texture, blurred), (blurred, texture))]
    sources = [str(_gray(tmp_path / f"s-{letter}.png", half)) for letter, half in zip("AB", halves)]  # A sharp on the left, B on the right
    assert main(["--method", "average", *sources, "--rule", "map", "--out", str(tmp_path / "hard.png")]) == 0
    assert capsys.readouterr().err.splitlines()[0].startswith("gipc-fuse: method average (a classic baseline, no network): rule map (")
    assert main(["--method", "average", *sources, "--rule", "map", "--radius", "4", "--out", str(tmp_path / "soft.png")]) == 0
    hard, soft = (torch.stack(_copied_from(read_image(tmp_path / name).pixels, sources)).any(dim=0) for name in ("hard.png", "soft.png"))
    assert hard.all() and not soft.all()


def test_the_first_line_names_the_rule_the_checkpoint_and_the_inference_path(
    tmp_path: Path, ckpt: Path, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = [str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png")]
    argv = ["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "f.png"), "--device", "cpu", "--precision", "bf16", "--backend", "torch"]
    assert main([*argv, "--rule", "direct"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"gipc-fuse: rule direct (the network's own output); network {ckpt}; cpu, bf16 (asked for")
    assert first.endswith("), torch, channels_last, BatchNorm folded")


def test_a_map_heads_direct_output_saves_its_weights_as_the_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A map head makes a map under either rule: --save-maps needs no --rule map for it."""
    gen = random_eval_generator(width=4, head="weights")
    ckpt = save_lightning_ckpt(tmp_path / "head.ckpt", gen, {"width": 4, "head": "weights"})
    rng = np.random.default_rng(1)
    sources = [str(_gray(tmp_path / f"s-{letter}.png", rng.integers(0, 256, (12, 16)).astype(np.uint8))) for letter in "AB"]
    out, maps = tmp_path / "f.png", tmp_path / "maps"
    argv = ["--ckpt", str(ckpt), *sources, "--rule", "direct", "--out", str(out), "--save-maps", str(maps), "--precision", "fp32", "--backend", "torch"]
    assert main(argv) == 0
    assert capsys.readouterr().err.splitlines()[0].startswith("gipc-fuse: rule direct (the map head's weights); network")
    a, b = (read_image(path).pixels[0] for path in sources)
    with torch.no_grad():
        w = gen.weight(a[None, None] * 2 - 1, b[None, None] * 2 - 1)[0, 0]
    assert (read_image(maps / "f-map.png").pixels[0] - w).abs().max() <= 0.5 / 255 + 1e-5  # white: A's weight 1
    assert (read_image(out).pixels[0] - (w * a + (1 - w) * b)).abs().max() <= 0.5 / 255 + 1e-5


def test_one_source_is_not_enough(tmp_path: Path, grayscale_pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--method", "average", str(grayscale_pairs / "g10-A.png"), "--out", str(tmp_path / "o")]) == 2
    assert "give two or more source images" in _error_line(capsys)


# --- the network --------------------------------------------------------------------------------


def _copied_from(fused: torch.Tensor, sources: list[str]) -> list[torch.Tensor]:
    """Per source, the (H, W) pixels whose three channels the fused image holds unchanged."""
    return [(fused == read_image(path).pixels).all(dim=0) for path in sources]


@pytest.mark.slow
def test_network_fuses_a_lytro_pair_to_rgb(tmp_path: Path, lytro_pairs: Path) -> None:
    """Under a hard map (rule map, radius 0) every fused pixel is one source's RGB pixel, value for value,
    and both sources give some: neither the network's repainted image nor a channel mix-up passes."""
    ckpt = save_lightning_ckpt(tmp_path / "untrained.ckpt", paper_generator())
    sources = [str(lytro_pairs / "lytro-05-A.jpg"), str(lytro_pairs / "lytro-05-B.jpg")]
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "out"), "--rule", "map", "--radius", "0"]) == 0
    fused = PILImage.open(tmp_path / "out" / "lytro-05-fused.png")
    assert fused.mode == "RGB" and fused.size == (520, 520)
    copied = _copied_from(read_image(tmp_path / "out" / "lytro-05-fused.png").pixels, sources)
    assert torch.stack(copied).any(dim=0).all()
    assert all(c.float().mean() > 0.05 for c in copied), [c.float().mean() for c in copied]


@pytest.mark.slow
def test_network_fuses_a_lytro_triple(tmp_path: Path, lytro_triple: Path, ckpt: Path) -> None:
    """A sequence under a hard map: every pixel is one of the three sources', and each of them gives some."""
    sources = [str(lytro_triple / f"lytro-01-{x}.jpg") for x in "ABC"]
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "f.png"), "--rule", "map", "--radius", "0"]) == 0
    fused = read_image(tmp_path / "f.png")
    assert fused.pixels.shape == (3, 520, 520) and fused.bit_depth == 8
    copied = _copied_from(fused.pixels, sources)
    assert torch.stack(copied).any(dim=0).all()
    assert all(c.float().mean() > 0.05 for c in copied), [c.float().mean() for c in copied]


def test_network_keeps_a_gray_pair_gray(tmp_path: Path, grayscale_pairs: Path, ckpt: Path) -> None:
    """The command runs the checkpoint's own network under the rule asked for: ``--rule direct`` in fp32
    writes the generator's output on the pair, rounded to 8 bits, and stays gray."""
    sources = [str(grayscale_pairs / "g05-A.png"), str(grayscale_pairs / "g05-B.png")]
    out = tmp_path / "out" / "g05-fused.png"
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(out.parent), "--rule", "direct", "--precision", "fp32", "--backend", "torch"]) == 0
    fused = PILImage.open(out)
    assert fused.mode == "L" and fused.size == (268, 176)
    a, b = (read_image(path).pixels[None] for path in sources)
    expected = fuser_by_hand(load_generator(ckpt))(a, b)[0, 0]
    assert np.abs(np.asarray(fused, float) / 255 - expected.numpy()).max() <= 0.5 / 255 + 1e-5
    assert np.abs(np.asarray(fused, float) / 255 - ((a + b) / 2)[0, 0].numpy()).max() > 0.05  # not a plain average


@pytest.mark.slow
def test_command_tiling_matches_whole_image(tmp_path: Path, lytro_pairs: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    crop = tmp_path / "crop"
    crop.mkdir()
    for letter in "AB":
        PILImage.open(lytro_pairs / f"lytro-07-{letter}.jpg").crop((0, 0, 150, 130)).save(crop / f"c-{letter}.png")
    sources = [str(crop / "c-A.png"), str(crop / "c-B.png")]
    seen: list[tuple[int, ...]] = []  # the sizes the network is run on: whole, then 80 px tiles
    network = gipc.inference.InferenceGenerator.fuse_y
    monkeypatch.setattr(gipc.inference.InferenceGenerator, "fuse_y", lambda self, ya, yb: seen.append(tuple(ya.shape[-2:])) or network(self, ya, yb))
    bars = recorded_bars(monkeypatch)  # the command's bar over a tiled image's tiles
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "whole.png"), "--tile", "0"]) == 0
    assert seen == [(130, 150)] and bars == []
    seen.clear()
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "tiled.png"), "--tile", "80", "--overlap", "32"]) == 0
    # 80 px tiles advancing by 80 - 32 = 48 need 3 each way; as short as 3 allow, ceil((130 - 32) / 3) + 32 = 65
    # rows and ceil((150 - 32) / 3) + 32 = 72 columns, are 80 px rounded up to a multiple of 16: rows 0, 48, 50, columns 0, 48, 70
    assert seen == [(80, 80)] * 9
    assert bars == [("network tiles", 9)]
    whole, tiles = read_image(tmp_path / "whole.png").pixels, read_image(tmp_path / "tiled.png").pixels
    assert whole.std() > 0.02 and (whole - tiles).abs().max() <= 1 / 255 + 1e-6
    assert "warning" not in capsys.readouterr().err
    # an overlap under the network's exact one is the user's to choose, with a warning: the tiles show
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "short.png"), "--tile", "80", "--overlap", "8", "--rule", "direct"]) == 0
    assert "warning: --overlap 8 is under 32, the least this network tiles exactly with" in capsys.readouterr().err
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "whole-direct.png"), "--tile", "0", "--rule", "direct"]) == 0
    assert (read_image(tmp_path / "short.png").pixels - read_image(tmp_path / "whole-direct.png").pixels).abs().max() > 2 / 255


class _Stderr(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize(("terminal", "delay", "shown"), [(False, 0.0, False), (True, 0.0, True), (True, None, False)])
def test_a_stacks_own_bars_show_on_a_terminal_once_its_work_lasts(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool, delay: float | None, shown: bool
) -> None:
    """A log (stderr not a terminal) gets no bar of a stack's frames: it would keep every update and
    the cursor-up codes that place the bar; on a terminal the bar waits INNER_BAR_DELAY, so a small
    stack, fused in a fraction of it, shows none, and work that lasts (here: no wait) shows it."""
    rng = np.random.default_rng(5)
    frames = [str(_gray(tmp_path / f"f{k}.png", rng.integers(0, 256, (24, 32)).astype(np.uint8))) for k in range(3)]
    if delay is not None:
        monkeypatch.setattr(gipc.cli.common, "INNER_BAR_DELAY", delay)
    stderr = _Stderr(terminal)
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main(["--ckpt", str(ckpt), *frames, "--out", str(tmp_path / "stack.png")]) == 0
    err = stderr.getvalue()
    assert ("network, frame by frame" in err) == shown and ("decision map, 3 passes" in err) == shown
    assert shown or "\x1b[A" not in err  # tqdm's cursor-up, which places a bar under another: a log keeps it as junk
    assert err.startswith("gipc-fuse: ")  # the header line names the rule, bars or not


@pytest.mark.parametrize("rule", ["map", "direct"])
def test_a_stacks_frames_get_a_bar_as_the_network_fuses_them_in_turn(tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, rule: str) -> None:
    """Four frames: a bar over the four as the network fuses them (three calls), then, under the map
    rule, one over the map's three passes over them; a pair: no bar."""
    rng = np.random.default_rng(3)
    frames = [str(_gray(tmp_path / f"f{k}.png", rng.integers(0, 256, (24, 32)).astype(np.uint8))) for k in range(4)]
    bars = recorded_bars(monkeypatch)
    calls = []
    network = gipc.inference.InferenceGenerator.fuse_y
    monkeypatch.setattr(gipc.inference.InferenceGenerator, "fuse_y", lambda self, ya, yb: calls.append(1) or network(self, ya, yb))
    assert main(["--ckpt", str(ckpt), *frames, "--out", str(tmp_path / "stack.png"), "--rule", rule]) == 0
    maps = [("decision map, 3 passes over the frames", 12)] if rule == "map" else []
    assert bars == [("network, frame by frame", 4), *maps] and len(calls) == 3
    bars.clear()
    assert main(["--ckpt", str(ckpt), *frames[:2], "--out", str(tmp_path / "pair.png"), "--rule", rule]) == 0
    assert bars == []


def test_mwgf_gets_a_bar_over_each_channels_reconstruction_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mwgf, a classic with a long loop (500 steps a channel; a 12 MP pair takes a minute), shows a bar
    over each RGB channel's steps, bf one over its map's five stages (as long at 12 MP); dsift, whose
    work is one pass, none."""
    rng = np.random.default_rng(4)
    sources = []
    for k in range(2):
        PILImage.fromarray(rng.integers(0, 256, (24, 20, 3)).astype(np.uint8)).save(tmp_path / f"s{k}.png")
        sources.append(str(tmp_path / f"s{k}.png"))
    bars = recorded_bars(monkeypatch)
    assert main(["--method", "mwgf", *sources, "--out", str(tmp_path / "mwgf.png")]) == 0
    assert bars == [(f"mwgf, reconstruction of channel {k} of 3", 500) for k in (1, 2, 3)]
    bars.clear()
    assert main(["--method", "bf", *sources, "--out", str(tmp_path / "bf.png")]) == 0
    assert bars == [("bf, decision map", 5)]
    bars.clear()
    assert main(["--method", "dsift", *sources, "--out", str(tmp_path / "dsift.png")]) == 0
    assert bars == []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_tiled_inference_bounds_memory() -> None:
    """Peak RSS growth fusing 320x240 with 96-pixel tiles (measured: ~12 MB) is a fraction of the same
    network on the whole image (~73 MB): a 96x96 tile holds 1/8 of the image's pixels.

    At 4000 x 3000 the command's automatic 512 tiles keep the whole process within 4 GiB (see docs).
    """
    tiles, whole = _peak_growth_mib(MEMORY_PROBE, ("240", "320", "96", "32"), ("240", "320", "0", "32"))
    assert 3 * tiles < whole, (tiles, whole)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_a_focus_stacks_map_takes_a_few_planes_whatever_its_length() -> None:
    """The map over 3 and over 9 gray 8-bit frames of 1200x1200: each frame past the third may add less
    than one float32 plane (4 bytes a pixel) to the fusion's peak above the frames themselves.
    Measured: 56 and 67 MiB, 1.3 bytes a pixel a frame; the whole-tensor map before took 112 and 313
    MiB, 24 bytes a pixel a frame (six planes: its evidence held N of each)."""
    side = 1200
    three, nine = _peak_growth_mib(STACK_PROBE, ("3", str(side)), ("9", str(side)))
    per_frame = (nine - three) * 2**20 / 6 / side**2
    assert per_frame < 4.0, (three, nine)


_GRAY = torch.full((1, 4, 4), 0.5)


@pytest.mark.parametrize("sources, message", [
    ([_GRAY], r"a fusion needs at least two sources, got 1"),
    ([_GRAY.numpy(), _GRAY.numpy()], r"sources must be torch tensors \(C, H, W\), got ndarray; .* torch\.from_numpy\(x\)\.permute\(2, 0, 1\) / 255"),
    ([_GRAY[None], _GRAY[None]], r"sources must be shaped \(C, H, W\), got \(1, 1, 4, 4\)"),
    ([(_GRAY * 255).int(), (_GRAY * 255).int()], r"sources must be float tensors in \[0, 1\] or uint8/uint16 ones as stored, got torch\.int32"),
    ([_GRAY * 255, _GRAY], r"sources must lie in \[0, 1\], got values in \[0\.5, 127\.5\]; divide 0\.\.255 images by 255"),
    ([_GRAY * float("nan"), _GRAY], r"sources must lie in \[0, 1\], got NaN values"),
    ([_GRAY, torch.full((1, 4, 5), 0.5)], r"sources differ in shape: \(1, 4, 4\) vs \(1, 4, 5\)"),
    ([_GRAY, _GRAY.double()], r"float sources differ in type: torch\.float32 vs torch\.float64; give them one"),  # the map rule's out= failed
], ids=["one", "numpy", "batched", "int32", "0-255", "nan", "sizes", "float32-float64"])
def test_the_python_api_refuses_sources_it_cannot_fuse_in_one_line(sources, message: str) -> None:
    # What a Python caller gets from fusion.fuse (README) instead of an error deep inside the network.
    with pytest.raises(UserError, match=message):
        fuse_images(lambda a, b: torch.maximum(a, b), sources)
    assert torch.equal(fuse_images(lambda a, b: torch.maximum(a, b), [_GRAY, _GRAY * 0.5]), _GRAY)  # and fuses these


def test_unwritable_output_format_is_refused_before_fusing(tmp_path: Path, ckpt: Path, grayscale_pairs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(gipc.cli.fuse, "load_generator", lambda path: pytest.fail("fused before checking the output"))
    sources = [str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png")]
    assert main(["--ckpt", str(ckpt), *sources, "--out", str(tmp_path / "f.gif")]) == 2
    assert _error_line(capsys) == f"gipc-fuse: error: {tmp_path / 'f.gif'}: cannot write '.gif' files; use .png, .jpg or .tif"


def _unwritable_places(tmp_path: Path) -> list[tuple[Path, str]]:
    """Output paths no file can be made at, each with what the error line must say: under a file,
    always; in /proc (Linux), where even root makes none; in a read-only folder, unless root."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    places = [(blocker / "sub" / "f.png", f"{blocker} is a file, not a folder")]
    if Path("/proc/self").is_dir():
        places.append((Path("/proc/gipc-test/f.png"), "no new file can be made in /proc"))
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        places.append((locked / "f.png", f"no new file can be made in {locked}"))
    return places


def test_an_output_place_that_takes_no_file_is_refused_before_fusing(
    tmp_path: Path, ckpt: Path, grayscale_pairs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gipc.cli.fuse, "load_generator", lambda path: pytest.fail("fused before checking the output"))
    sources = [str(grayscale_pairs / "g10-A.png"), str(grayscale_pairs / "g10-B.png")]
    for out, message in _unwritable_places(tmp_path):
        for args in (["--out", str(out)], ["--out", str(out.parent)], ["--out", str(tmp_path / "ok"), "--save-maps", str(out.parent)]):
            assert main(["--ckpt", str(ckpt), *sources, *args]) == 2
            line = _error_line(capsys)
            assert line.startswith("gipc-fuse: error: cannot write into ") and message in line, line
    assert not (tmp_path / "ok").exists()


def test_gipc_fuse_starts_without_the_training_and_metrics_libraries() -> None:
    """Every gipc-fuse pays its imports: the metrics' torchmetrics (with scipy.signal) and Lightning
    cost 1.1-1.4 s of a 3.4 s single-pair fusion (benchmarks/README.md) and fuse nothing."""
    heavy = ("torchmetrics", "lightning", "scipy.signal", "scipy.ndimage", "gipc.metrics")
    code = f"import sys, gipc.cli.fuse; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


# --- the record of what made a folder ----------------------------------------------------------------


def _record(folder: Path) -> dict:
    return json.loads((folder / RECORD).read_text())


def test_a_folder_of_outputs_records_the_weights_rule_and_map_settings_that_made_it(tmp_path: Path, ckpt: Path) -> None:
    pairs, out = _three_pairs(tmp_path, seed=6), tmp_path / "out"
    assert main(["--ckpt", str(ckpt), "--pairs", str(pairs), "--out", str(out), "--clean", "31", "--precision", "fp32", "--backend", "torch"]) == 0
    record = _record(out)
    conf = conf_group("fusion", "default")["map"]
    assert record["settings"] == {
        "weights sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(), "device": "cpu", "precision": "fp32", "backend": "torch",
        "rule": "map", "align": None, **{f"map {key}": value for key, value in conf.items() if key != "clean"}, "map clean": 31,
    }
    made = record["made with"]
    assert made["command"] == f"gipc-fuse --ckpt {ckpt} --pairs {pairs} --out {out} --clean 31 --precision fp32 --backend torch"
    assert made["weights"] == str(ckpt) and made["gipc"] == gipc.__version__
    single = tmp_path / "single"
    single.mkdir()
    assert main(["--method", "average", str(pairs / "p1-A.png"), str(pairs / "p1-B.png"), "--out", str(single / "f.png")]) == 0
    assert [p.name for p in single.iterdir()] == ["f.png"]  # one output file: no folder of its own to describe


def test_skip_existing_refuses_a_folder_of_other_settings_and_names_what_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs, out = _three_pairs(tmp_path, seed=7), tmp_path / "out"
    command = ["--method", "average", "--rule", "map", "--pairs", str(pairs), "--out", str(out)]
    assert main(command) == 0
    kept = _record(out)
    (out / "p2-fused.png").unlink()  # as a run stopped before it would leave it
    capsys.readouterr()
    refusal = f"gipc-fuse: error: {out} holds outputs of other settings ({{}}); fuse into a new folder, or pass --overwrite to fuse every group again"
    for change, said in (
        (["--rule", "direct"], "rule was map, now direct"),  # the map's settings go with the rule: not listed one by one
        (["--clean", "31"], "map clean was 61, now 31"),
        (["--align"], f"align was not given, now similarity; align fit was not given, now {gipc.align.FIT}"),
    ):
        argv = [*command, *change, "--skip-existing"] if change[0] != "--rule" else [*command[:2], *change, *command[4:], "--skip-existing"]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == refusal.format(said)
        assert not (out / "p2-fused.png").exists() and _record(out) == kept
    assert main([*command, "--skip-existing"]) == 0  # the same settings: the missing output is fused, the record stays
    assert (out / "p2-fused.png").is_file() and _record(out) == kept


def test_skip_existing_refuses_a_folder_registered_by_an_earlier_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder fused with --align records how the sources were registered; one whose record names
    no fit (an earlier gipc's) or another fit takes no outputs of this one's without --overwrite."""
    pairs, out = _three_pairs(tmp_path, seed=9), tmp_path / "out"
    command = ["--method", "average", "--align", "--pairs", str(pairs), "--out", str(out)]
    assert main(command) == 0
    record = _record(out)
    assert record["settings"]["align"] == "similarity" and record["settings"]["align fit"] == gipc.align.FIT
    del record["settings"]["align fit"]
    (out / RECORD).write_text(json.dumps(record))
    (out / "p2-fused.png").unlink()
    capsys.readouterr()
    assert main([*command, "--skip-existing"]) == 2
    assert f"(align fit was not given, now {gipc.align.FIT})" in capsys.readouterr().err
    assert not (out / "p2-fused.png").exists()


def test_skip_existing_in_a_folder_without_a_record_says_so_and_writes_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs, out = _three_pairs(tmp_path, seed=8), tmp_path / "out"
    command = ["--method", "average", "--pairs", str(pairs), "--out", str(out)]
    assert main(command) == 0
    (out / RECORD).unlink()  # a folder of an earlier gipc, or made by hand
    (out / "p3-fused.png").unlink()
    capsys.readouterr()
    assert main([*command, "--skip-existing"]) == 0
    assert f"gipc-fuse: {out} holds no {RECORD}: the outputs there are taken as made with these settings" in capsys.readouterr().err
    assert _record(out)["settings"] == {"method": "average", "rule": "direct", "align": None}
    (out / RECORD).write_text("{not json")
    (out / "p3-fused.png").unlink()
    assert main([*command, "--skip-existing"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"gipc-fuse: error: {out / RECORD} is damaged; fuse into a new folder, or pass --overwrite to fuse every group again"
    )
    assert main([*command, "--overwrite"]) == 0 and _record(out)["settings"]["method"] == "average"


def test_gipc_eval_names_what_made_each_folder_it_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs, out, rng = tmp_path / "pairs", tmp_path / "avg", np.random.default_rng(9)
    pairs.mkdir()
    for name in ("p1-A", "p1-B", "p2-A", "p2-B"):  # MS-SSIM scores images of 11x11 px and more
        _gray(pairs / f"{name}.png", rng.integers(0, 256, (24, 24)).astype(np.uint8))
    assert main(["--method", "average", "--pairs", str(pairs), "--out", str(out)]) == 0
    capsys.readouterr()
    assert eval_main(["--sources", str(pairs), "--fused", f"mean={out}"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        f"gipc-eval: mean = {out}: made by gipc-fuse {gipc.__version__}, rule direct, method average "
        f"(gipc-fuse --method average --pairs {pairs} --out {out})"
    )
    (out / RECORD).unlink()  # a folder without a record: nothing said of it
    assert eval_main(["--pairs", str(pairs), "--fused", f"mean={out}"]) == 0  # --pairs, as gipc-fuse names the folder
    assert capsys.readouterr().err.splitlines()[0] == "gipc-eval: scoring 2 pair(s): mean"
