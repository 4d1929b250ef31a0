"""Camera RAW sources: DNG files written here with tifffile (a Bayer mosaic and the tags LibRaw reads),
developed by gipc.raw, checked against the sRGB formula, against each other and through gipc-fuse."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from gipc.cli.evaluate import main as eval_main
from gipc.cli.fuse import main as fuse_main
from gipc.data.sources import image_files
from gipc.errors import ImageError
from gipc.exif import tiff_block
from gipc.imaging import check_sources, read_header, read_image, read_matching
from gipc.raw import camera_exif

from helpers import texture

XYZ_TO_LINEAR_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]])
"""IEC 61966-2-1's matrix (D65): as a DNG's ColorMatrix1 it makes the camera's RGB linear sRGB."""
WHITE = 4095  # a 12-bit sensor


def srgb(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1's transfer function, written out."""
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def write_dng(
    path: Path,
    linear_rgb: np.ndarray,
    orientation: int = 1,
    mosaic: bool = True,
    pixel_width: int = 1,
    neutral: tuple[int, int, int] = (10, 10, 10),
    tags: list[tuple[int, str, int, object]] = [],
) -> Path:
    """A DNG of a camera whose RGB is linear sRGB: ``linear_rgb`` (H, W, 3) in [0, 1] at 12 bits, sampled
    through an RGGB Bayer mosaic (a camera's) or, ``mosaic=False``, stored whole (LinearRaw: a phone's
    DNG, demosaiced in the phone); as shot under a light the camera sees as ``neutral`` (AsShotNeutral,
    in tenths: (10, 10, 10) leaves the colours as they are); pixels ``pixel_width`` times as wide as high
    (DefaultScale); IFD0 holding ``tags`` too (tifffile's extratags)."""
    matrix = [int(v) for value in XYZ_TO_LINEAR_SRGB.ravel() for v in (round(value * 1_000_000), 1_000_000)]
    tags = [
        (50706, "B", 4, (1, 4, 0, 0)),  # DNGVersion
        (50708, "s", 0, "gipc test camera"),  # UniqueCameraModel
        (50717, "I", 1, WHITE),  # WhiteLevel
        (50721, "2i", 9, tuple(matrix)),  # ColorMatrix1 (XYZ to camera)
        (50728, "2I", 3, tuple(v for n in neutral for v in (n, 10))),  # AsShotNeutral
        (50778, "H", 1, 21),  # CalibrationIlluminant1: D65
        (274, "H", 1, orientation),
        (50718, "2I", 2, (pixel_width, 1, 1, 1)),  # DefaultScale
        *tags,
    ]
    if not mosaic:
        tifffile.imwrite(path, np.round(linear_rgb * WHITE).astype(np.uint16), photometric=34892, planarconfig="contig", extratags=tags, subfiletype=0)
        return path
    samples = np.empty(linear_rgb.shape[:2])
    for (row, col), channel in zip(((0, 0), (0, 1), (1, 0), (1, 1)), (0, 1, 1, 2)):
        samples[row::2, col::2] = linear_rgb[row::2, col::2, channel]
    tags += [(33421, "H", 2, (2, 2)), (33422, "B", 4, (0, 1, 1, 2))]  # CFARepeatPatternDim, CFAPattern: RGGB
    tifffile.imwrite(path, np.round(samples * WHITE).astype(np.uint16), photometric=32803, extratags=tags, subfiletype=0)
    return path


@pytest.mark.parametrize("mosaic", [True, False], ids=["camera", "phone"])
def test_a_dng_develops_to_the_srgb_curve_of_its_values(tmp_path: Path, mosaic: bool) -> None:
    """Flat patches of a camera that records linear sRGB come out as IEC 61966-2-1 says, 16 bits deep:
    the white balance, the colour matrix and the tone curve are the camera's and sRGB's, and nothing
    brightens the image (LibRaw's default would lift a mid grey by its histogram)."""
    for colour in ((0.18, 0.18, 0.18), (0.5, 0.2, 0.1), (0.02, 0.05, 0.6), (0.9, 0.9, 0.9)):
        image = read_image(write_dng(tmp_path / "flat.dng", np.ones((24, 32, 3)) * colour, mosaic=mosaic))
        assert image.bit_depth == 16 and image.kind == "RGB" and image.stored.dtype == torch.uint16
        inner = image.stored[:, 4:-4, 4:-4].reshape(3, -1).double().numpy() / 65535
        expected = srgb(np.round(np.array(colour) * WHITE) / WHITE)  # the 12-bit values the file holds
        assert np.abs(inner - expected[:, None]).max() < 3e-4, (colour, inner.mean(1), expected)


def test_the_frames_of_one_bracket_develop_alike(tmp_path: Path) -> None:
    """A bracket's frames differ in focus (and so in their brightest pixels and histograms), not in
    exposure: the part two frames share comes out the same to the bit, whatever the rest holds."""
    rng = np.random.default_rng(0)
    shared = rng.uniform(0.05, 0.3, (32, 48, 3))
    dim, bright = shared.copy(), shared.copy()
    bright[:, 24:] = 0.85  # the other frame's right half is near white: LibRaw's defaults rescale by it
    a, b = (read_image(write_dng(tmp_path / f"{name}.dng", frame)).stored for name, frame in (("a", dim), ("b", bright)))
    assert torch.equal(a[:, :, :16], b[:, :, :16])  # demosaicing reaches 5 px across an edge: 8 px kept apart
    assert not torch.equal(a[:, :, 28:], b[:, :, 28:])


UPRIGHT = {  # what each EXIF orientation asks a viewer to do to the stored rows and columns (TIFF 6.0, tag 274)
    1: lambda a: a,
    2: lambda a: a.flip(-1),  # mirrored left-right
    3: lambda a: a.flip(-2, -1),  # turned 180 degrees
    4: lambda a: a.flip(-2),  # mirrored top-bottom
    5: lambda a: a.transpose(-2, -1),  # transposed
    6: lambda a: torch.rot90(a, -1, (-2, -1)),  # turned 90 degrees clockwise
    7: lambda a: a.flip(-2, -1).transpose(-2, -1),  # transposed across the other diagonal
    8: lambda a: torch.rot90(a, 1, (-2, -1)),  # turned 90 degrees counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_a_dng_reads_upright_in_each_orientation_and_its_header_says_so(tmp_path: Path, orientation: int) -> None:
    """The camera's orientation tag is applied as EXIF defines it (a camera held turned, or mirrored),
    and the size the header gives, before any pixel is decoded, is the upright one."""
    stored = np.random.default_rng(0).uniform(0.05, 0.5, (24, 36, 3))  # LibRaw reads no image under 22 px a side
    plain = read_image(write_dng(tmp_path / "plain.dng", stored)).stored.int()  # torch flips no uint16
    upright = read_image(write_dng(tmp_path / "turned.dng", stored, orientation=orientation)).stored.int()
    assert torch.equal(upright, UPRIGHT[orientation](plain))
    header = read_header(tmp_path / "turned.dng")
    assert (header.kind, header.height, header.width, header.bit_depth) == ("RGB", *upright.shape[1:], 16)


def test_the_header_of_a_raw_file_of_wide_pixels_gives_the_stretched_size(tmp_path: Path) -> None:
    """LibRaw stretches a camera's non-square pixels to square ones: the header cannot tell the
    developed size by itself, so it is read off the developed image."""
    path = write_dng(tmp_path / "wide.dng", np.full((24, 36, 3), 0.2), pixel_width=2)
    assert read_image(path).stored.shape == (3, 24, 72)
    assert (read_header(path).height, read_header(path).width) == (24, 72)


def test_the_frames_of_one_scene_take_the_first_frames_white_balance(tmp_path: Path) -> None:
    """A camera on automatic white balance may record another for each frame of a bracket; developed
    each under its own, the same scene comes out in two colours and the fused image shows seams
    between them. The frames of one scene are developed under the first frame's: as that frame
    alone would be, to the bit."""
    scene = np.random.default_rng(3).uniform(0.05, 0.5, (24, 32, 3))
    warm = write_dng(tmp_path / "warm.dng", scene, neutral=(10, 9, 7))
    cool = write_dng(tmp_path / "cool.dng", scene, neutral=(8, 9, 10))
    alone = {path: read_image(path).stored for path in (warm, cool)}
    assert not torch.equal(alone[warm], alone[cool])
    for first, second in ((warm, cool), (cool, warm)):
        images = read_matching([first, second])
        assert torch.equal(images[0].stored, alone[first]) and torch.equal(images[1].stored, alone[first])
    png = tmp_path / "frame.png"  # a non-RAW frame first: the first RAW frame's balance
    PILImage.fromarray(np.zeros((24, 32, 3), np.uint8)).save(png)
    assert torch.equal(read_matching([png, cool, warm])[2].stored, alone[cool])


def test_raw_files_are_sources_in_a_folder(tmp_path: Path) -> None:
    for name in ("s-A.dng", "s-B.DNG", "t-A.nef", "notes.xmp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_files(tmp_path)] == ["s-A.dng", "s-B.DNG", "t-A.nef"]


def test_bad_raw_files_are_one_line_each(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Not a RAW file, a RAW file cut short (LibRaw prints its own line on stderr: held back, its words
    in gipc's line), a missing one."""
    noise = tmp_path / "noise.dng"
    noise.write_bytes(np.random.default_rng(1).bytes(5000))
    whole = write_dng(tmp_path / "whole.dng", np.random.default_rng(2).random((64, 64, 3))).read_bytes()
    cut = tmp_path / "cut.nef"
    cut.write_bytes(whole[: len(whole) // 2])
    for path, message in (
        (noise, r"noise\.dng: not a RAW file LibRaw reads, or a corrupt one"),
        (cut, r"cut\.nef: truncated or corrupt image data \(Unexpected end of file\)"),
        (tmp_path / "gone.cr2", r"gone\.cr2: no such file"),
    ):
        with pytest.raises(ImageError, match=f"^{tmp_path}/{message}$"):
            read_image(path)
    assert capfd.readouterr().err == ""
    with pytest.raises(ImageError, match="noise.dng: not a RAW file"):
        check_sources([noise, cut])  # the header: before any pixels are decoded


def test_without_rawpy_a_raw_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dng(tmp_path / "a.dng", np.full((24, 32, 3), 0.2))
    monkeypatch.setitem(sys.modules, "rawpy", None)  # as if it were not installed: its import fails
    with pytest.raises(ImageError, match=r"a\.dng: a camera RAW file, and reading one needs rawpy \(pip install rawpy\), which is missing$"):
        read_image(path)


def test_gipc_fuse_copies_the_developed_sources_of_a_raw_bracket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A RAW bracket, A sharp on the left half and B on the right, through the default rule: a 16-bit
    image whose halves are the developed sources' pixels, away from the seam. The camera's JPEG of
    each frame beside it (RAW+JPEG mode; grey here) is set aside, and a line says so, as gipc-eval's does
    and as gipc-fuse does of the folder given as one stack."""
    scene = texture(3, 96, 128, seed=3)
    blurred = F.avg_pool2d(F.pad(scene, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    left = torch.arange(128) < 64
    frames = {"A": torch.where(left, scene, blurred), "B": torch.where(left, blurred, scene)}
    paths = [write_dng(tmp_path / f"scene-{k}.dng", (v[0].permute(1, 2, 0).numpy() - 0.1) ** 2.2) for k, v in frames.items()]
    for k in frames:
        PILImage.new("RGB", (128, 96), (128, 128, 128)).save(tmp_path / f"scene-{k}.jpg")
    out = tmp_path / "fused" / "scene-fused.png"
    assert fuse_main(["--pairs", str(tmp_path), "--out", str(out.parent)]) == 0
    assert "gipc-fuse: 2 files beside RAW files of the same name set aside (scene-A.jpg, ...): the RAW files are read\n" in capsys.readouterr().err
    assert eval_main(["--sources", str(tmp_path), "--fused", f"gipc={out.parent}"]) == 0  # scored against the RAW files, said alike
    assert "gipc-eval: 2 files beside RAW files of the same name set aside (scene-A.jpg, ...): the RAW files are read\n" in capsys.readouterr().err
    fused = read_image(out)
    a, b = (read_image(p).stored for p in paths)
    assert fused.bit_depth == 16 and fused.stored.shape == a.shape == (3, 96, 128)
    assert torch.equal(fused.stored[:, :, :48], a[:, :, :48]) and torch.equal(fused.stored[:, :, 80:], b[:, :, 80:])
    stack = tmp_path / "stack" / "fused.png"  # the folder as one focus stack: its two RAW frames, the same image
    assert fuse_main([str(tmp_path), "--out", str(stack)]) == 0
    assert "gipc-fuse: 2 files beside RAW files of the same name set aside (scene-A.jpg, ...): the RAW files are read\n" in capsys.readouterr().err
    assert torch.equal(read_image(stack).stored, fused.stored)


EXPOSURE = {0x829A: 1 / 125, 0x829D: 2.8, 0x8827: 200, 0x9003: "2026:12:07 10:00:00"}
"""What with_exif's Exif IFD says: exposure time, f-number, ISO, when."""
_EXIF_MARK = 0x5A5A5A5A


def with_exif(path: Path, linear_rgb: np.ndarray) -> Path:
    """A DNG (:func:`write_dng`, orientation 6) with the camera's make and model in IFD0 and an Exif IFD
    laid out by hand at the file's end: :data:`EXPOSURE` and a maker note."""
    # tifffile writes no Exif IFD link (34665): a private tag next to it holds its place
    write_dng(path, linear_rgb, orientation=6, tags=[(271, "s", 0, "gipc maker"), (272, "s", 0, "Test 1"), (34666, "I", 1, _EXIF_MARK)])
    data = bytearray(path.read_bytes())
    data += bytes(len(data) % 2)
    at = len(data)
    fields = [(0x829A, 5, 1, struct.pack("<II", 1, 125)), (0x829D, 5, 1, struct.pack("<II", 28, 10)), (0x8827, 3, 1, struct.pack("<HH", 200, 0)),
              (0x9003, 2, 20, b"2026:12:07 10:00:00\x00"), (0x927C, 7, 16, b"private offsets!")]  # fmt: skip
    values_at, entries, values = at + 2 + 12 * len(fields) + 4, b"", b""
    for tag, kind, count, value in fields:
        if len(value) > 4:
            entries += struct.pack("<HHII", tag, kind, count, values_at + len(values))
            values += value
        else:
            entries += struct.pack("<HHI", tag, kind, count) + value
    data += struct.pack("<H", len(fields)) + entries + bytes(4) + values
    mark = struct.pack("<HHII", 34666, 4, 1, _EXIF_MARK)
    assert data.count(mark) == 1
    data[data.index(mark) : data.index(mark) + 12] = struct.pack("<HHII", 34665, 4, 1, at)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("suffix", [".tif", ".jpg", ".png"])
def test_the_fused_image_of_a_raw_bracket_keeps_its_cameras_exif(tmp_path: Path, suffix: str) -> None:
    """Camera, exposure and date come from the first frame's own tags into every output format,
    saying orientation 1 (the developed pixels are upright) and without the maker note, whose
    offsets point into the RAW file."""
    scene = np.full((24, 32, 3), 0.2)
    paths = [with_exif(tmp_path / f"{name}.dng", scene) for name in "ab"]
    out = tmp_path / f"fused{suffix}"
    assert fuse_main([*map(str, paths), "--out", str(out)]) == 0
    with PILImage.open(out) as im:
        exif = im.getexif()
        assert (exif[0x010F], exif[0x0110], exif[0x0112], im.size) == ("gipc maker", "Test 1", 1, (24, 32))
        assert exif.get_ifd(0x8769) == EXPOSURE


def test_a_fuji_raw_files_exif_is_its_embedded_jpegs(tmp_path: Path) -> None:
    """A RAF file is not a TIFF structure: its EXIF is the one its embedded JPEG holds, to the byte,
    maker note included (where LibRaw reads it: the JPEG's offset and length at byte 84). A Minolta
    MRW gives none."""
    exif = PILImage.Exif()
    exif.update({0x010F: "FUJIFILM", 0x0110: "X-T5"})
    exif.get_ifd(0x8769).update({**EXPOSURE, 0x927C: b"FUJIFILM" + bytes(8)})
    jpeg = io.BytesIO()
    PILImage.new("RGB", (16, 8)).save(jpeg, format="JPEG", exif=exif)
    header = b"FUJIFILMCCD-RAW 0201FF129502X-T5".ljust(84, b"\x00") + struct.pack(">II", 160, len(jpeg.getvalue()))
    path = tmp_path / "frame.raf"
    path.write_bytes(header.ljust(160, b"\x00") + jpeg.getvalue() + bytes(64))
    assert camera_exif(path) == tiff_block(exif.tobytes()) is not None
    (tmp_path / "frame.mrw").write_bytes(b"\x00MRM" + bytes(64))  # Minolta's: none read
    assert camera_exif(tmp_path / "frame.mrw") is None


def box(kind: bytes, payload: bytes) -> bytes:
    """An ISO media box: its size (header included), type and payload."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def tiff_of(tags: dict[int, object]) -> bytes:
    """A TIFF structure whose IFD0 holds ``tags``, as Pillow lays it out."""
    exif = PILImage.Exif()
    exif.update(tags)
    return tiff_block(exif.tobytes()) or b""


def test_a_canon_cr3_files_exif_is_read_from_its_tiff_boxes(tmp_path: Path) -> None:
    """A CR3 file is an ISO media file; its moov box holds Canon's uuid box, whose CMT1, CMT2 and CMT4
    boxes are TIFF structures of IFD0's, the Exif IFD's and the GPS IFD's fields (CMT3, the maker
    note, is not read). Laid out as one block: camera, exposure and position read back by Pillow."""
    canon = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")
    cmt = box(b"CNCV", b"CanonCR3_001/00.09.00/00.00.00") + box(b"CMT1", tiff_of({0x010F: "Canon", 0x0110: "Canon EOS R5", 0x0112: 1}))
    cmt += box(b"CMT2", tiff_of(EXPOSURE)) + box(b"CMT3", b"maker note") + box(b"CMT4", tiff_of({1: "N", 2: (52.0, 30.0, 0.0)}))
    moov = box(b"moov", box(b"uuid", bytes(16) + box(b"CMT1", tiff_of({0x010F: "not Canon's"}))) + box(b"uuid", canon + cmt) + box(b"trak", bytes(32)))
    path = tmp_path / "frame.cr3"
    path.write_bytes(box(b"ftyp", b"crx \x00\x00\x00\x01crx isom") + moov + box(b"mdat", bytes(4096)))
    exif = PILImage.Exif()
    exif.load(camera_exif(path) or b"")
    assert (exif[0x010F], exif[0x0110]) == ("Canon", "Canon EOS R5")
    assert exif.get_ifd(0x8769) == EXPOSURE and exif.get_ifd(0x8825) == {1: "N", 2: (52.0, 30.0, 0.0)}
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) - 4096 - len(moov) // 2])  # cut inside moov: none
    assert camera_exif(path) is None
