"""The EXIF block carried to a fused image: patched where it would lie about the fused image, every
other byte as the camera wrote it."""

from __future__ import annotations

import struct

import pytest

from gipc.exif import PREFIX, for_output, tiff_block

MAKER_NOTE = bytes(range(256)) * 4  # a camera's private bytes: offsets inside must not move


def camera_block(order: str, orientation: int = 6, width_type: int = 4, height_type: int = 3) -> bytes:
    """A TIFF structure as a camera writes it, laid out by hand: IFD0 (make, orientation, Exif IFD
    link) linked to IFD1 (a thumbnail), and an Exif IFD with the stored pixel size and a maker note."""
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
    ifd0 = short(3) + entry(0x010F, 2, len(make), long(make_at)) + entry(0x0112, 3, 1, short(orientation)) + entry(0x8769, 4, 1, long(exif_at)) + long(ifd1_at)
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
