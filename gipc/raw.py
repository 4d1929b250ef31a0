"""Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...) as sources, developed by LibRaw (rawpy).

A focus bracket shot in RAW is developed here the way focus-stacking tools develop one: every
frame alike, so that the frames differ in focus alone. LibRaw's defaults would not do that: its
automatic brightening scales each frame by its own histogram, and its white-level adjustment by
its own brightest pixels, so two frames of one bracket would come out in two exposures and the
fused image would show their seams. Both are off (:data:`DEVELOP`); the white balance is the one
the camera recorded (for the frames of one scene, the first frame's: a camera on automatic white
balance may record another for each frame), the colour space and tone curve sRGB's, the depth 16
bits. The camera's orientation is applied (the pixels come upright). No colour profile is carried:
the pixels are sRGB, which a file without a profile means. The EXIF tags are
(:func:`camera_exif`), read from the file itself, since LibRaw does not hand them over whole.

rawpy is imported on the first RAW file only, so that commands that never meet one do not pay
for it. LibRaw reports damaged pixel data by printing to the process's stderr (its data callback)
rather than by failing; :func:`develop` holds those lines and turns them into one ImageError.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from gipc.errors import ImageError
from gipc.exif import photo_block, read_ifd0, read_tiff, tiff_block
from gipc.files import check_readable

RAW_SUFFIXES = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl",
    ".pef", ".srw", ".3fr", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mos",
)  # fmt: skip
"""The RAW formats of the cameras LibRaw reads, by their usual suffixes."""

DEVELOP: dict[str, Any] = {
    "use_camera_wb": True,  # the white balance the camera recorded
    "no_auto_bright": True,  # no brightening by each frame's own histogram
    "adjust_maximum_thr": 0.0,  # the camera's white level, not one read off each frame's brightest pixels
    "gamma": (2.4, 12.92),  # the sRGB tone curve (LibRaw's default is BT.709's)
    "output_bps": 16,
}
"""rawpy ``postprocess`` settings (sRGB output and AHD demosaicing are rawpy's defaults)."""

_TRANSPOSED = 4
"""The bit of LibRaw's ``flip`` that swaps rows and columns (a quarter turn, or a transposition: EXIF orientations 5-8)."""
_ONE_AT_A_TIME = threading.Lock()
"""One development at a time: each redirects the process's stderr while LibRaw runs."""


def is_raw(path: Path) -> bool:
    """Whether ``path`` names a camera RAW file, by its suffix."""
    return path.suffix.lower() in RAW_SUFFIXES


def raw_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of :func:`develop`'s image, from the file's header (no pixels decoded); None
    where the header alone cannot tell (a camera whose pixels are not square, which LibRaw stretches)."""
    with _opened(path) as raw:
        sizes = raw.sizes
        if sizes.pixel_aspect != 1.0:
            return None
        return (sizes.width, sizes.height) if sizes.flip & _TRANSPOSED else (sizes.height, sizes.width)


def white_balance(path: Path) -> tuple[float, ...] | None:
    """The white balance the camera recorded in a RAW file (LibRaw's four multipliers); None where it
    recorded none (LibRaw then develops in daylight's)."""
    with _opened(path) as raw:
        multipliers = tuple(float(m) for m in raw.camera_whitebalance)
    return multipliers if any(multipliers) else None


def develop(path: Path, balance: tuple[float, ...] | None = None) -> np.ndarray:
    """(H, W, 3) uint16 sRGB pixels of a RAW file, developed with :data:`DEVELOP`, upright; under the
    white ``balance`` given (:func:`white_balance`: another frame's of the same bracket), else its own."""
    settings = DEVELOP if balance is None else {**DEVELOP, "use_camera_wb": False, "user_wb": list(balance)}
    failure: ImageError | None = None
    with _ONE_AT_A_TIME, _held_stderr() as messages:
        try:
            with _opened(path) as raw:
                pixels = _run(path, lambda: raw.postprocess(**settings))
        except ImageError as err:
            failure = err
    damage = [line.removeprefix(f"{path}: ") for line in messages]
    if damage:  # LibRaw's own words ("Unexpected end of file") say more than its error code
        raise ImageError(f"{path}: truncated or corrupt image data ({damage[0]})")
    if failure is not None:
        raise failure
    return pixels


_FUJI = b"FUJIFILMCCD-RAW "
_FUJI_JPEG = 84
"""Where a Fuji RAF file gives its embedded JPEG's offset and length (big-endian), as LibRaw reads them."""
_CR3 = b"ftypcrx "
"""A Canon CR3 file's first box: an ISO media file of brand ``crx``."""
_CANON_UUID = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")
"""The ``moov/uuid`` box of a CR3 file that holds its TIFF structures: CMT1 (IFD0), CMT2 (the Exif IFD),
CMT3 (the maker note), CMT4 (GPS)."""


def camera_exif(path: Path) -> bytes | None:
    """The EXIF block of a RAW file, without the maker note (its offsets point into the file): from
    its own tags where it is TIFF-structured (DNG, CR2, NEF, ARW, ORF, RW2, PEF, ...;
    :func:`gipc.exif.read_tiff`) or a Canon CR3; a Fuji RAF's as stored in its embedded JPEG, maker
    note and all; None for the others (CRW, MRW) and where it cannot be read."""
    try:
        with open(path, "rb") as file:
            header = file.read(_FUJI_JPEG + 8)
            if header.startswith(_FUJI):
                offset, length = struct.unpack_from(">II", header, _FUJI_JPEG)
                file.seek(offset)
                with PILImage.open(io.BytesIO(file.read(length))) as jpeg:
                    return tiff_block(jpeg.info.get("exif"))
            if header[4:12] == _CR3:
                return _cr3_exif(file)
            return read_tiff(file)
    except (OSError, struct.error, UnidentifiedImageError):
        return None


def _cr3_exif(file: BinaryIO) -> bytes | None:
    """A CR3 file's EXIF block (:func:`gipc.exif.photo_block`) from its CMT boxes, each a TIFF structure
    whose IFD0 holds that part's fields."""
    canon = io.BytesIO(_payload(io.BytesIO(_payload(file, b"moov")), b"uuid", _CANON_UUID))
    parts = {kind: read_ifd0(io.BytesIO(tiff)) for kind in (b"CMT1", b"CMT2", b"CMT4") if (tiff := _payload(canon, kind))}
    if b"CMT1" not in parts:
        return None
    order = parts[b"CMT1"][0]
    exif, gps = (parts[kind][1] if kind in parts and parts[kind][0] == order else [] for kind in (b"CMT2", b"CMT4"))
    return photo_block(order, parts[b"CMT1"][1], exif, gps)


def _payload(file: BinaryIO, kind: bytes, uuid: bytes = b"") -> bytes:
    """The payload of the first ISO media box of type ``kind`` among those ``file`` holds (after the 16-byte
    ``uuid`` of a uuid box, which must be that one); b"" where there is none. The others are skipped unread."""
    file.seek(0, 2)
    end, at = file.tell(), 0
    while at + 8 <= end:
        file.seek(at)
        size, found = struct.unpack(">I4s", file.read(8))
        start = at + 8
        if size == 1:  # a 64-bit size follows
            size, start = struct.unpack(">Q", file.read(8))[0], at + 16
        elif size == 0:  # to the file's end
            size = end - at
        if size < start - at or at + size > end:
            break
        if found == kind and file.read(len(uuid)) == uuid:
            return file.read(at + size - start - len(uuid))
        at += size
    return b""


def _rawpy(path: Path) -> Any:
    """The rawpy module, imported on the first RAW file; where it is missing, one line saying so."""
    try:
        import rawpy
    except ImportError:
        raise ImageError(f"{path}: a camera RAW file, and reading one needs rawpy (pip install rawpy), which is missing") from None
    return rawpy


@contextmanager
def _opened(path: Path) -> Iterator[Any]:
    check_readable(path)
    rawpy = _rawpy(path)
    with _run(path, lambda: rawpy.imread(str(path))) as raw:
        yield raw


def _run(path: Path, step: Any) -> Any:
    """``step()``, with LibRaw's failures as one ImageError line naming ``path``."""
    rawpy = _rawpy(path)
    try:
        return step()
    except (rawpy.LibRawFileUnsupportedError, rawpy.NotSupportedError):
        raise ImageError(f"{path}: not a RAW file LibRaw reads, or a corrupt one") from None
    except rawpy.LibRawTooBigError:
        raise ImageError(f"{path}: too large to decode") from None
    except (rawpy.LibRawError, MemoryError) as err:
        reason = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise ImageError(f"{path}: truncated or corrupt image data ({reason or type(err).__name__})") from None


@contextmanager
def _held_stderr() -> Iterator[list[str]]:
    """LibRaw's lines written to file descriptor 2 inside the block (:func:`_from_libraw`), held back
    from it and listed on leaving; the others (another thread's progress bar) go on to it as they
    were written."""
    messages: list[str] = []
    if sys.stderr is not None:  # Python's own buffered text first, where it was headed
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold (a GUI process): LibRaw's lines go nowhere anyway
        yield messages
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield messages
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            others = b""
            for line in held.read().splitlines(keepends=True):
                text = line.decode(errors="replace").strip()
                if _from_libraw(text):
                    messages.append(text)
                else:
                    others += line
            if others:
                os.write(2, others)


def _from_libraw(line: str) -> bool:
    """Whether a (stripped) line is LibRaw's data callback's: ``<file>: Unexpected end of file`` or ``<file>: data corrupted at N``."""
    return line.endswith("Unexpected end of file") or ": data corrupted at " in line
