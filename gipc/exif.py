"""A source photo's EXIF block carried to its fused image: camera, lens, exposure and date stay with
the photo, as focus-stacking tools keep the first frame's.

The block is patched in place, never re-encoded: a maker note (a camera's private tags) holds
offsets that a re-encoding would break. Three fields would be wrong for the fused image and are
patched: the orientation (the pixels are written upright: 1), the image size in the Exif IFD (the
written one; ``--align`` crops) and the link to the source's thumbnail (cut: a viewer would show the
source's blur; its bytes stay, unreferenced). A block these steps cannot read is not carried.
"""

from __future__ import annotations

import struct
from typing import Iterator

PREFIX = b"Exif\x00\x00"
"""What precedes the TIFF structure in a JPEG's APP1 segment, and in Pillow's ``info["exif"]``."""
JPEG_LIMIT = 65533 - 2 - len(PREFIX)
"""The largest TIFF structure a JPEG's APP1 segment holds (its length field counts itself)."""

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
PIXEL_X, PIXEL_Y = 0xA002, 0xA003
_SHORT, _LONG = 3, 4


def tiff_block(info_exif: bytes | None) -> bytes | None:
    """The TIFF structure of a decoder's EXIF bytes (Pillow gives JPEG's, PNG's and HEIC's after the
    ``Exif\\0\\0`` prefix, WebP's without it); None where there is none or it is not one."""
    if not info_exif:
        return None
    block = info_exif.removeprefix(PREFIX)
    return block if block[:4] in (b"II*\x00", b"MM\x00*") and len(block) >= 8 else None


def for_output(block: bytes, width: int, height: int) -> bytes | None:
    """``block`` (a TIFF structure) as the fused image's: orientation 1, the Exif IFD's pixel size
    ``width`` x ``height`` where it names one, no thumbnail; None where the block cannot be read."""
    patched = bytearray(block)
    try:
        order = "<" if block[:2] == b"II" else ">"
        ifd0 = _unpack(order + "I", block, 4)
        exif_ifd = None
        for tag, kind, count, at in _entries(block, order, ifd0):
            if tag == ORIENTATION and kind == _SHORT and count == 1:
                struct.pack_into(order + "H", patched, at, 1)
            elif tag == EXIF_IFD and count == 1:
                exif_ifd = _unpack(order + "I", block, at)
        struct.pack_into(order + "I", patched, ifd0 + 2 + 12 * _unpack(order + "H", block, ifd0), 0)  # IFD0's link to IFD1
        if exif_ifd is not None:
            for tag, kind, count, at in _entries(block, order, exif_ifd):
                size = {PIXEL_X: width, PIXEL_Y: height}.get(tag)
                if size is not None and count == 1 and (kind == _LONG or (kind == _SHORT and size < 1 << 16)):
                    struct.pack_into(order + ("I" if kind == _LONG else "H"), patched, at, size)
    except (struct.error, IndexError):
        return None
    return bytes(patched)


def _unpack(fmt: str, block: bytes, at: int) -> int:
    if at < 0:
        raise IndexError(at)
    return struct.unpack_from(fmt, block, at)[0]


def _entries(block: bytes, order: str, offset: int) -> Iterator[tuple[int, int, int, int]]:
    """Each entry of the IFD at ``offset``: tag, type, count and where its value field lies."""
    for i in range(_unpack(order + "H", block, offset)):
        at = offset + 2 + 12 * i
        tag, kind, count = struct.unpack_from(order + "HHI", block, at)
        yield tag, kind, count, at + 8
