"""Comparison figures: the crop lands where the sources differ in detail; the figure is written whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from gipc.figures import decision_window
from gipc.cli.figure import main
from gipc.imaging import write_image


def test_crop_window_lands_where_only_one_source_has_detail() -> None:
    flat = torch.full((1, 120, 160), 0.5)
    detailed = flat.clone()
    detailed[:, 70:100, 20:50] = torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(0))
    top, left = decision_window([detailed, flat], 32)
    assert 70 - 32 < top <= 70 and 20 - 32 < left <= 20  # the window overlaps the textured square
    assert top + 32 > 70 and left + 32 > 20


def test_figure_is_written_and_never_over_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, fused = tmp_path / "sources", tmp_path / "fused"
    for folder in (sources, fused):
        folder.mkdir()
    for letter in "ABC":
        write_image(sources / f"s1-{letter}.png", torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(ord(letter))))
    write_image(fused / "s1-fused.png", torch.rand(3, 40, 48))
    out = tmp_path / "fig.png"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(out), "--crop", "16"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as written:
        assert written.mode == "P"  # a palette PNG, small enough to commit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "fused", "sources"]  # no temp file left
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["--sources", str(sources), "--out", str(out)]) == 2
    assert "fig.png already exists; choose another name or pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(fused / "s1-fused.png"), "--overwrite"]) == 2
    assert "it is one of the inputs" in capsys.readouterr().err  # not even --overwrite replaces an input
    assert main(["--sources", str(sources), "--out", str(out), "--crop", "16", "--overwrite"]) == 0
    assert out.read_bytes() != before  # replaced: one panel fewer


@pytest.mark.parametrize(("extra", "message"), [
    (["--crop", "0"], "--crop 0: the zoomed crop needs at least 8 px a side"),
    (["--crop", "-5"], "--crop -5: the zoomed crop needs at least 8 px a side"),
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
