"""The eval command: scores against direct metric calls and closed forms, file matching, tables, bad input."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from scipy import ndimage

from gipc.baselines import BASELINES, average
from gipc.color import fuse_color
from gipc.errors import EvalInputError
from gipc.evaluate import FolderMethod, evaluate_pairs, match_stems
from gipc.cli.evaluate import main
from gipc.data.scene import Scene
from gipc.imaging import read_image
from gipc.metrics import EXTRA_NAMES, METRIC_NAMES, fusion_metrics, qmi, qy

from helpers import recorded_bars

SIZE = 48
# 48 px images get 3 of MS-SSIM's 5 scales; the warning says so once, which is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:MS-SSIM on images under 176 px")


def _smooth_gray(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A uint8 image with structure at several scales (so every metric is far from its degenerate value)."""
    coarse = rng.uniform(0, 255, (size // 8, size // 8))
    image = np.kron(coarse, np.ones((8, 8))) + rng.normal(0, 20, (size, size))
    return np.clip(image, 0, 255).round().astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(array).save(path)
    return path


@pytest.fixture
def scenes(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Two gray pairs s1, s2 and a fused folder holding F = A, named by both accepted patterns."""
    rng = np.random.default_rng(0)
    sources, fused = tmp_path / "src", tmp_path / "fused"
    arrays = {}
    for name, fused_name in (("s1", "s1-fused.png"), ("s2", "S2.png")):
        a, b = _smooth_gray(rng), _smooth_gray(rng)
        _save(sources / f"{name}-A.png", a)
        _save(sources / f"{name}-B.png", b)
        _save(fused / fused_name, a)
        arrays[name] = (a, b)
    return sources, fused, arrays


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255.0)[None, None]


def test_scores_equal_direct_metrics_and_closed_forms(scenes, tmp_path: Path) -> None:
    sources, fused, arrays = scenes
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(out)]) == 0
    rows = _rows(out / "metrics.csv")
    assert [(r["image"], r["method"]) for r in rows] == [("s1", "ours"), ("s2", "ours")]
    for row in rows:
        a, b = arrays[row["image"]]
        direct = fusion_metrics(_tensor(a), _tensor(b), _tensor(a))
        assert set(row) == {"image", "method", *METRIC_NAMES}
        for name in METRIC_NAMES:
            assert float(row[name]) == pytest.approx(float(direct[name][0]), abs=1e-12)
        # F = A: r(A, F) = 1, so CC = (1 + r(A, B)) / 2.
        r_ab = np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]
        assert float(row["CC"]) == pytest.approx((1 + r_ab) / 2, abs=1e-12)
        p = np.bincount(a.ravel(), minlength=256) / a.size
        assert float(row["EN"]) == pytest.approx(-(p[p > 0] * np.log2(p[p > 0])).sum(), abs=1e-12)
        assert float(row["SD"]) == pytest.approx(a.astype(float).std(), abs=1e-9)
    table = (out / "metrics.md").read_text()
    for name in METRIC_NAMES:
        values = np.array([float(r[name]) for r in rows])
        assert f"{values.mean():.4f} ± {values.std():.4f}" in table
    assert "| ours | 2 |" in table


def test_focus_sequences_are_scored_over_every_source_and_classics_fuse_them_in_turn(tmp_path: Path, capsys) -> None:
    """Three sources per scene, F = B: CC is the mean of r(S, F) over the three (one of them 1), EN
    and SD are F's own; the average baseline fuses in turn, ((A + B) / 2 + C) / 2. Flags defined for
    pairs are refused in one line."""
    rng = np.random.default_rng(7)
    sources, fused = tmp_path / "seq", tmp_path / "fused"
    a, b, c = (_smooth_gray(rng) // 4 * 4 for _ in range(3))  # multiples of 4: the average in turn is whole levels
    for letter, array in zip("ABC", (a, b, c)):
        _save(sources / f"s-{letter}.png", array)
    _save(fused / "s.png", b)
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--baselines", "average", "--out", str(out)]) == 0
    assert capsys.readouterr().err.splitlines()[0] == "gipc-eval: scoring 1 scene(s): ours, average"
    ours, mean = _rows(out / "metrics.csv")
    assert set(ours) == {"image", "method", *METRIC_NAMES}
    r = [np.corrcoef(x.ravel().astype(float), b.ravel().astype(float))[0, 1] for x in (a, c)]
    assert float(ours["CC"]) == pytest.approx((r[0] + 1 + r[1]) / 3, abs=1e-12)
    p = np.bincount(b.ravel(), minlength=256) / b.size
    assert float(ours["EN"]) == pytest.approx(-(p[p > 0] * np.log2(p[p > 0])).sum(), abs=1e-12)
    assert float(ours["SD"]) == pytest.approx(b.astype(float).std(), abs=1e-9)
    in_turn = (a.astype(int) + b + 2 * c.astype(int)) // 4  # ((A + B) / 2 + C) / 2, whole levels
    assert float(mean["SD"]) == pytest.approx(in_turn.std(), abs=1e-9)
    for flag in (["--extra-metrics", "QY"], ["--maps", str(fused)]):
        assert main(["--sources", str(sources), "--fused", f"ours={fused}", *flag]) == 2
        assert capsys.readouterr().err.strip() == (
            f"gipc-eval: error: {flag[0]} scores pairs, and {sources} holds focus sequences of up to 3 sources; "
            "score them without it (EN, SF, SD, CC, Q^AB/F and MS-SSIM read every source)"
        )


def test_a_folder_of_pairs_and_sequences_is_scored_with_a_note_that_its_means_mix_them(tmp_path: Path, capsys) -> None:
    """A pair and a scene of three in one folder: both are scored, with one note naming the two kinds;
    a folder of one kind gets none."""
    rng = np.random.default_rng(8)
    sources, fused = tmp_path / "mixed", tmp_path / "fused"
    for name, letters in (("p", "AB"), ("s", "ABC")):
        arrays = [_smooth_gray(rng) for _ in letters]
        for letter, array in zip(letters, arrays):
            _save(sources / f"{name}-{letter}.png", array)
        _save(fused / f"{name}.png", arrays[0])
    assert main(["--sources", str(sources), "--fused", f"ours={fused}"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == [
        f"gipc-eval: note: {sources} holds scenes of 2 and 3 sources; each mean averages them all, and more sources score lower "
        "(Q^AB/F keeps each pixel's edges of one source of them): score each kind in a folder of its own to compare them"
    ]
    (sources / "s-C.png").unlink()
    assert main(["--sources", str(sources), "--fused", f"ours={fused}"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_extra_metrics_add_their_columns_after_the_six(scenes, tmp_path: Path) -> None:
    """F = A copies one source whole: Q_MI = 2 (1/2 + MI(B, A) / (H(B) + H(A))) and each row equals
    the functions' own scores."""
    sources, fused, arrays = scenes
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--extra-metrics", "QMI, QY", "--out", str(out)]) == 0
    rows = _rows(out / "metrics.csv")
    assert list(rows[0]) == ["image", "method", *METRIC_NAMES, "QMI", "QY"]
    for row in rows:
        a, b = (_tensor(x) for x in arrays[row["image"]])
        assert float(row["QMI"]) == pytest.approx(qmi(a, b, a).item(), abs=1e-12) and float(row["QMI"]) > 1.0
        assert float(row["QY"]) == pytest.approx(qy(a, b, a).item(), abs=1e-12)
    assert "| method | n | EN | SF | SD | CC | QABF | MSSSIM | QMI | QY |" in (out / "metrics.md").read_text()


def test_extra_metrics_all_adds_the_surveys_seven(scenes, tmp_path: Path) -> None:
    sources, fused, _ = scenes
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--extra-metrics", "all", "--out", str(out)]) == 0
    assert list(_rows(out / "metrics.csv")[0]) == ["image", "method", *METRIC_NAMES, "QMI", "QNCIE", "QM", "QSF", "QP", "QY", "QCB"]


def test_baselines_all_scores_every_classic_once(scenes, tmp_path: Path) -> None:
    sources, _, _ = scenes
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--baselines", "gff,all", "--out", str(out)]) == 0
    methods = list(dict.fromkeys(row["method"] for row in _rows(out / "metrics.csv")))
    assert sorted(methods) == sorted(BASELINES) and methods[0] == "gff"


def test_mwgf_fused_on_the_spot_shows_a_bar_over_each_channels_steps(scenes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As gipc-fuse's: mwgf's 500 reconstruction steps (a minute a 12 MP pair) get a bar for each
    gray scene; gff, one pass, none."""
    sources, _, _ = scenes
    bars = recorded_bars(monkeypatch)
    assert main(["--sources", str(sources), "--baselines", "mwgf,gff", "--out", str(tmp_path / "out")]) == 0
    assert bars == [("mwgf, reconstruction", 500)] * 2


def test_several_folders_and_baselines_make_one_table(scenes, tmp_path: Path) -> None:
    sources, fused, arrays = scenes
    other = tmp_path / "other"
    for name, (a, b) in arrays.items():
        _save(other / f"{name}_fused.png", b)
    out = tmp_path / "out"
    argv = ["--sources", str(sources), "--fused", f"ours={fused}", "--fused", f"copy_b={other}", "--baselines", "average", "--out", str(out)]
    assert main(argv) == 0
    rows = _rows(out / "metrics.csv")
    assert [r["method"] for r in rows] == ["ours", "ours", "copy_b", "copy_b", "average", "average"]
    # F = B scores CC = (1 + r(A, B)) / 2 too: the same closed form with the sources' roles swapped.
    by_key = {(r["image"], r["method"]): r for r in rows}
    for name in arrays:
        assert float(by_key[name, "copy_b"]["CC"]) == pytest.approx(float(by_key[name, "ours"]["CC"]), abs=1e-12)
        a, b = (_tensor(x) for x in arrays[name])
        expected = fusion_metrics(a, b, fuse_color(average, a, b))["QABF"][0]
        assert float(by_key[name, "average"]["QABF"]) == pytest.approx(float(expected), abs=1e-12)
    table = (out / "metrics.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["ours", "copy_b", "average"]


def test_a_folder_whose_name_holds_an_equals_sign_is_a_folder_named_by_itself(scenes, tmp_path: Path) -> None:
    sources, fused, _ = scenes
    odd = fused.rename(tmp_path / "lr=0.1")
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", str(odd), "--out", str(out)]) == 0
    assert [r["method"] for r in _rows(out / "metrics.csv")] == ["lr=0.1", "lr=0.1"]


def test_matching_rule(tmp_path: Path) -> None:
    gray = np.zeros((4, 4), np.uint8)
    for name in ("lytro-01-fused.png", "LYTRO-02.jpg", "lytro-03_fused.tif", "unrelated.png"):
        _save(tmp_path / name, gray)
    (tmp_path / "lytro-04.txt").write_text("not an image")
    found = match_stems(["lytro-01", "lytro-02", "lytro-03", "lytro-04"], tmp_path, ("", "-fused", "_fused"), "fused")
    assert {k: v.name for k, v in found.items()} == {
        "lytro-01": "lytro-01-fused.png",
        "lytro-02": "LYTRO-02.jpg",
        "lytro-03": "lytro-03_fused.tif",
    }
    _save(tmp_path / "lytro-01.png", gray)
    with pytest.raises(EvalInputError, match="2 files for scene 'lytro-01'"):
        match_stems(["lytro-01"], tmp_path, ("", "-fused", "_fused"), "fused")


def test_gray_fused_of_rgb_sources_scores_its_luminance(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = (np.stack([_smooth_gray(rng) for _ in range(3)], axis=-1) for _ in range(2))
    rgb, gray = _save(tmp_path / "rgb.png", a), tmp_path / "gray.png"
    luma = (read_image(rgb).pixels * 255).round().double()
    weights = torch.tensor([0.298936021293775, 0.587043074451121, 0.114020904255103], dtype=torch.float64)
    _save(gray, torch.floor((luma * weights[:, None, None]).sum(0) + 0.5).numpy().astype(np.uint8))
    scene = Scene("s", *(torch.from_numpy(x / 255.0).float().permute(2, 0, 1) for x in (a, b)))
    rows = evaluate_pairs([scene], {"rgb": FolderMethod({"s": rgb}), "gray": FolderMethod({"s": gray})})
    for name in METRIC_NAMES:
        assert rows[0][name] == pytest.approx(rows[1][name], abs=1e-12), name


def test_rgb_fused_of_gray_sources_scores_its_luminance(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a, b = _smooth_gray(rng), _smooth_gray(rng)
    rgb = np.stack([_smooth_gray(rng) for _ in range(3)], axis=-1)  # three different channels: red alone is not the luminance
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # Matlab's rgb2gray
    gray = np.floor((rgb.astype(np.float64) * weights).sum(-1) + 0.5).astype(np.uint8)
    fused = {"rgb": _save(tmp_path / "rgb.png", rgb), "gray": _save(tmp_path / "gray.png", gray)}
    scene = Scene("s", *(torch.from_numpy(x / 255.0).float()[None] for x in (a, b)))
    rows = evaluate_pairs([scene], {name: FolderMethod({"s": path}) for name, path in fused.items()})
    for name in METRIC_NAMES:
        assert rows[0][name] == pytest.approx(rows[1][name], abs=1e-12), name


@pytest.mark.parametrize("suffix", ["-GT", "_F"])  # gipc's, Real-MFF's
def test_ground_truth_adds_psnr_and_ssim(scenes, tmp_path: Path, suffix: str) -> None:
    sources, fused, arrays = scenes
    gt = tmp_path / "gt"
    for name, (a, b) in arrays.items():
        _save(gt / f"{name}{suffix}.png", b)  # F = A against "ground truth" B: a known MSE
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", str(fused), "--method", "ours", "--gt", str(gt), "--out", str(out)]) == 0
    for row in _rows(out / "metrics.csv"):
        a, b = (x.astype(float) for x in arrays[row["image"]])
        assert float(row["PSNR"]) == pytest.approx(10 * math.log10(255**2 / ((a - b) ** 2).mean()), abs=1e-6)  # torchmetrics: float32
        assert float(row["SSIM"]) == pytest.approx(_ssim_by_hand(a, b), abs=1e-9)


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM of two grey-level images, written out: Gaussian window sigma 1.5 cut at 5 px
    (11 taps), K1 0.01 and K2 0.03 of the range 255, the map averaged over the whole image, its borders
    mirrored without repeating the edge pixel (scipy's "mirror", torch's "reflect")."""
    blur = lambda z: ndimage.gaussian_filter(z, 1.5, mode="mirror", truncate=5 / 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())


def _assert_refused(capsys, argv: list[str], fragment: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("gipc-eval: error:") and fragment in err, err


def test_missing_fused_image_is_one_line_and_writes_nothing(scenes, tmp_path: Path, capsys) -> None:
    sources, fused, _ = scenes
    (fused / "S2.png").unlink()
    out = tmp_path / "out"
    _assert_refused(capsys, ["--sources", str(sources), "--fused", str(fused), "--out", str(out)], "no image for 1 scene(s): s2")
    assert not out.exists()
    assert main(["--sources", str(sources), "--fused", str(fused), "--allow-missing", "--out", str(out)]) == 0
    assert [r["image"] for r in _rows(out / "metrics.csv")] == ["s1"]
    assert "gipc-eval: warning: fused has no image for 1 scene(s): s2\n" in capsys.readouterr().err


def test_many_missing_fused_images_are_counted_and_the_first_eight_named(tmp_path: Path, capsys) -> None:
    """11 scenes, one fused: the line names 10 missing, lists the first 8 in order and says 2 more."""
    image = _smooth_gray(np.random.default_rng(1))
    for index in range(11):
        _save(tmp_path / "src" / f"s{index:02d}-A.png", image)
        _save(tmp_path / "src" / f"s{index:02d}-B.png", image)
    _save(tmp_path / "fused" / "s05.png", image)
    listed = ", ".join(f"s{index:02d}" for index in (0, 1, 2, 3, 4, 6, 7, 8))
    argv = ["--sources", str(tmp_path / "src"), "--fused", str(tmp_path / "fused"), "--out", str(tmp_path / "out")]
    _assert_refused(capsys, argv, f"no image for 10 scene(s): {listed} and 2 more;")


def test_size_mismatch_is_one_line_and_writes_nothing(scenes, tmp_path: Path, capsys) -> None:
    sources, fused, arrays = scenes
    _save(fused / "S2.png", arrays["s2"][0][:, :-3])
    out = tmp_path / "out"
    _assert_refused(capsys, ["--sources", str(sources), "--fused", str(fused), "--out", str(out)], f"S2.png is {SIZE - 3}x{SIZE}")
    assert not out.exists()


def test_sizes_are_checked_before_any_scoring_and_the_run_names_what_it_scores(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    sources, fused, arrays = scenes
    gt = tmp_path / "gt"
    for name, (a, _) in arrays.items():
        _save(gt / f"{name}.png", a)
    _save(gt / "s1.png", arrays["s1"][0][:-2])  # one ground truth two rows short
    scored = []
    monkeypatch.setattr("gipc.cli.evaluate.evaluate_pairs", lambda *args, **kwargs: scored.append(1) or [])
    _assert_refused(capsys, ["--sources", str(sources), "--fused", str(fused), "--gt", str(gt)], f"s1.png is {SIZE}x{SIZE - 2}")
    assert not scored  # refused from the headers, before the first pair was scored
    _save(gt / "s1.png", arrays["s1"][0])
    main(["--sources", str(sources), "--fused", f"ours={fused}", "--gt", str(gt), "--baselines", "average"])
    assert capsys.readouterr().err.splitlines()[0] == "gipc-eval: scoring 2 pair(s) and ground truth: ours, average"
    assert scored == [1]


def test_non_empty_out_needs_overwrite(scenes, tmp_path: Path, capsys) -> None:
    sources, fused, _ = scenes
    out = tmp_path / "out"
    _save(out / "keep.png", np.zeros((4, 4), np.uint8))
    argv = ["--sources", str(sources), "--fused", str(fused), "--out", str(out)]
    _assert_refused(capsys, argv, "is not empty")
    assert sorted(p.name for p in out.iterdir()) == ["keep.png"]
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["keep.png", "metrics.csv", "metrics.md", "metrics.tex"]


def _scored_scenes(monkeypatch, stop_at: int | None = None) -> list[str]:
    """The scenes scored from here on, by name; with ``stop_at``, Ctrl-C as that many have been."""
    import gipc.evaluate
    from gipc.report import score_batch as score

    names: list[str] = []

    def counted(scene_names, *args, **kwargs):
        if stop_at is not None and len(names) == stop_at:
            raise KeyboardInterrupt
        names.extend(scene_names)
        return score(scene_names, *args, **kwargs)

    monkeypatch.setattr(gipc.evaluate, "score_batch", counted)
    return names


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_an_interrupted_run_keeps_its_scores_and_resume_scores_only_the_rest(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    sources, fused, _ = scenes
    argv = ["--sources", str(sources), "--fused", str(fused), "--baselines", "average", "--out", str(tmp_path / "whole")]
    assert main(argv) == 0
    whole = _tables(tmp_path / "whole")
    assert sorted(whole) == ["metrics.csv", "metrics.md", "metrics.tex"]  # the journal goes once the tables are written
    out = tmp_path / "out"
    argv[-1] = str(out)
    scored = _scored_scenes(monkeypatch, stop_at=1)
    capsys.readouterr()
    assert main(argv) == 130
    journal = out / "metrics.partial.jsonl"
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"gipc-eval: interrupted; the scores of 1 of 2 pairs are kept in {journal}; the same command with --resume scores the rest"
    )
    assert scored == ["s1"] and [p.name for p in out.iterdir()] == [journal.name]
    _assert_refused(capsys, argv, f"{out} holds an interrupted run of gipc-eval (metrics.partial.jsonl); add --resume to go on with it")
    scored = _scored_scenes(monkeypatch)
    assert main([*argv, "--resume"]) == 0
    assert scored == ["s2"]  # s1 is neither read nor scored again
    assert "scoring 1 of 2 pair(s) (the rest scored before): fused, average" in capsys.readouterr().err
    assert _tables(out) == whole  # the same floats, to the byte, as one uninterrupted run


def test_resume_scores_again_a_pair_whose_files_changed(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    sources, fused, arrays = scenes
    out = tmp_path / "out"
    argv = ["--sources", str(sources), "--fused", str(fused), "--out", str(out)]
    _scored_scenes(monkeypatch, stop_at=1)
    assert main(argv) == 130
    _save(fused / "s1-fused.png", arrays["s1"][1])  # s1's fused image made again (now B) after the interruption
    scored = _scored_scenes(monkeypatch)
    assert main([*argv, "--resume"]) == 0
    assert scored == ["s1", "s2"]
    assert "scoring 2 of 2 pair(s) (the rest scored before; 1 of the pairs scored before changed since, scored again)" in capsys.readouterr().err
    assert main([*argv[:-1], str(tmp_path / "fresh")]) == 0
    assert _tables(out) == _tables(tmp_path / "fresh")


def test_a_failure_halfway_keeps_the_scores_before_it(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    sources, fused, arrays = scenes
    good = (fused / "S2.png").read_bytes()
    (fused / "S2.png").write_bytes(good[: len(good) // 2])  # its header reads, its pixels do not
    out = tmp_path / "out"
    argv = ["--sources", str(sources), "--fused", str(fused), "--out", str(out)]
    assert main(argv) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"gipc-eval: error: {fused / 'S2.png'}: truncated") and last.endswith(
        f"the scores of 1 of 2 pairs are kept in {out / 'metrics.partial.jsonl'}; the same command with --resume scores the rest once that is fixed"
    )
    (fused / "S2.png").write_bytes(good)
    scored = _scored_scenes(monkeypatch)
    assert main([*argv, "--resume"]) == 0 and scored == ["s2"]


def test_resume_needs_its_own_run_and_settings(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    sources, fused, _ = scenes
    out = tmp_path / "out"
    argv = ["--sources", str(sources), "--fused", str(fused), "--out", str(out)]
    _assert_refused(capsys, [*argv, "--resume"], f"nothing to go on with: {out} holds no interrupted work (metrics.partial.jsonl)")
    _assert_refused(capsys, [*argv, "--resume", "--overwrite"], "--resume goes on in the --out folder of the run it continues, without --overwrite")
    _scored_scenes(monkeypatch, stop_at=1)
    assert main(argv) == 130
    capsys.readouterr()
    _assert_refused(capsys, [*argv, "--resume", "--baselines", "average"],
                    "was started with other settings (--baselines was not given, now average); give the same settings, or start afresh (--overwrite instead of --resume)")
    scored = _scored_scenes(monkeypatch)
    assert main([*argv, "--overwrite"]) == 0 and scored == ["s1", "s2"]  # afresh


def test_an_interrupt_before_any_pair_is_scored_writes_nothing(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    sources, fused, _ = scenes
    made, given = tmp_path / "made", tmp_path / "given"
    given.mkdir()
    _scored_scenes(monkeypatch, stop_at=0)
    for out in (made, given):
        assert main(["--sources", str(sources), "--fused", str(fused), "--out", str(out)]) == 130
        assert capsys.readouterr().err.splitlines()[-1] == "gipc-eval: interrupted; nothing written"
    assert not made.exists() and list(given.iterdir()) == []  # a folder the user made stays


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--baselines", "average,nope"], "--baselines: no baseline nope; choose from average, laplacian_energy, "),
        (["--fused", "x=/nonexistent/folder"], "does not exist"),
        ([], "nothing to score"),
        (["--baselines", "average", "--wandb"], "--wandb keeps its run under --out"),
        (["--fused", "ours={fused}", "--fused", "ours={fused}"], "two --fused folders are both called 'ours'; name them: --fused NAME=DIR"),
        (["--fused", "ours={fused}", "--method", "mine"], "--fused ours={fused} already names its method; drop --method mine"),
        (["--method", "mine", "--baselines", "average"], "--method names one --fused DIR"),
        (["--fused", "{empty}", "--allow-missing"], "no image for 2 scene(s): s1, s2; name fused files <scene>.<ext> or <scene>-fused.<ext>"),
        (["--fused", "{fused}", "--out", "{fused}", "--overwrite"], "output folder {fused} holds the input {fused}"),
        (["--fused", "{fused}", "--extra-metrics", "QY,QS"], "--extra-metrics: no metric QS; choose from QMI, QNCIE, QM, QSF, QP, QY, QCB or all"),
    ],
    ids=["unknown-baseline", "missing-folder", "nothing", "wandb-without-out", "one-name-twice", "named-twice", "method-without-folder",
         "empty-folder", "out-is-an-input", "unknown-extra-metric"],
)
def test_bad_options_are_one_line(scenes, tmp_path: Path, capsys, extra: list[str], fragment: str) -> None:
    sources, fused, _ = scenes
    (tmp_path / "empty").mkdir()
    paths = {"fused": fused, "empty": tmp_path / "empty"}
    _assert_refused(capsys, ["--sources", str(sources), *(arg.format(**paths) for arg in extra)], fragment.format(**paths))
    assert sorted(p.name for p in fused.iterdir()) == ["S2.png", "s1-fused.png"]  # nothing written among the inputs


@pytest.mark.slow
def test_lytro_gff_beats_average_on_qabf(lytro_pairs: Path, tmp_path: Path) -> None:
    sources = tmp_path / "pairs"
    sources.mkdir()
    for name in ("lytro-01-A.jpg", "lytro-01-B.jpg", "lytro-02-A.jpg", "lytro-02-B.jpg"):
        (sources / name).symlink_to(lytro_pairs / name)
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--baselines", "average,gff", "--out", str(out)]) == 0
    qabf = {(r["image"], r["method"]): float(r["QABF"]) for r in _rows(out / "metrics.csv")}
    for image in ("lytro-01", "lytro-02"):
        assert qabf[image, "gff"] > qabf[image, "average"] + 0.05


@pytest.mark.slow
def test_wandb_offline_run_holds_the_per_image_table(scenes, tmp_path: Path) -> None:
    sources, fused, _ = scenes
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--out", str(out), "--wandb"]) == 0
    (table,) = out.glob("wandb/offline-run-*/files/media/table/eval/per_image_*.table.json")
    logged = json.loads(table.read_text())
    rows = _rows(out / "metrics.csv")
    assert logged["columns"] == list(rows[0])
    assert [[str(v) for v in row] for row in logged["data"]] == [list(r.values()) for r in rows]
    (table,) = out.glob("wandb/offline-run-*/files/media/table/eval/mean_*.table.json")
    means = json.loads(table.read_text())
    metrics = list(rows[0])[2:]
    assert means["columns"] == ["method", *metrics]
    assert means["data"] == [["ours", *(pytest.approx(np.mean([float(r[m]) for r in rows]), abs=1e-12) for m in metrics)]]


def test_wandb_without_a_mode_logs_as_training_does_and_says_so(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    """``--wandb`` alone is ``auto``: offline here (the tests' WANDB_MODE), online after ``wandb login``."""
    sources, fused, _ = scenes
    modes: list[str] = []
    monkeypatch.setattr("gipc.cli.evaluate.log_wandb", lambda rows, out, mode, config: modes.append(mode) or str(out / "wandb"))
    assert main(["--sources", str(sources), "--fused", str(fused), "--out", str(tmp_path / "out"), "--wandb"]) == 0
    assert modes == ["offline"] and "gipc-eval: W&B offline: WANDB_MODE is offline\n" in capsys.readouterr().err
    assert main(["--sources", str(sources), "--fused", str(fused), "--out", str(tmp_path / "out2"), "--wandb", "online"]) == 0
    assert modes == ["offline", "online"]  # a mode given is taken as it is


def test_a_failed_wandb_upload_exits_2_after_writing_the_tables(scenes, tmp_path: Path, capsys, monkeypatch) -> None:
    sources, fused, _ = scenes

    def offline(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr("gipc.cli.evaluate.log_wandb", offline)
    out = tmp_path / "out"
    assert main(["--sources", str(sources), "--fused", str(fused), "--out", str(out), "--wandb", "online"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "gipc-eval: error: W&B logging failed (RuntimeError: no network); the tables were written"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "metrics.md", "metrics.tex"]


def _pair_set_with_true_maps(root: Path) -> None:
    """A built-set layout: A/, B/ and maps/ (true map: the left 10 of 20 columns)."""
    rng = np.random.default_rng(5)
    true_map = np.zeros((12, 20), dtype=np.uint8)
    true_map[:, :10] = 255
    for sub in ("A", "B", "maps"):
        (root / sub).mkdir(parents=True)
    for name in ("s1", "s2"):
        _save(root / "A" / f"{name}.png", rng.integers(0, 256, (12, 20), dtype=np.uint8))
        _save(root / "B" / f"{name}.png", rng.integers(0, 256, (12, 20), dtype=np.uint8))
        _save(root / "maps" / f"{name}.png", true_map)


def test_maps_are_scored_against_the_true_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, fused, maps = tmp_path / "set", tmp_path / "fused", tmp_path / "maps"
    _pair_set_with_true_maps(sources)
    fused.mkdir()
    maps.mkdir()
    for name in ("s1", "s2"):
        _save(fused / f"{name}-fused.png", np.full((12, 20), 128, dtype=np.uint8))
    near, far = np.zeros((12, 20), dtype=np.uint8), np.zeros((12, 20), dtype=np.uint8)
    near[:, :11] = 255  # one column too many: 12 of 240 pixels wrong, boundary within 2 px
    far[:, :13] = 255  # three too many: 36 wrong
    _save(maps / "s1-map.png", near)
    _save(maps / "s2-map.png", 255 - far)  # inverted: 36 right of 240
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--maps", f"ours={maps}", "--out", str(tmp_path / "out")]) == 0
    rows = {r["image"]: r for r in csv.DictReader(open(tmp_path / "out" / "metrics.csv"))}
    assert float(rows["s1"]["MAP_ACC"]) == pytest.approx(1 - 12 / 240) and float(rows["s1"]["MAP_BF"]) == 1.0
    # The true boundary is columns 9 and 10, the predicted one 12 and 13: of each, the column 2 px from the other is right.
    assert float(rows["s2"]["MAP_ACC"]) == pytest.approx(36 / 240) and float(rows["s2"]["MAP_BF"]) == pytest.approx(0.5)
    # a bare --maps DIR beside one --fused method is that method's
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--maps", str(maps), "--out", str(tmp_path / "bare")]) == 0
    assert (tmp_path / "bare" / "metrics.csv").read_text() == (tmp_path / "out" / "metrics.csv").read_text()
    capsys.readouterr()
    # maps of a method that is not scored (a bare DIR beside two), maps missing a scene, a set without true maps: one line, exit 2
    _assert_refused(capsys, ["--sources", str(sources), "--fused", f"ours={fused}", "--maps", f"theirs={maps}"],
                    "--maps theirs=...: no method 'theirs' to attach them to; name a --fused method (--maps NAME=DIR, NAME one of ours)")
    _assert_refused(capsys, ["--sources", str(sources), "--fused", f"ours={fused}", "--fused", f"b={fused}", "--maps", str(maps)],
                    "--maps maps=...: no method 'maps' to attach them to; name a --fused method (--maps NAME=DIR, NAME one of ours, b)")
    (maps / "s2-map.png").unlink()
    _assert_refused(capsys, ["--sources", str(sources), "--fused", f"ours={fused}", "--maps", f"ours={maps}"],
                    f"--maps ours: folder {maps} has no image for 1 scene(s): s2; name maps <scene>-map.png")
    (sources / "maps" / "s1.png").unlink()
    (sources / "maps" / "s2.png").unlink()
    (sources / "maps").rmdir()
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--maps", f"ours={maps}"]) == 2
    assert "no maps/ folder of true decision maps" in capsys.readouterr().err


def test_gt_may_name_the_sources_own_gt_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources, fused = tmp_path / "set", tmp_path / "fused"
    _pair_set_with_true_maps(sources)
    (sources / "GT").mkdir()
    fused.mkdir()
    for name in ("s1", "s2"):
        _save(sources / "GT" / f"{name}.png", np.full((12, 20), 100, dtype=np.uint8))
        _save(fused / f"{name}-fused.png", np.full((12, 20), 110, dtype=np.uint8))
    psnr = f"{10 * math.log10(255**2 / 10**2):.4f} ± 0.0000"  # every pixel 10 levels off
    for gt in ([], ["--gt", str(sources / "GT")]):  # a built set's test split: read with or without --gt
        assert main(["--sources", str(sources), "--fused", f"ours={fused}", *gt]) == 0
        printed = capsys.readouterr()
        assert printed.err.splitlines()[0] == "gipc-eval: scoring 2 pair(s) and ground truth: ours"
        assert "| ours | 2 |" in printed.out and psnr in printed.out
    other = tmp_path / "gt"
    other.mkdir()
    assert main(["--sources", str(sources), "--fused", f"ours={fused}", "--gt", str(other)]) == 2
    assert "has its own GT/ folder" in capsys.readouterr().err


def test_help_lists_every_extra_metric_and_starts_without_the_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    """The help names the extra metrics itself: importing them (torchmetrics) made --help take 2.7 s, not 1.6."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f"tables: {', '.join(EXTRA_NAMES)}, or all" in " ".join(capsys.readouterr().out.split())
    code = "import sys, gipc.cli.evaluate; print('torchmetrics' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_grayscale_images_of_colour_sources_get_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every metric reads luminance: a method that drops the colour loses nothing in the table, so the command says so."""
    rng = np.random.default_rng(0)
    for name in ("s1", "s2"):
        for letter in "AB":
            _save(tmp_path / "set" / f"{name}-{letter}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        colour = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        _save(tmp_path / "colour" / f"{name}-fused.png", colour)
    _save(tmp_path / "gray" / "s1-fused.png", rng.integers(0, 256, (20, 24), dtype=np.uint8))
    _save(tmp_path / "gray" / "s2-fused.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    assert main(["--sources", str(tmp_path / "set"), "--fused", f"c={tmp_path / 'colour'}", "--fused", f"g={tmp_path / 'gray'}"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == ["gipc-eval: note: g: 1 of its 2 images are grayscale where the sources are colour; every metric reads "
                     "luminance, so the colour they lack does not count against them"]


def test_a_wandb_mode_wandb_cannot_read_stops_gipc_eval_before_any_scoring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    rng = np.random.default_rng(0)
    for letter in "AB":
        _save(tmp_path / "set" / f"s-{letter}.png", rng.integers(0, 256, (20, 24), dtype=np.uint8))
    _save(tmp_path / "f" / "s-fused.png", rng.integers(0, 256, (20, 24), dtype=np.uint8))
    monkeypatch.setenv("WANDB_MODE", "")
    assert main(["--sources", str(tmp_path / "set"), "--fused", f"ours={tmp_path / 'f'}", "--out", str(tmp_path / "out"), "--wandb", "offline"]) == 2
    assert capsys.readouterr().err.strip() == "gipc-eval: error: WANDB_MODE='' is no W&B mode; set it to online, offline or disabled, or unset it (unset WANDB_MODE)"
    assert not (tmp_path / "out").exists()
