"""Comparison figures: the crop lands where the sources differ in detail; difference images are |Y - Y_A| on one
scale a scene; the figure is written whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gipc.figures import DIFFERENCE_SCALE_QUANTILE, comparison_figure, decision_window, differences
from gipc.cli.figure import main
from gipc.imaging import write_image

from helpers import recorded_bars


def test_crop_window_lands_where_only_one_source_has_detail() -> None:
    flat = torch.full((1, 120, 160), 0.5)
    detailed = flat.clone()
    detailed[:, 70:100, 20:50] = torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(0))
    top, left = decision_window([detailed, flat], 32)
    assert 70 - 32 < top <= 70 and 20 - 32 < left <= 20  # the window overlaps the textured square
    assert top + 32 > 70 and left + 32 > 20


def test_crop_window_ignores_detail_that_every_source_shares() -> None:
    # The window is where the sources *differ* in detail: strong texture both share is no choice to make.
    texture = torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(1))
    a = torch.full((1, 120, 160), 0.5)
    a[:, 0:30, 0:30] = texture
    b = a.clone()
    b[:, 80:110, 110:140] = 0.5 + 0.3 * (texture - 0.5)  # weaker texture, in b only
    top, left = decision_window([a, b], 32)
    assert 80 - 32 < top <= 80 and 110 - 32 < left <= 110


def test_figure_panels_are_in_order_with_the_crop_outlined_and_zoomed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures: list = []
    monkeypatch.setattr("matplotlib.pyplot.close", figures.append)  # keep the figure to inspect it
    flat = torch.full((1, 40, 48), 0.5)
    detailed = flat.clone()
    detailed[:, 10:26, 24:40] = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    fused = torch.rand(1, 40, 48, generator=torch.Generator().manual_seed(2))
    comparison_figure([("s1", [("source A", flat), ("source B", detailed), ("ours", fused)])], tmp_path / "f.png", crop=16)
    axes = figures[0].axes  # row-major: 3 whole panels, then their 3 crops
    assert [ax.get_title() for ax in axes[:3]] == ["s1: source A", "source B", "ours"]  # the scene named on the first panel
    for whole, zoom, image in zip(axes[:3], axes[3:], (flat, detailed, fused)):
        (rect,) = whole.patches
        left, top = rect.get_xy()
        assert (rect.get_width(), rect.get_height()) == (16, 16)
        assert 10 - 16 < top <= 10 and 24 - 16 < left <= 24  # outlines the square only source B has detail in
        assert np.array_equal(np.asarray(zoom.images[0].get_array()), image[0, int(top) : int(top) + 16, int(left) : int(left) + 16].numpy())


def test_figure_is_written_and_never_over_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, fused = tmp_path / "sources", tmp_path / "fused"
    for folder in (sources, fused):
        folder.mkdir()
    for letter in "ABC":
        write_image(sources / f"s1-{letter}.png", torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(ord(letter))))
    write_image(fused / "s1-fused.png", torch.rand(3, 40, 48))
    out = tmp_path / "fig.png"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(out), "--crop", "16", "--palette"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as written:
        assert written.mode == "P"  # --palette: a palette PNG, small enough to commit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "fused", "sources"]  # no temp file left
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["--sources", str(sources), "--out", str(out)]) == 2
    assert "fig.png already exists; choose another name or pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(fused / "s1-fused.png"), "--overwrite"]) == 2
    assert "it is one of the inputs" in capsys.readouterr().err  # not even --overwrite replaces an input
    assert main(["--sources", str(sources), "--out", str(sources / "s1-A.png"), "--overwrite"]) == 2
    assert "it is one of the inputs" in capsys.readouterr().err  # a source neither
    assert main(["--pairs", str(sources), "--out", str(out), "--crop", "16", "--overwrite"]) == 0  # --pairs, as gipc-fuse names it
    assert out.read_bytes() != before  # replaced: one panel fewer


@pytest.mark.parametrize(("extra", "size"), [([], 96), (["--crop", "8"], 8)], ids=["default", "smallest"])
def test_the_command_lays_out_sources_then_methods_as_given(
    extra: list[str], size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures: list = []
    monkeypatch.setattr("matplotlib.pyplot.close", figures.append)
    sources = tmp_path / "sources"
    sources.mkdir()
    for letter in "ABC":
        write_image(sources / f"s1-{letter}.png", torch.rand(1, 100, 110, generator=torch.Generator().manual_seed(ord(letter))))
    methods = {"zeta": tmp_path / "zeta", "alpha": tmp_path / "alpha"}  # not in alphabetical order
    for folder in methods.values():
        folder.mkdir()
        write_image(folder / "s1.png", torch.rand(1, 100, 110))
    fused = [f"--fused={name}={folder}" for name, folder in methods.items()]
    assert main(["--sources", str(sources), *fused, "--out", str(tmp_path / "fig.PNG"), *extra]) == 0  # any case of .png
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes[:5]] == ["s1: source A", "source B", "source C", "zeta", "alpha"]
    assert all((ax.patches[0].get_width(), ax.patches[0].get_height()) == (size, size) for ax in axes[:5])


def test_mwgf_fused_here_shows_a_bar_over_each_channels_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--baselines mwgf,average``: a bar over mwgf's 500 steps on the gray pair (as gipc-fuse shows it),
    none for average."""
    monkeypatch.setattr("gipc.cli.figure.comparison_figure", lambda *args, **kwargs: None)
    bars = recorded_bars(monkeypatch)
    sources = tmp_path / "sources"
    sources.mkdir()
    for letter in "AB":
        write_image(sources / f"s1-{letter}.png", torch.rand(1, 24, 28, generator=torch.Generator().manual_seed(ord(letter))))
    assert main(["--pairs", str(sources), "--baselines", "mwgf,average", "--out", str(tmp_path / "fig.png")]) == 0
    assert bars == [("mwgf, reconstruction", 500)]


def test_baselines_are_fused_here_each_a_column_after_the_fused_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--baselines average`` on gray sources: (A + B) / 2 for a pair, the sequence's frames in turn,
    ((A + B) / 2 + C) / 2, for three (as ``gipc-fuse --method average`` fuses them), read off the panels."""
    scenes: list = []
    monkeypatch.setattr("gipc.cli.figure.comparison_figure", lambda given, *args, **kwargs: scenes.extend(given))
    sources, ours = tmp_path / "sources", tmp_path / "ours"
    sources.mkdir(), ours.mkdir()
    frames = {letter: torch.randint(0, 256, (1, 24, 28), generator=torch.Generator().manual_seed(ord(letter))) / 255 for letter in "ABC"}
    for letter, frame in frames.items():
        write_image(sources / f"s3-{letter}.png", frame)
        if letter != "C":
            write_image(sources / f"s2-{letter}.png", frame)
    for scene in ("s2", "s3"):
        write_image(ours / f"{scene}.png", frames["A"])
    assert main(["--pairs", str(sources), "--fused", f"ours={ours}", "--baselines", "average", "--out", str(tmp_path / "fig.png")]) == 0
    assert "reading and fusing classics:   0%" in capsys.readouterr().err  # two scenes: a bar while the classics fuse
    a, b, c = frames.values()
    for (scene, panels), expected in zip(scenes, [(a + b) / 2, ((a + b) / 2 + c) / 2]):
        assert [name for name, _ in panels][-2:] == ["ours", "average"], scene
        assert torch.allclose(panels[-1][1], expected, atol=1e-6), scene
    for baselines, message in (("nope", "--baselines: no baseline nope; choose from average, "), ("average", "'average' is both a --fused folder and a --baseline")):
        capsys.readouterr()
        assert main(["--pairs", str(sources), "--fused", f"{baselines}={ours}", "--baselines", baselines, "--out", str(tmp_path / "f2.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gipc-figure: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "f2.png").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--crop", "0"], "--crop 0: the zoomed crop needs at least 8 px a side"),
    (["--crop", "-5"], "--crop -5: the zoomed crop needs at least 8 px a side"),
    (["--crop", "7"], "--crop 7: the zoomed crop needs at least 8 px a side"),
    (["--out", "fig.jpg"], "--out fig.jpg: the figure is a PNG; name it <name>.png"),
])
def test_bad_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--sources", str(tmp_path), "--out", "fig.png", *extra])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip() == f"gipc-figure: error: {message} (see --help)"


def test_a_method_without_one_scene_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, fused = tmp_path / "sources", tmp_path / "fused"
    for folder in (sources, fused):
        folder.mkdir()
    for scene in ("s1", "s2"):
        for letter in "AB":
            write_image(sources / f"{scene}-{letter}.png", torch.rand(1, 24, 24))
    write_image(fused / "s1.png", torch.rand(1, 24, 24))  # s2 was never fused
    out = tmp_path / "fig.png"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no image for 1 scene(s): s2" in err and "--allow-missing" not in err
    assert not out.exists()


def test_difference_images_are_zero_where_a_method_copied_source_a() -> None:
    """A copy of A on the left and of B on the right differs from A by |B - A| on the right alone;
    the scale is the 0.99 quantile of |B - A| (here 0.4 on half the pixels, 0 on the rest: 0.4);
    an RGB image is compared through its luminance (a gray 0.3 is Y 0.3)."""
    a = torch.zeros(1, 8, 10)
    b = torch.full((1, 8, 10), 0.4)
    copy = torch.cat([a[..., :5], b[..., 5:]], dim=-1)
    rgb = torch.full((3, 8, 10), 0.3)
    (of_a, of_b, of_copy, of_rgb), scale = differences([a, b, copy, rgb])
    assert torch.equal(of_a, torch.zeros(8, 10)) and torch.allclose(of_b, torch.full((8, 10), 0.4))
    assert torch.equal(of_copy[:, :5], torch.zeros(8, 5)) and torch.equal(of_copy[:, 5:], of_b[:, 5:])
    assert torch.allclose(of_rgb, torch.full((8, 10), 0.3), atol=1e-6)
    assert DIFFERENCE_SCALE_QUANTILE == 0.99 and scale == pytest.approx(0.4)
    assert differences([a, a.clone()])[1] == pytest.approx(1 / 255)  # identical sources: one 8-bit step, not 0


def test_figure_difference_row_shows_each_image_against_source_a(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures: list = []
    monkeypatch.setattr("matplotlib.pyplot.close", figures.append)
    g = torch.Generator().manual_seed(3)
    a, b, fused = (torch.rand(1, 40, 48, generator=g) for _ in range(3))
    comparison_figure([("s1", [("source A", a), ("source B", b), ("ours", fused)])], tmp_path / "f.png", crop=16, difference=True)
    axes = figures[0].axes  # row-major: 3 whole panels, 3 crops, 3 differences
    assert len(axes) == 9 and not axes[6].images  # nothing under source A: it is the reference
    assert [ax.get_title() for ax in axes[7:]] == ["|source B - source A|", "|ours - source A|"]
    for ax, image in zip(axes[7:], (b, fused)):
        assert np.allclose(np.asarray(ax.images[0].get_array()), (image - a).abs()[0].numpy())
        assert ax.images[0].get_clim() == axes[7].images[0].get_clim()  # one scale for the scene


def test_a_fused_image_of_another_size_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, fused = tmp_path / "sources", tmp_path / "fused"
    for folder in (sources, fused):
        folder.mkdir()
    for letter in "AB":
        write_image(sources / f"s1-{letter}.png", torch.rand(1, 24, 30))
    write_image(fused / "s1.png", torch.rand(1, 24, 24))
    out = tmp_path / "fig.png"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(out), "--difference"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"gipc-figure: error: {fused / 's1.png'} is 24x24 but the sources of scene 's1' are 30x24; fused images must keep the sources' size"
    assert not out.exists()
    write_image(fused / "s1.png", torch.rand(1, 24, 30), overwrite=True)
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(out), "--difference"]) == 0 and out.is_file()


def test_gipc_figure_starts_without_the_metrics() -> None:
    """A figure scores nothing: torchmetrics (0.8 s of its 2.5 s --help) came in through gipc.evaluate's imports."""
    heavy = ("torchmetrics", "gipc.metrics")
    code = f"import sys, gipc.cli.figure; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_figure_of_several_scenes_shows_its_drawing_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """20 Lytro scenes of four panels take 14 s to draw and write: a bar, a step per scene, one for rendering, one for writing."""
    scenes = [(f"s{i}", [("source A", torch.rand(1, 24, 24)), ("source B", torch.rand(1, 24, 24))]) for i in range(2)]
    comparison_figure(scenes, tmp_path / "fig.png", crop=8, progress=True)
    assert "drawing:   0%|          | 0/4" in capsys.readouterr().err  # the bar, gone once the figure is written (leave=False)
    comparison_figure(scenes, tmp_path / "quiet.png", crop=8)
    assert capsys.readouterr().err == ""


def test_a_figure_keeps_every_colour_unless_a_palette_is_asked_for(tmp_path: Path) -> None:
    """A 256-colour palette wiped out a source's fine print in the README's crops: full RGB is the default."""
    ramp = torch.linspace(0, 1, 64).expand(3, 48, 64).clone()
    ramp[1] = ramp[1].flip(-1)  # red up, green down: more than 256 colours once drawn with interpolation
    scenes = [("s", [("source A", ramp), ("source B", ramp.roll(8, -1))])]
    full, small = comparison_figure(scenes, tmp_path / "full.png", crop=16), comparison_figure(scenes, tmp_path / "small.png", crop=16, palette=True)
    with Image.open(full) as image:
        assert image.mode == "RGB" and len(image.getcolors(1 << 24)) > 256
    with Image.open(small) as image:
        assert image.mode == "P" and len(image.getcolors(256)) <= 256


def test_a_landscape_scenes_rows_are_as_high_as_its_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row was a square panel high: a landscape scene's whole images floated in white."""
    figures: list = []
    monkeypatch.setattr("matplotlib.pyplot.close", figures.append)
    wide = torch.rand(1, 30, 60)  # aspect 1 : 2
    comparison_figure([("s", [("source A", wide), ("source B", wide)])], tmp_path / "f.png", crop=16)
    whole, _, crop, _ = (ax.get_position().height for ax in figures[0].axes)
    assert whole < crop * 0.7  # a whole panel's cell is half a panel high, plus its title; the square crop's a whole one
