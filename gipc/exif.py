"""A source photo's EXIF block carried to its fused image: camera, lens, exposure and date stay with
the photo, as focus-stacking tools keep the first frame's.

The block is patched in place, never re-encoded: a maker note (a camera's private tags) holds
offsets that a re-encoding would break. Three fields would be wrong for the fused image and are
patched: the orientation (the pixels are written upright: 1), the image size in the Exif IFD (the
written one; ``--align`` crops) and the link to the source's thumbnail (cut: a viewer would show the
source's blur; its bytes stay, unreferenced). A block these steps cannot read is not carried.

A TIFF output takes the block as its first bytes, where its offsets (a maker note's too) still
point right, and joins it to the image in one IFD0 (:func:`write_tiff`). A TIFF-structured source
(a TIFF, a DNG, most cameras' RAW files) holds its tags among its image's: its block is laid out
anew from them (:func:`read_tiff`), without the maker note, whose offsets point into that file.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Callable, Iterator

PREFIX = b"Exif\x00\x00"
"""What precedes the TIFF structure in a JPEG's APP1 segment, and in Pillow's ``info["exif"]``."""
JPEG_LIMIT = 65533 - 2 - len(PREFIX)
"""The largest TIFF structure a JPEG's APP1 segment holds (its length field counts itself)."""

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
PIXEL_X, PIXEL_Y = 0xA002, 0xA003
MAKER_NOTE, INTEROP_IFD = 0x927C, 0xA005
_SHORT, _LONG = 3, 4
_IFD = 13
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, _IFD: 4}
"""Bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, ... DOUBLE, and IFD: an offset)."""
PHOTO_TAGS = frozenset({
    0x010E, 0x010F, 0x0110, ORIENTATION, 0x0131, 0x0132, 0x013B, 0x013C, 0x8298,  # description, make, model, ..., copyright
    0x4746, 0x4749, 0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F,  # rating, Windows' title, comment, author, keywords, subject
    EXIF_IFD, GPS_IFD,
})  # fmt: skip
"""The IFD0 tags that describe the photo rather than how its pixels are stored, and the links to its
Exif and GPS IFDs: what a TIFF-structured file's IFD0 gives its block, and a block gives a TIFF output."""
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")
"""TIFF's two headers, and those of Olympus's ORF and Panasonic's RW2 files, TIFF structures under another mark."""
_MAX_VALUE = 1 << 16
"""The largest field kept from a source's IFD (a JPEG's APP1 segment holds 64 KiB in all)."""


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


def read_tiff(file: BinaryIO) -> bytes | None:
    """The EXIF block of a TIFF-structured file (a TIFF, a DNG, a CR2, NEF, ARW, ORF, RW2, ...):
    :func:`photo_block` of its IFD0 and the Exif and GPS IFDs it links; None where the file is not
    TIFF-structured or holds none of their tags."""
    try:
        order, ifd0 = read_ifd0(file)
        links = {tag: _unpack(order + "I", value, 0) for tag, kind, _, value in ifd0 if tag in (EXIF_IFD, GPS_IFD) and kind in (_LONG, _IFD)}
        exif, gps = (_read_ifd(file, order, links[tag]) if tag in links else [] for tag in (EXIF_IFD, GPS_IFD))
    except (struct.error, IndexError, OSError):
        return None
    return photo_block(order, ifd0, exif, gps)


def read_ifd0(file: BinaryIO) -> tuple[str, list[_Field]]:
    """The byte order (struct's ``<`` or ``>``) and IFD0 fields of a TIFF structure; struct.error where ``file`` is not one."""
    file.seek(0)
    header = file.read(8)
    if header[:4] not in _TIFF_HEADERS:
        raise struct.error("not a TIFF structure")
    order = "<" if header[:2] == b"II" else ">"
    return order, _read_ifd(file, order, _unpack(order + "I", header, 4))


def photo_block(order: str, ifd0: list[_Field], exif: list[_Field], gps: list[_Field]) -> bytes | None:
    """A new EXIF block in byte ``order`` of a photo's IFD0 fields that describe the photo
    (:data:`PHOTO_TAGS`), its Exif IFD's fields but the maker note (its offsets point into the file it
    came from) and the interoperability IFD's link, and its GPS IFD's; None where that leaves none."""
    ifds = [[f for f in ifd0 if f[0] in PHOTO_TAGS and f[0] not in (EXIF_IFD, GPS_IFD)]]
    links = []
    for tag, fields in ((EXIF_IFD, exif), (GPS_IFD, gps)):
        kept = [f for f in fields if f[0] not in (MAKER_NOTE, INTEROP_IFD)]
        if kept:
            links.append(tag)
            ifds.append(kept)
    return _laid_out(order, ifds, links) if len(ifds) > 1 or ifds[0] else None


def write_tiff(file: BinaryIO, block: bytes, write: Callable[[BinaryIO, str], None]) -> None:
    """A TIFF file of the image ``write(file, order)`` writes and of ``block`` (a TIFF structure): the
    block first, as it is, so that its offsets (from the file's start) still point right; then the
    image, which ``write`` must lay out in the block's byte ``order`` (struct's ``<`` or ``>``), a
    classic TIFF with offsets from the file's start too; then an IFD0 of the image's fields and the
    block's IFD0 fields that describe the photo (:data:`PHOTO_TAGS`, the image's where both hold
    one), to which the file's header points."""
    order = "<" if block[:2] == b"II" else ">"
    file.write(block + b"\x00" * (len(block) % 2))
    start = file.tell()
    write(file, order)
    file.seek(start)
    image = file.read(8)
    assert image[:4] == block[:4], "the image must be a classic TIFF in the block's byte order"
    at = _unpack(order + "I", image, 4)
    file.seek(at)
    count = _unpack(order + "H", file.read(2), 0)
    entries = {struct.unpack_from(order + "H", raw)[0]: raw for raw in (file.read(12) for _ in range(count))}
    following = file.read(4)  # the image's link to a next IFD
    for tag, kind, count, at_value in _entries(block, order, _unpack(order + "I", block, 4)):
        if tag in PHOTO_TAGS and tag not in entries and _inside(block, order, kind, count, at_value):
            entries[tag] = block[at_value - 8 : at_value + 4]
    file.seek(0, 2)
    if file.tell() % 2:
        file.write(b"\x00")
    joined = file.tell()
    file.write(struct.pack(order + "H", len(entries)) + b"".join(entries[tag] for tag in sorted(entries)) + following)
    file.seek(4)
    file.write(struct.pack(order + "I", joined))
    file.seek(0, 2)


def _inside(block: bytes, order: str, kind: int, count: int, at_value: int) -> bool:
    """Whether a field of ``block`` of a known type holds its value inline or within the block (a
    damaged block's may point anywhere in the file it is copied into)."""
    size = _SIZES.get(kind, 0) * count
    return 0 < size and (size <= 4 or _unpack(order + "I", block, at_value) + size <= len(block))


_Field = tuple[int, int, int, bytes]
"""A field of an IFD: tag, type, count and its value's bytes (4 at least: an inline value as stored)."""


def _read_ifd(file: BinaryIO, order: str, offset: int) -> list[_Field]:
    """The fields of the IFD at ``offset`` whose type is known and whose value is at most :data:`_MAX_VALUE` bytes."""
    file.seek(offset)
    count = _unpack(order + "H", file.read(2), 0)
    raw = file.read(12 * count)
    fields = []
    for i in range(count):
        tag, kind, number = struct.unpack_from(order + "HHI", raw, 12 * i)
        size = _SIZES.get(kind, 0) * number
        if not 0 < size <= _MAX_VALUE:
            continue
        value = raw[12 * i + 8 : 12 * i + 12]
        if size > 4:
            file.seek(_unpack(order + "I", value, 0))
            value = file.read(size)
            if len(value) < size:
                continue
        fields.append((tag, kind, number, value))
    return fields


def _laid_out(order: str, ifds: list[list[_Field]], links: list[int]) -> bytes:
    """A TIFF structure of ``ifds`` (IFD0 first), IFD0 linking the others by the tags ``links``, one
    each in order; each IFD's values over 4 bytes follow it, at even offsets."""
    out = bytearray(b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    ifd0 = sorted(ifds[0] + [(tag, _LONG, 1, b"\x00" * 4) for tag in links])
    link_values = {}
    for number, fields in enumerate([ifd0, *(sorted(f) for f in ifds[1:])]):
        if number:
            struct.pack_into(order + "I", out, link_values[links[number - 1]], len(out))
        start = len(out)
        values_at = start + 2 + 12 * len(fields) + 4
        out += struct.pack(order + "H", len(fields))
        values = bytearray()
        for tag, kind, count, value in fields:
            if number == 0 and tag in links:
                link_values[tag] = len(out) + 8
            if len(value) > 4:
                out += struct.pack(order + "HHII", tag, kind, count, values_at + len(values))
                values += value + b"\x00" * (len(value) % 2)
            else:
                out += struct.pack(order + "HHI", tag, kind, count) + value
        out += b"\x00" * 4 + values
    return bytes(out)
