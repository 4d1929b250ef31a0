"""One grouping of source files and one suffix set, the same for gipc-fuse, gipc-eval and the loaders; one way every command ends."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Callable, NoReturn

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from gipc.cli.common import guarded
from gipc.data.datasets import PairFolder, SequenceFolder
from gipc.data.sources import IMAGE_SUFFIXES, files_by_stem, group_sources, image_files, raw_companions, set_aside, stack_folders, stack_frames
from gipc.errors import DataError, out_of_memory
from gipc.fuse import RECORD
from gipc.cli.evaluate import main as eval_main
from gipc.cli.fuse import main as fuse_main
from gipc.imaging import read_image


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()


def test_groups_by_name_in_focus_order(tmp_path: Path) -> None:
    _touch(tmp_path, "s2-B.jpg", "s1-B.png", "s2-A.jpg", "s1-A.png", "s2-C.jpg", "README.txt")
    assert group_sources(tmp_path) == [
        ("s1", (tmp_path / "s1-A.png", tmp_path / "s1-B.png")),
        ("s2", (tmp_path / "s2-A.jpg", tmp_path / "s2-B.jpg", tmp_path / "s2-C.jpg")),
    ]


def test_groups_sort_by_name_not_by_file_name(tmp_path: Path) -> None:
    # "x 2-A.png" sorts before "x-A.png" (a space before "-"), but the name "x" before "x 2"; a name may hold "-".
    _touch(tmp_path, "x 2-A.png", "x 2-B.png", "x-A.png", "x-B.png", "lytro-01-A.jpg", "lytro-01-B.jpg")
    assert [name for name, _ in group_sources(tmp_path)] == ["lytro-01", "x", "x 2"]


def test_only_files_are_images(tmp_path: Path) -> None:
    _touch(tmp_path, "x-A.png", "x-B.png", "x-C.png/inside.txt")  # a folder named like an image is no source
    assert [p.name for p in image_files(tmp_path)] == ["x-A.png", "x-B.png"]
    assert group_sources(tmp_path) == [("x", (tmp_path / "x-A.png", tmp_path / "x-B.png"))]


def test_groups_by_subfolder_and_gt_is_no_source(tmp_path: Path) -> None:
    # gipc-build-data writes A/ B/ GT/ maps/: only folders named by one capital letter hold sources.
    _touch(tmp_path, "A/x.png", "B/x.png", "A/y.jpg", "B/y.png", "GT/x.png", "GT/y.png", "maps/x.png", "maps/y.png")
    assert group_sources(tmp_path) == [
        ("x", (tmp_path / "A/x.png", tmp_path / "B/x.png")),
        ("y", (tmp_path / "A/y.jpg", tmp_path / "B/y.png")),
    ]


def test_public_sets_layouts(tmp_path: Path) -> None:
    """The layouts public pair sets ship in group as gipc's own do, in focus order, ground truth left out."""
    _touch(tmp_path / "whu", "source_1/1.jpg", "source_2/1.jpg", "source_1/10.jpg", "source_2/10.jpg", "full_clear/1.jpg", "full_clear/10.jpg")
    assert group_sources(tmp_path / "whu") == [
        ("1", (tmp_path / "whu/source_1/1.jpg", tmp_path / "whu/source_2/1.jpg")),
        ("10", (tmp_path / "whu/source_1/10.jpg", tmp_path / "whu/source_2/10.jpg")),
    ]
    _touch(tmp_path / "nf", "FAR/x.png", "NEAR/x.png", "GT/x.png")  # near first whatever the sort order of the names
    assert group_sources(tmp_path / "nf") == [("x", (tmp_path / "nf/NEAR/x.png", tmp_path / "nf/FAR/x.png"))]
    _touch(tmp_path / "digits", "2/x.png", "1/x.png", "3/x.png")
    assert group_sources(tmp_path / "digits") == [("x", tuple(tmp_path / f"digits/{n}/x.png" for n in "123"))]
    _touch(tmp_path / "realmff", "imageA/709_A.png", "imageB/709_B.png", "imageA/710_A.png", "imageB/710_B.png", "Fusion/709_F.png")
    assert group_sources(tmp_path / "realmff") == [  # each file named by its scene and its folder's mark
        ("709", (tmp_path / "realmff/imageA/709_A.png", tmp_path / "realmff/imageB/709_B.png")),
        ("710", (tmp_path / "realmff/imageA/710_A.png", tmp_path / "realmff/imageB/710_B.png")),
    ]
    _touch(tmp_path / "plan", "sourceA/plan_A.png", "sourceB/plan_A.png")  # a scene whose name ends like a mark, alike in both
    assert group_sources(tmp_path / "plan") == [("plan_A", (tmp_path / "plan/sourceA/plan_A.png", tmp_path / "plan/sourceB/plan_A.png"))]
    _touch(tmp_path / "mffw", "MFFW_01_A.jpg", "MFFW_01_B.jpg", "c_02_2.tif", "c_02_1.tif", "lytro-03-B.jpg", "lytro-03-A.jpg")
    assert group_sources(tmp_path / "mffw") == [
        ("MFFW_01", (tmp_path / "mffw/MFFW_01_A.jpg", tmp_path / "mffw/MFFW_01_B.jpg")),
        ("c_02", (tmp_path / "mffw/c_02_1.tif", tmp_path / "mffw/c_02_2.tif")),
        ("lytro-03", (tmp_path / "mffw/lytro-03-A.jpg", tmp_path / "mffw/lytro-03-B.jpg")),
    ]


def test_lower_case_letters_and_near_far_mark_sources_in_one_folder(tmp_path: Path) -> None:
    """A user's own names: ``-a``/``-b`` and ``_near``/``_far`` (any case) group as ``-A``/``-B`` do, near first."""
    _touch(tmp_path, "cat-b.jpg", "cat-a.jpg", "dog_far.jpg", "dog_NEAR.jpg", "fern-A.png", "fern-b.png", "fern-C.png")
    assert group_sources(tmp_path) == [
        ("cat", (tmp_path / "cat-a.jpg", tmp_path / "cat-b.jpg")),
        ("dog", (tmp_path / "dog_NEAR.jpg", tmp_path / "dog_far.jpg")),
        ("fern", (tmp_path / "fern-A.png", tmp_path / "fern-b.png", tmp_path / "fern-C.png")),
    ]


def test_only_source_folders_hold_sources(tmp_path: Path) -> None:
    # lower-case letters, 0 and names that only start like a source folder are no source folders
    _touch(tmp_path, "A/x.png", "B/x.png", "c/x.png", "0/x.png", "source_1_old/x.png", "nearby/x.png", "maps/x.png", "imagec/x.png", "images/x.png")
    assert group_sources(tmp_path) == [("x", (tmp_path / "A/x.png", tmp_path / "B/x.png"))]


def test_a_stacks_frames_run_in_the_cameras_numbering_and_its_raw_files_stand_for_their_jpegs(tmp_path: Path) -> None:
    """Name order with numbers as numbers: IMG_9 before IMG_10 (plain string order puts 10 first), case
    aside; a JPEG beside a RAW file of its name is the same frame; one marked group is a stack too."""
    _touch(tmp_path / "s", "IMG_10.jpg", "img_9.jpg", "IMG_11.CR3", "IMG_11.JPG", "IMG_100.jpg", "notes.txt")
    assert stack_frames(tmp_path / "s") == tuple(tmp_path / "s" / n for n in ("img_9.jpg", "IMG_10.jpg", "IMG_11.CR3", "IMG_100.jpg"))
    _touch(tmp_path / "t", "x-C.png", "x-A.png", "x-B.png")
    assert stack_frames(tmp_path / "t") == tuple(tmp_path / "t" / f"x-{m}.png" for m in "ABC")


def test_a_folder_of_stacks_is_one_stack_per_subfolder_in_name_order(tmp_path: Path) -> None:
    _touch(tmp_path, "shot10/a1.png", "shot10/a2.png", "shot2/b1.png", "shot2/b2.png", "shot2/b3.png", "empty/notes.txt", ".hidden/c1.png", ".hidden/c2.png")
    assert stack_folders(tmp_path) == [
        ("shot2", tuple(tmp_path / "shot2" / f"b{i}.png" for i in (1, 2, 3))),
        ("shot10", (tmp_path / "shot10/a1.png", tmp_path / "shot10/a2.png")),
    ]


@pytest.mark.parametrize(
    ("files", "stacks", "message"),
    [
        (["a.png"], False, r"/s: only a\.png; a focus stack needs two or more frames$"),
        (["notes.txt"], False, r"/s: no images \(\.png, .*\); a focus stack needs two or more frames$"),
        (["x-A.png", "x-B.png", "y-A.png", "y-B.png"], False, r"/s holds groups of sources \(x-A\.png, x-B\.png, \.\.\.\), not one focus stack: give it as --pairs .*/s$"),
        (["a.png", "b.png"], True, r"/s holds images \(a\.png, \.\.\.\) but no subfolders of them: each focus stack is a subfolder of frames"),
        (["notes.txt"], True, r"/s has no subfolders with images: each focus stack is a subfolder of frames"),
        (["k/a.png", "k/b.png", "loose.png"], True, r"/s holds images \(loose\.png, \.\.\.\) beside its stacks' subfolders; move them into a subfolder of their own, or out$"),
        (["k/a.png", "k/b.png", "m/a.png"], True, r"/s/m: only a\.png; a focus stack needs two or more frames$"),
    ],
    ids=["one frame", "no images", "a pair set", "no subfolders", "nothing", "images beside the stacks", "a stack of one"],
)
def test_what_is_no_stack_is_one_line_naming_the_folder(tmp_path: Path, files: list[str], stacks: bool, message: str) -> None:
    _touch(tmp_path / "s", *files)
    with pytest.raises(DataError, match=message):
        (stack_folders if stacks else stack_frames)(tmp_path / "s")


def test_a_cameras_raw_file_stands_for_its_frame_and_a_jpeg_beside_it_is_set_aside(tmp_path: Path) -> None:
    """A camera in RAW+JPEG mode writes both files of each frame under one name: the RAW file is the
    source, in one folder and in source subfolders alike; a JPEG without a RAW file of its name stays."""
    _touch(tmp_path, "s-A.CR3", "s-A.JPG", "s-B.CR3", "s-B.JPG", "t-A.jpg", "t-B.jpg")
    assert group_sources(tmp_path) == [("s", (tmp_path / "s-A.CR3", tmp_path / "s-B.CR3")), ("t", (tmp_path / "t-A.jpg", tmp_path / "t-B.jpg"))]
    assert image_files(tmp_path) == [tmp_path / n for n in ("s-A.CR3", "s-B.CR3", "t-A.jpg", "t-B.jpg")]
    assert raw_companions(tmp_path) == set_aside(tmp_path) == [tmp_path / "s-A.JPG", tmp_path / "s-B.JPG"]
    _touch(tmp_path / "sub", "A/x.nef", "A/x.jpg", "B/x.nef", "B/x.heic")
    assert group_sources(tmp_path / "sub") == [("x", (tmp_path / "sub/A/x.nef", tmp_path / "sub/B/x.nef"))]
    assert set_aside(tmp_path / "sub") == [tmp_path / "sub/A/x.jpg", tmp_path / "sub/B/x.heic"]


def test_sequences_in_subfolders(tmp_path: Path) -> None:
    _touch(tmp_path, "A/x.png", "B/x.png", "C/x.png")
    assert group_sources(tmp_path) == [("x", (tmp_path / "A/x.png", tmp_path / "B/x.png", tmp_path / "C/x.png"))]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], r"no images found \(.png, .*\); expected <name>-A/<name>-B files \(or _A/_B, .*\) or A/ and B/ subfolders \(or 1/ 2/, source_1/ source_2/, imageA/ imageB/, near/ far/\)"),
        (["p-A.png", "p-B.png", "q-A.png"], r"q-A\.png: unpaired, .*q-B\.\* is missing"),
        (["s-A.png", "s-C.png"], r"s-A\.png, .*s-C\.png: unpaired, .*s-B\.\* is missing"),
        (["A/x.png", "B/y.png"], r"A/x\.png: unpaired, .*B/x\.\* is missing"),
        (["A/x.png"], r"A/x\.png: unpaired, .*B/x\.\* is missing"),
        (["x-A.png", "x-B.png", "holiday.png"], r"holiday\.png: cannot tell its partner; expected <name>-A/<name>-B files"),
        (["x-A.png", "x-a.png", "x-B.png"], r"x-A\.png and .*x-a\.png: two files for one image; keep one"),  # a letter in either case
        (["x-a.png", "x-c.png"], r"x-a\.png, .*x-c\.png: unpaired, .*x-b\.\* is missing"),  # the partner in the files' own case
        (["x_Near.png"], r"x_Near\.png: unpaired, .*x_Far\.\* is missing"),
        (["x-near.png", "x_1.png", "x-far.png"], r"x-near\.png and .*x_1\.png: two files for one image; keep one"),  # near and 1: both the first
        (["x-A.png", "x-A.jpg", "x-B.png"], r"x-A\.jpg and .*x-A\.png: two files for one image; keep one"),
        (["x-A.dng", "x-A.cr2", "x-B.dng"], r"x-A\.cr2 and .*x-A\.dng: two files for one image; keep one"),  # two RAW files of one frame
        (["x-A.png", "x_1.png", "x-B.png"], r"x-A\.png and .*x_1\.png: two files for one image; keep one"),  # A and 1: both the first
        (["x_1.png", "x_3.png"], r"x_1\.png, .*x_3\.png: unpaired, .*x_2\.\* is missing"),  # the partner in the files' own style
        (["x_A.png"], r"x_A\.png: unpaired, .*x_B\.\* is missing"),
        (["source_1/x.jpg"], r"source_1/x\.jpg: unpaired, .*source_2/x\.\* is missing"),
        (["near/x.jpg"], r"near/x\.jpg: unpaired, .*far/x\.\* is missing"),
        (["imageA/709_A.png", "imageB/709_B.png", "imageA/710_A.png"], r"imageA/710_A\.png: unpaired, .*imageB/710_B\.\* is missing"),
        (["imageA/x_A.png", "imageA/x-A.png", "imageB/x_B.png"], r"x-A\.png and .*x_A\.png: two files for one image; keep one"),  # one scene once
        (["A/x.png", "source_1/x.png", "B/x.png"], r"A and .*source_1 both hold source 1 of each scene; keep one"),
        (["A/x.png", "A/x.jpg", "B/x.png"], r"A/x\.jpg and .*A/x\.png: two files for one image; keep one"),
        # a folder of pair sets (lytro/ with pairs/ and triple/): the sets named
        (["pairs/x-A.png", "pairs/x-B.png", "triple/y-A.png", "notes/readme.txt"], r": no images directly in it; its subfolders pairs, triple hold images: give one of them$"),
    ],
)
@pytest.mark.parametrize("reader", [group_sources, PairFolder, SequenceFolder], ids=["group_sources", "PairFolder", "SequenceFolder"])
def test_what_cannot_be_grouped_is_one_line_naming_the_file(tmp_path: Path, files: list[str], message: str, reader) -> None:
    """The loaders fail on a folder exactly as gipc-fuse does: they group it with the same function."""
    _touch(tmp_path, *files)
    with pytest.raises(DataError, match=message) as info:
        reader(tmp_path)
    assert "\n" not in str(info.value)


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope does not exist or is not a folder"):
        group_sources(tmp_path / "nope")


def test_every_reader_groups_the_same_way(tmp_path: Path) -> None:
    """The loaders read what gipc-fuse reads, in the same order, from both layouts."""
    flat, sub = tmp_path / "flat", tmp_path / "sub"
    for scene in ("s1", "s0"):
        for letter in "AB":
            _png(flat / f"{scene}-{letter}.png")
            _png(sub / letter / f"{scene}.png")
    for root in (flat, sub):
        groups = group_sources(root)
        assert [(name, paths) for name, paths, *_ in PairFolder(root).entries] == groups
        assert SequenceFolder(root).entries == groups
    _png(sub / "C" / "s0.png")
    _png(sub / "C" / "s1.png")
    assert [len(paths) for _, paths in SequenceFolder(sub).entries] == [3, 3]
    with pytest.raises(DataError, match="has 3 sources, and pair metrics take two"):
        PairFolder(sub)


def test_one_suffix_set_every_command_reads(tmp_path: Path) -> None:
    """A .webp/.ppm/.pgm/.heic pair is read by gipc-fuse, the loaders and gipc-eval alike; other files are ignored."""
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".heic", ".heif", ".dng", ".cr2", ".nef", ".arw"} <= set(IMAGE_SUFFIXES)  # RAW: test_raw.py
    pairs = tmp_path / "pairs"
    _png(pairs / "w-A.webp", mode="RGB")
    _png(pairs / "w-B.webp", mode="RGB")
    _png(pairs / "p-A.ppm", mode="RGB")
    _png(pairs / "p-B.ppm", mode="RGB")
    _png(pairs / "g-A.PGM")
    _png(pairs / "g-B.pgm")
    for letter in "AB":  # a phone's HEIC photos
        PILImage.fromarray(np.full((12, 16, 3), 40 if letter == "A" else 200, np.uint8)).save(pairs / f"h-{letter}.heic", quality=-1)
    (pairs / "notes.txt").write_text("not an image")
    assert [p.name for p in image_files(pairs)] == ["g-A.PGM", "g-B.pgm", "h-A.heic", "h-B.heic", "p-A.ppm", "p-B.ppm", "w-A.webp", "w-B.webp"]
    assert set(files_by_stem(pairs)) == {"g-A", "g-B", "h-A", "h-B", "p-A", "p-B", "w-A", "w-B"}
    assert [scene.name for scene in PairFolder(pairs)] == ["g", "h", "p", "w"]
    fused = tmp_path / "fused"
    assert fuse_main(["--method", "average", "--pairs", str(pairs), "--out", str(fused)]) == 0
    assert read_image(fused / "w-fused.png").pixels.shape == (3, 12, 16)
    assert torch.allclose(read_image(fused / "h-fused.png").pixels, torch.full((3, 12, 16), 120 / 255), atol=2 / 255)  # (40 + 200) / 2
    assert eval_main(["--sources", str(pairs), "--fused", str(fused), "--out", str(tmp_path / "scores")]) == 0
    assert (tmp_path / "scores" / "metrics.csv").read_text().count("\n") == 5  # header + one row per scene


def test_a_public_set_as_it_unpacks(tmp_path: Path) -> None:
    """MFI-WHU's layout (source_1/, source_2/, full_clear/ of n.jpg) goes through gipc-fuse and gipc-eval unchanged."""
    whu = tmp_path / "MFI-WHU"
    for n in ("1", "2"):
        for sub in ("source_1", "source_2", "full_clear"):
            _png(whu / sub / f"{n}.png", mode="RGB")
    fused = tmp_path / "fused"
    assert fuse_main(["--method", "average", "--pairs", str(whu), "--out", str(fused)]) == 0
    assert sorted(p.name for p in fused.iterdir()) == ["1-fused.png", "2-fused.png", RECORD]
    a, b = (read_image(whu / sub / "2.png").pixels for sub in ("source_1", "source_2"))
    expected = ((a + b) / 2 * 255).round() / 255
    assert torch.allclose(read_image(fused / "2-fused.png").pixels, expected, atol=1 / 255 + 1e-6)
    scores = tmp_path / "scores"
    assert eval_main(["--sources", str(whu), "--gt", str(whu / "full_clear"), "--fused", str(fused), "--out", str(scores)]) == 0
    header, *rows = (scores / "metrics.csv").read_text().splitlines()
    assert "psnr" in header.lower() and len(rows) == 2


def _raise(error: BaseException) -> NoReturn:
    raise error


@pytest.mark.parametrize(
    ("body", "code", "said"),
    [
        (lambda: 0, 0, ""),
        (lambda: _raise(DataError("x-A.png: unpaired")), 2, "gipc-x: error: x-A.png: unpaired\n"),
        (lambda: _raise(FileNotFoundError(2, "No such file or directory", "/data/x-A.png")), 2, "gipc-x: error: /data/x-A.png: No such file or directory\n"),
        (lambda: os.kill(os.getpid(), signal.SIGTERM), 143, "gipc-x: interrupted; nothing written\n"),
        (lambda: print(warnings.formatwarning("careful", UserWarning, "/site/x.py", 4), end="", file=sys.stderr) or 0, 0, "gipc-x: warning: careful\n"),
    ],
    ids=["finished", "user error", "refused by the OS", "SIGTERM", "a library's warning"],
)
def test_every_command_ends_in_one_line_and_gives_back_the_callers_sigterm_handler_and_warning_format(
    body: Callable[[], int], code: int, said: str, capsys
) -> None:
    """What gipc-fuse, gipc-eval and the other commands share (gipc.cli.common.guarded), also when called from Python."""
    formatwarning = warnings.formatwarning

    def callers(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, callers)
    try:
        assert guarded("gipc-x", body) == code
        assert signal.getsignal(signal.SIGTERM) is callers and warnings.formatwarning is formatwarning
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err == said


def test_a_failed_allocation_is_one_line_and_any_other_error_stays_a_traceback(capsys) -> None:
    """numpy's MemoryError, torch's allocator, CUDA's out-of-memory error and OpenCV's each end a command
    in one line (its size, without torch's or OpenCV's C++ source location); a RuntimeError of another kind is a bug and
    keeps its traceback."""
    assert guarded("gipc-x", lambda: np.empty(1 << 62, dtype=np.uint8)) == 2
    assert capsys.readouterr().err == (
        "gipc-x: error: out of memory (Unable to allocate 4.00 EiB for an array with shape (4611686018427387904,) and data type uint8); "
        "fewer or smaller images at once need less\n"
    )
    assert guarded("gipc-x", lambda: torch.empty(1 << 60, dtype=torch.uint8)) == 2
    said = capsys.readouterr().err
    assert said.startswith("gipc-x: error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate 1152921504606846976 bytes")
    assert said.count("\n") == 1 and "enforce fail" not in said
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.\nGPU 0 has 1.5 GiB free")) == (
        "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB.)"
    )
    assert guarded("gipc-x", lambda: cv2.resize(np.zeros((2, 2), np.uint8), (1 << 20, 1 << 20))) == 2  # a 1 TiB image
    assert capsys.readouterr().err == (
        "gipc-x: error: out of memory (Failed to allocate 1099511627776 bytes in function 'OutOfMemoryError'); fewer or smaller images at once need less\n"
    )
    with pytest.raises(RuntimeError, match="shape mismatch"):
        guarded("gipc-x", lambda: _raise(RuntimeError("shape mismatch")))
    assert capsys.readouterr().err == ""


def _png(path: Path, mode: str = "L") -> None:
    """A small random 12x16 image of ``mode`` ("L" or "RGB"), in the format of ``path``'s suffix (lossless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (12, 16, 3) if mode == "RGB" else (12, 16)
    PILImage.fromarray(np.random.default_rng(len(str(path))).integers(0, 256, shape, np.uint8)).save(path, lossless=True)
