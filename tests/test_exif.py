"""The EXIF block carried to a fused image: patched where it would lie about the fused image, every
other byte as the camera wrote it; into a TIFF beside the image's own tags; from a TIFF-structured
file's tags."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image as PILImage

from gipc.exif import PREFIX, for_output, read_tiff, tiff_block
from gipc.imaging import read_image, write_image

MAKER_NOTE = bytes(range(256)) * 4  # a camera's private bytes: offsets inside must not move


def camera_block(order: str, orientation: int = 6, width_type: int = 4, height_type: int = 3, link_type: int = 4) -> bytes:
    """A TIFF structure as a camera writes it, laid out by hand: IFD0 (make, orientation, Exif IFD
    link, a LONG or, ``link_type`` 13, an IFD offset) linked to IFD1 (a thumbnail), and an Exif IFD
    with the stored pixel size and a maker note."""
    o = "<" if order == "II" else ">"
    make = b"Camera\x00\x00"

    def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
        return struct.pack(o + "HHI", tag, kind, count) + value.ljust(4, b"\x00")

    def short(v: int) -> bytes:
        return struct.pack(o + "H", v)

    def long(v: int) -> bytes:
        return struct.pack(o + "I", v)

    ifd0_at, ifd0_size = 8, 2 + 3 * 12 + 4
    exif_at = ifd0_at + ifd0_size
    exif_size = 2 + 3 * 12 + 4
    make_at = exif_at + exif_size
    note_at = make_at + len(make)
    ifd1_at = note_at + len(MAKER_NOTE)
    size = {4: long, 3: short}
    ifd0 = short(3) + entry(0x010F, 2, len(make), long(make_at)) + entry(0x0112, 3, 1, short(orientation)) + entry(0x8769, link_type, 1, long(exif_at)) + long(ifd1_at)
    exif = (short(3) + entry(0x927C, 7, len(MAKER_NOTE), long(note_at)) + entry(0xA002, width_type, 1, size[width_type](4000))
            + entry(0xA003, height_type, 1, size[height_type](3000)) + long(0))
    ifd1 = short(1) + entry(0x0103, 3, 1, short(6)) + long(0)
    header = (b"II*\x00" if order == "II" else b"MM\x00*") + long(ifd0_at)
    return header + ifd0 + exif + make + MAKER_NOTE + ifd1


def fields(block: bytes) -> dict[str, int]:
    """Read back by hand at the offsets :func:`camera_block` laid out."""
    o = "<" if block[:2] == b"II" else ">"
    orientation_value = 8 + 2 + 12 + 8
    ifd1_link = 8 + 2 + 3 * 12
    width_value = 8 + 2 + 3 * 12 + 4 + 2 + 12 + 8
    height_value = width_value + 12
    width_kind = struct.unpack_from(o + "H", block, width_value - 6)[0]
    height_kind = struct.unpack_from(o + "H", block, height_value - 6)[0]
    read = {4: "I", 3: "H"}
    return {
        "orientation": struct.unpack_from(o + "H", block, orientation_value)[0],
        "ifd1": struct.unpack_from(o + "I", block, ifd1_link)[0],
        "width": struct.unpack_from(o + read[width_kind], block, width_value)[0],
        "height": struct.unpack_from(o + read[height_kind], block, height_value)[0],
    }


@pytest.mark.parametrize("order", ["II", "MM"])
def test_the_fused_images_block_says_upright_its_size_and_no_thumbnail_and_keeps_every_other_byte(order: str) -> None:
    block = camera_block(order)
    assert fields(block) == {"orientation": 6, "ifd1": len(block) - 2 - 12 - 4, "width": 4000, "height": 3000}
    out = for_output(block, 2990, 3990)  # upright (turned a quarter) and cropped by --align
    assert fields(out) == {"orientation": 1, "ifd1": 0, "width": 2990, "height": 3990}
    changed = [i for i, (x, y) in enumerate(zip(block, out)) if x != y]
    assert len(out) == len(block) and len(changed) <= 2 + 4 + 4 + 2  # the four fields' bytes, nothing else
    assert out.index(MAKER_NOTE) == block.index(MAKER_NOTE)
    assert for_output(out, 2990, 3990) == out  # patching twice changes nothing more


def test_a_size_a_short_cannot_hold_is_left_as_the_camera_wrote_it() -> None:
    """A 16-bit field cannot say 70000: the tag keeps its value rather than a wrapped one."""
    out = for_output(camera_block("II", width_type=3), 70000, 3000)
    assert fields(out)["width"] == 4000 and fields(out)["height"] == 3000


@pytest.mark.parametrize("cut", [6, 20, 60])
def test_a_block_cut_short_is_not_carried(cut: int) -> None:
    assert for_output(camera_block("MM")[:cut], 10, 10) is None


def test_the_decoders_bytes_are_read_with_or_without_the_jpeg_prefix() -> None:
    block = camera_block("II")
    assert tiff_block(PREFIX + block) == tiff_block(block) == block  # JPEG, PNG, HEIC: prefixed; WebP: not
    assert tiff_block(None) is tiff_block(b"") is tiff_block(b"Exif\x00\x00not a tiff") is None


def pillow_block(order: str) -> PILImage.Exif:
    """A photo's EXIF as Pillow lays it out: IFD0 (camera, date, orientation 6 and a resolution, which
    is the pixels' business), an Exif IFD (exposure, a maker note, an interoperability IFD) and a GPS IFD."""
    exif = PILImage.Exif()
    exif.endian = "<" if order == "II" else ">"
    exif.update({0x010F: "Maker", 0x0110: "Model 7", 0x0112: 6, 0x011A: 72.0, 0x0132: "2026:12:07 10:00:00"})
    exif.get_ifd(0x8769).update({0x829A: 1 / 125, 0x829D: 2.8, 0x8827: 200, 0x927C: b"NOTE" * 8, 0xA005: {1: "R98"}})
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 30.0, 0.0)})
    return exif


def loaded(block: bytes) -> PILImage.Exif:
    exif = PILImage.Exif()
    exif.load(block)
    return exif


@pytest.mark.parametrize("order", ["II", "MM"])
def test_a_tiff_structured_files_photo_tags_are_laid_out_anew(order: str) -> None:
    """IFD0's camera, date and orientation and the Exif and GPS IFDs come over, read back by Pillow
    value for value; the resolution (the pixels' own) and the maker note and interoperability IFD
    (offsets into the file they came from) do not."""
    source = tiff_block(pillow_block(order).tobytes())
    block = read_tiff(io.BytesIO(source))
    assert block is not None and block[:2] == order.encode()
    exif = loaded(block)
    assert {k: v for k, v in exif.items() if k not in (0x8769, 0x8825)} == {0x010F: "Maker", 0x0110: "Model 7", 0x0112: 6, 0x0132: "2026:12:07 10:00:00"}
    assert exif.get_ifd(0x8769) == {0x829A: 1 / 125, 0x829D: 2.8, 0x8827: 200}
    assert exif.get_ifd(0x8825) == {1: "N", 2: (52.0, 30.0, 0.0)}
    assert read_tiff(io.BytesIO(block)) == block  # laid out as it would lay itself out


@pytest.mark.parametrize("mark", [b"IIRO", b"IIU\x00"])
def test_olympus_and_panasonic_raw_headers_are_tiff_structures_too(mark: bytes) -> None:
    block = camera_block("II")
    exif = loaded(read_tiff(io.BytesIO(mark + block[4:])) or b"")
    assert exif[0x010F].rstrip("\x00") == "Camera" and exif.get_ifd(0x8769) == {0xA002: 4000, 0xA003: 3000}  # no maker note


def test_an_exif_link_typed_as_an_ifd_offset_is_followed() -> None:
    """TIFF's type 13 (IFD), which some writers give the Exif IFD's link instead of LONG."""
    exif = loaded(read_tiff(io.BytesIO(camera_block("MM", link_type=13))) or b"")
    assert exif.get_ifd(0x8769) == {0xA002: 4000, 0xA003: 3000}


def test_what_is_not_a_tiff_structure_or_is_cut_short_gives_no_block() -> None:
    block = camera_block("MM")
    assert read_tiff(io.BytesIO(b"\xff\xd8\xff\xe0" + block)) is None  # a JPEG's start
    assert read_tiff(io.BytesIO(block[:30])) is None  # IFD0 cut in its entries
    assert read_tiff(io.BytesIO(block[:8] + struct.pack(">H", 0) + bytes(4))) is None  # an IFD0 of no fields


@pytest.mark.parametrize("order", ["II", "MM"])
@pytest.mark.parametrize("channels, bits", [(3, 8), (3, 16), (1, 16)])
def test_a_tiff_output_holds_the_block_beside_its_image(tmp_path: Path, order: str, channels: int, bits: int) -> None:
    """The block goes first in the file, as the camera wrote it (the maker note's bytes where they were),
    patched for the fused image (orientation 1, its size); IFD0 holds the camera's tags beside the
    image's; the pixels read back as written, by tifffile and Pillow, in one page."""
    pixels = torch.rand(channels, 5, 7, generator=torch.Generator().manual_seed(1))
    block = camera_block(order)
    out = tmp_path / "fused.tif"
    write_image(out, pixels, bits, exif=block)
    data = out.read_bytes()
    assert data[:4] == block[:4] and data.index(MAKER_NOTE) == block.index(MAKER_NOTE)
    with tifffile.TiffFile(out) as tiff:
        assert len(tiff.pages) == 1 and tiff.byteorder == ("<" if order == "II" else ">")
        stored = tiff.pages[0].asarray()
    expected = torch.round(pixels * (2**bits - 1)).to(torch.int32).permute(1, 2, 0).squeeze(-1).numpy()
    assert np.array_equal(stored.astype(np.int32), expected)
    with PILImage.open(out) as im:
        exif = im.getexif()
        assert (exif[0x010F].rstrip("\x00"), exif[0x0112], im.size) == ("Camera", 1, (7, 5))
        assert exif.get_ifd(0x8769) == {0x927C: MAKER_NOTE, 0xA002: 7, 0xA003: 5}
    assert loaded(read_image(out).exif or b"")[0x010F].rstrip("\x00") == "Camera"  # and a TIFF source gives its EXIF


def test_a_field_pointing_outside_its_block_stays_out_of_a_tiff_output(tmp_path: Path) -> None:
    """A damaged block's make points a megabyte past its end: in a TIFF output that offset would land
    in the image's own bytes, so the field is left out; the block's other fields go in."""
    block = bytearray(camera_block("II"))
    struct.pack_into("<I", block, 8 + 2 + 8, 1 << 20)  # IFD0's first field (make): its value's offset
    write_image(tmp_path / "fused.tif", torch.rand(3, 5, 7), exif=bytes(block))
    with PILImage.open(tmp_path / "fused.tif") as im:
        exif = im.getexif()
        assert 0x010F not in exif and exif[0x0112] == 1 and exif.get_ifd(0x8769)[0xA002] == 7
