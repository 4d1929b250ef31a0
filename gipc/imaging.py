"""Reading and writing source and fused images, refusing anything that would fuse wrongly.

Every way an input can be unusable (missing, not an image, truncated, transparent, several images
in one file, too small, mismatched with its partner) ends in one :class:`ImageError` line naming the file, and 16-bit
sources keep their 16 bits: Pillow alone silently cuts 16-bit RGB to 8 bits, so those go through
pypng (PNG) or tifffile (TIFF). A colour profile (ICC) goes with the pixels: a phone's Display P3
photo fused and written without its profile shows duller colours in every viewer that reads the
file as sRGB. The first source's EXIF (camera, lens, exposure, date) goes with them too (:mod:`gipc.exif`).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pillow_heif
import torch
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps, UnidentifiedImageError

from gipc.color import stored_as, unit_range
from gipc.errors import ImageError
from gipc.exif import JPEG_LIMIT, PREFIX, for_output, read_tiff, tiff_block, write_tiff
from gipc.files import atomic_path, check_readable, check_writable
from gipc.raw import camera_exif, develop, is_raw, raw_size, white_balance

# A truncated JPEG must fail loudly rather than come back half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Phones' HEIC/HEIF photos open in Pillow, turned upright (their EXIF orientation is then 1), 8 bits
pillow_heif.register_heif_opener()

MIN_SIDE = 2
"""Smallest height/width accepted: 3x3 filters with reflect padding (Laplacian, baselines) need 2."""

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_TO_RGB_MODES = {"P", "CMYK", "YCbCr", "LAB", "HSV"}
WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
JPEG_SUFFIXES = (".jpg", ".jpeg")
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Image:
    """A decoded image: ``stored`` (C, H, W), C = 1 (gray) or 3 (RGB), uint8 or uint16 as in the file
    (a quarter or half of float32's memory: a long focus stack is held this way while it is fused)."""

    stored: torch.Tensor
    bit_depth: int
    path: Path | None = None
    icc: bytes | None = None
    """The colour profile (ICC) the file embeds; None: none (the values are then read as sRGB)."""
    exif: bytes | None = None
    """The photo's EXIF block (a TIFF structure): a JPEG's, PNG's, WebP's or HEIC's as stored, a TIFF's
    or camera RAW file's laid out from its tags (:mod:`gipc.exif`); None: none."""

    @property
    def pixels(self) -> torch.Tensor:
        """(C, H, W) float32 in [0, 1], made anew at each read."""
        return unit_range(self.stored)

    @property
    def kind(self) -> str:
        return "grayscale" if self.stored.shape[0] == 1 else "RGB"

    @property
    def height(self) -> int:
        return self.stored.shape[1]

    @property
    def width(self) -> int:
        return self.stored.shape[2]


@contextmanager
def _opened(path: Path) -> Iterator[PILImage.Image]:
    """``path`` opened by Pillow; every way it or the reading inside the block fails is one ImageError line."""
    check_readable(path)
    try:
        # from a file object: Pillow then decodes rather than memory-maps uncompressed pixels, whose
        # quarter turn by an EXIF orientation it garbles (a gray TIFF's, Pillow 13)
        with open(path, "rb") as file, PILImage.open(file) as im:
            _check_one_image(path, im)
            yield im
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or a corrupt one") from None
    except PILImage.DecompressionBombError:
        raise ImageError(f"{path}: too large to decode safely (over Pillow's pixel limit)") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error) as err:
        raise ImageError(f"{path}: truncated or corrupt image data ({err})") from None


def _check_one_image(path: Path, im: PILImage.Image) -> None:
    """A file of several images of one size (a multi-page TIFF, an animated GIF, PNG or WebP) holds a
    stack, not one source: its first image alone would be fused without a word. Smaller ones (a TIFF's
    reduced-resolution pages, a camera JPEG's preview) are copies of the first and pass."""
    count = getattr(im, "n_frames", 1)
    if count < 2:
        return
    first, sizes = im.size, []
    try:
        for index in range(1, count):
            im.seek(index)
            sizes.append(im.size)
    finally:
        im.seek(0)
    if first in sizes:
        raise ImageError(
            f"{path}: holds {1 + sizes.count(first)} images of one size (pages or frames); gipc fuses one image per file: save each as its own file"
        )


def _check_side(path: Path, height: int, width: int, min_side: int) -> None:
    if min(height, width) < min_side:
        raise ImageError(f"{path}: {width}x{height} is too small to fuse (min {min_side}x{min_side})")


def read_image(path: str | Path, min_side: int = MIN_SIDE, balance: tuple[float, ...] | None = None) -> Image:
    """Decode an 8- or 16-bit gray/RGB image; palette and CMYK become RGB; an alpha channel is dropped
    where every pixel is opaque (nothing is lost) and refused where one is not. A camera's RAW file
    is developed (:mod:`gipc.raw`), under the white ``balance`` given, else its own."""
    path = Path(path)
    if is_raw(path):  # a camera's RAW file: developed alike for every frame, 16 bits, sRGB
        array = develop(path, balance)
        _check_side(path, *array.shape[:2], min_side)
        return Image(torch.from_numpy(array).permute(2, 0, 1).contiguous(), 16, path, exif=camera_exif(path))
    with _opened(path) as im:
        orientation = _orientation(im)
        deep = (im.mode == "RGB" or _has_alpha(im)) and _bits_per_sample(path, im) == 16
        if deep:  # Pillow would cut these to 8 bits; pypng and tifffile give the stored pixels
            array, bit_depth = _oriented(_read_deep(path, im.format), orientation), 16
        else:
            im.load()
            array, bit_depth = _pil_array(path, ImageOps.exif_transpose(im))
        icc, exif = _profile(im), _exif(path, im)
    _check_side(path, *array.shape[:2], min_side)
    stored = torch.from_numpy(np.require(array, np.uint16 if bit_depth == 16 else np.uint8, ["C", "W"]))  # Pillow's arrays are read-only
    return Image(stored.unsqueeze(0) if stored.ndim == 2 else stored.permute(2, 0, 1).contiguous(), bit_depth, path, icc, exif)


def _exif(path: Path, im: PILImage.Image) -> bytes | None:
    """The EXIF block of an image Pillow opened: the one a JPEG, PNG, WebP or HEIC file holds, as
    stored; a TIFF's laid out from its tags (:func:`gipc.exif.read_tiff`)."""
    if im.format == "TIFF":
        with open(path, "rb") as file:
            return read_tiff(file)
    return tiff_block(im.info.get("exif"))


def _profile(im: PILImage.Image) -> bytes | None:
    """The ICC profile Pillow found in the header (a PNG's iCCP, a JPEG's APP2, a TIFF's tag, a HEIC's)."""
    return im.info.get("icc_profile") or None


@dataclass(frozen=True)
class Header:
    """What an image's header says, read without decoding its pixels."""

    path: Path
    kind: str
    height: int
    width: int
    icc: bytes | None = None
    bit_depth: int = 8


def read_header(path: str | Path, min_side: int = MIN_SIDE) -> Header:
    """The kind and size :func:`read_image` would give, from the header alone (a few ms for any size): a
    missing, unreadable, transparent or too small file fails here, before any work on others starts
    (an image with an alpha channel is decoded for it). Damage further into the pixel data shows
    only when they are decoded."""
    path = Path(path)
    if is_raw(path):
        size = raw_size(path)
        height, width = size if size is not None else read_image(path, min_side).stored.shape[1:]
        _check_side(path, height, width, min_side)
        return Header(path, "RGB", height, width, None, 16)
    with _opened(path) as im:
        if _has_alpha(im):  # only the pixels tell whether it is opaque: decoded here, as the rest of the header
            image = read_image(path, min_side)
            return Header(path, image.kind, image.height, image.width, image.icc, image.bit_depth)
        if im.mode == "F":
            raise ImageError(f"{path}: unsupported pixel mode 'F'; save it as 8- or 16-bit gray or RGB")
        rgb_bits = _bits_per_sample(path, im) if im.mode == "RGB" else 8
        if rgb_bits == 16 and im.format not in ("PNG", "TIFF"):
            raise ImageError(f"{path}: 16-bit RGB {im.format} is not supported; convert it to a 16-bit PNG or TIFF")
        kind = "grayscale" if im.mode in ("1", "L", "I") or im.mode.startswith("I;") else "RGB"
        width, height = im.size
        # EXIF met before the pixel data (a JPEG's, say); Pillow would read a PNG's to its end for more
        if "exif" in im.info and im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # turned a quarter on reading
            width, height = height, width
        icc = _profile(im)
        deep = im.mode == "I" or im.mode.startswith("I;16") or rgb_bits == 16
    _check_side(path, height, width, min_side)
    return Header(path, kind, height, width, icc, 16 if deep else 8)


def check_matching(items: list[Image] | list[Header]) -> None:
    """Sources of one scene must share H x W, be all gray or all RGB, and not embed two different
    colour profiles (their pixels' values would mean different colours; one without a profile passes)."""
    if not items:
        raise ImageError("no images given")
    first = items[0]
    for item in items[1:]:
        if item.kind != first.kind:
            raise ImageError(f"{item.path} is {item.kind} but {first.path} is {first.kind}; convert them to one kind")
        if (item.height, item.width) != (first.height, first.width):
            raise ImageError(
                f"{item.path} is {item.width}x{item.height} but {first.path} is {first.width}x{first.height}; "
                "the sources must be registered images of one size"
            )
    profiled = [item for item in items if item.icc is not None]
    for item in profiled[1:]:
        if item.icc != profiled[0].icc:
            raise ImageError(
                f"{item.path} embeds another colour profile (ICC) than {profiled[0].path}; "
                "convert the sources to one colour space (or strip the profile of those already in it)"
            )


def profile(items: list[Image] | list[Header]) -> bytes | None:
    """The colour profile sources of one scene embed (:func:`check_matching`: at most one), for their fused image."""
    return next((item.icc for item in items if item.icc is not None), None)


def first_exif(images: list[Image]) -> bytes | None:
    """The EXIF block of the first of ``images`` that holds one, for their fused image (a focus stack's
    frames differ only in focus and time: the first frame's, as focus-stacking tools keep it)."""
    return next((image.exif for image in images if image.exif is not None), None)


def sized(paths: list[str | Path] | tuple[str | Path, ...]) -> list[Header] | list[Image]:
    """The headers of ``paths`` where their sizes agree; where they do not, the decoded images, since a
    header may not tell the orientation the decoder applies (an eXIf chunk after a PNG's pixels):
    only a size the decoder gives is ever refused."""
    headers = [read_header(p) for p in paths]
    if len({(h.height, h.width) for h in headers}) <= 1:
        return headers
    return [read_image(p) for p in paths]


def check_sources(paths: list[str | Path] | tuple[str | Path, ...]) -> list[Header] | list[Image]:
    """:func:`check_matching` before any decoding where the headers suffice (:func:`sized`); the headers (or images) read."""
    items = sized(paths)
    check_matching(items)
    return items


def read_matching(paths: list[str | Path] | tuple[str | Path, ...]) -> list[Image]:
    """Read sources of one scene (:func:`check_matching`); RAW frames all under the first RAW frame's
    white balance, so that a bracket shot on automatic white balance shows no colour seams."""
    first_raw = next((Path(p) for p in paths if is_raw(Path(p))), None)
    balance = white_balance(first_raw) if first_raw is not None else None
    images = [read_image(p, balance=balance) for p in paths]
    check_matching(images)
    return images


def write_image(
    path: str | Path,
    pixels: torch.Tensor,
    bit_depth: int = 8,
    overwrite: bool = False,
    protected: tuple[Path, ...] = (),
    icc: bytes | None = None,
    exif: bytes | None = None,
) -> None:
    """Write (C, H, W) pixels in [0, 1] atomically: PNG (8/16-bit), JPEG (8-bit, quality 95: a 16-bit
    ``bit_depth`` is rounded to 8, all JPEG holds) or TIFF,
    with the colour profile ``icc`` embedded where given, and the EXIF block ``exif`` made the written
    image's (:func:`gipc.exif.for_output`; a JPEG holds 64 KiB of it at most, a TIFF 4 GiB in all).

    Never replaces a ``protected`` file (the inputs), nor an existing one unless ``overwrite``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check_output_format(path, bit_depth)
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ImageError(f"{path}: expected (C, H, W) pixels with C = 1 or 3, got {tuple(pixels.shape)}")
    check_writable(path, overwrite, protected)
    deep = bit_depth == 16 and suffix not in JPEG_SUFFIXES
    stored = stored_as(pixels.detach().float().cpu().clamp(0.0, 1.0), torch.uint16 if deep else torch.uint8)
    array = stored.permute(1, 2, 0).numpy()
    array = array[..., 0] if array.shape[2] == 1 else array
    if exif is not None:
        exif = for_output(exif, array.shape[1], array.shape[0])
        if exif is not None and len(exif) > (JPEG_LIMIT if suffix in JPEG_SUFFIXES else TIFF_LIMIT - array.nbytes):
            exif = None
    try:
        with atomic_path(path) as tmp:
            _encode(tmp, suffix, array, icc, exif)
    except OSError as err:
        raise ImageError(f"cannot write {path}: {err.strerror or err}") from None


def check_output_format(path: Path, bit_depth: int = 8) -> None:
    """Refuse an output file name whose format :func:`write_image` cannot write, or a ``bit_depth`` it
    does not write (before any work)."""
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise ImageError(f"{path}: cannot write '{path.suffix}' files; use .png, .jpg or .tif")
    if bit_depth not in (8, 16):
        raise ImageError(f"{path}: bit depth must be 8 or 16, got {bit_depth}")


def _orientation(im: PILImage.Image) -> int:
    """The EXIF orientation of the stored pixels, read before decoding them (a PNG's only from an eXIf
    chunk before its pixel data, as :func:`read_header` reads it)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return im.getexif().get(EXIF_ORIENTATION, 1)


def _oriented(array: np.ndarray, orientation: int) -> np.ndarray:
    """Stored (H, W[, C]) pixels turned upright by their EXIF orientation, as ``ImageOps.exif_transpose`` turns them."""
    turn = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a.swapaxes(0, 1), 2),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return np.ascontiguousarray(turn(array)) if turn else array


def _bits_per_sample(path: Path, im: PILImage.Image) -> int:
    """Bits per channel as stored in the file (Pillow's RGB mode hides 16-bit PNG, TIFF and PPM)."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)  # signature (8) + IHDR length/type (8) + width, height (8) + depth
        return header[24] if len(header) == 26 else 8
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        return max(bits) if isinstance(bits, tuple) else int(bits)
    if im.format == "PPM":
        with open(path, "rb") as f:
            header = re.sub(rb"#[^\n]*", b"", f.read(1024)).split()  # magic, width, height, maxval
        return 16 if len(header) > 3 and header[3].isdigit() and int(header[3]) > 255 else 8
    return 8


def _read_deep(path: Path, fmt: str | None) -> np.ndarray:
    """Decode a 16-bit PNG or TIFF, RGB or with an alpha channel, to (H, W, 3) or (H, W) uint16."""
    if fmt == "TIFF":
        import tifffile

        with tifffile.TiffFile(path) as tiff:  # the first page: _check_one_image passed any others as previews
            page = tiff.pages[0]
            array = page.asarray()
            if array.ndim == 3 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:  # each channel a plane of its own
                array = np.moveaxis(array, 0, -1)
        if array.ndim == 3 and array.shape[2] in (2, 4):  # gray or RGB, then alpha
            array = _opaque_16(path, array)
    elif fmt == "PNG":
        import png

        try:
            width, height, rows, info = png.Reader(filename=str(path)).asDirect()  # a tRNS colour key becomes alpha
            array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, info["planes"])
        except png.Error as err:
            raise ImageError(f"{path}: truncated or corrupt image data ({err})") from None
        if info["alpha"]:
            array = _opaque_16(path, array)
    else:
        raise ImageError(f"{path}: 16-bit RGB {fmt} is not supported; convert it to a 16-bit PNG or TIFF")
    if array.ndim == 3 and array.shape[2] == 1:  # gray
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or array.dtype != np.uint16:
        raise ImageError(f"{path}: unsupported 16-bit layout {array.shape} {array.dtype}; save it as 16-bit RGB PNG")
    return array


def _has_alpha(im: PILImage.Image) -> bool:
    return im.mode in _ALPHA_MODES or "transparency" in im.info


def _transparent(path: Path) -> ImageError:
    return ImageError(f"{path}: has transparent pixels; flatten it onto a background first")


def _opaque_16(path: Path, array: np.ndarray) -> np.ndarray:
    """(H, W, C + 1) uint16 with alpha last -> (H, W, C), refused unless every pixel is opaque."""
    if array[..., -1].min() < 65535:
        raise _transparent(path)
    return array[..., :-1]


def _opaque(path: Path, im: PILImage.Image) -> PILImage.Image:
    """``im`` without its alpha channel or colour key, refused unless every pixel is opaque (then nothing is lost)."""
    if im.convert("RGBA").getchannel("A").getextrema()[0] < 255:
        raise _transparent(path)
    if im.mode == "L" or im.mode.startswith("I"):  # gray with a colour key: its pixels are the image
        return im
    return im.convert("L" if im.mode in ("LA", "La") else "RGB")


def _pil_array(path: Path, im: PILImage.Image) -> tuple[np.ndarray, int]:
    """Pillow image -> (H, W) or (H, W, 3) uint8/uint16 array and its bit depth."""
    if _has_alpha(im):
        im = _opaque(path, im)
    if im.mode in _TO_RGB_MODES:
        im = im.convert("RGB")
    elif im.mode == "1":
        im = im.convert("L")
    if im.mode in ("L", "RGB"):
        return np.asarray(im, dtype=np.uint8), 8
    if im.mode.startswith("I;16") or im.mode == "I":
        array = np.asarray(im)
        if array.min() < 0 or array.max() > 65535:
            raise ImageError(f"{path}: 32-bit integer pixels are not supported; save it as 8- or 16-bit")
        return array.astype(np.uint16), 16
    raise ImageError(f"{path}: unsupported pixel mode {im.mode!r}; save it as 8- or 16-bit gray or RGB")


TIFF_LIMIT = (1 << 32) - (1 << 25)
"""The most bytes of pixels and EXIF a classic TIFF is written with (tifffile's own margin under 4 GiB):
beyond it tifffile writes a BigTIFF, whose offsets an EXIF block's are not."""

PNG_COMPRESSION = 1
"""zlib level of written PNGs: on the 20 fused Lytro images level 1 encodes in 19 ms against Pillow's
default 6's 75 ms, for files 6.5 % larger (411 against 386 KiB; benchmarks/README.md)."""


def _encode(tmp: Path, suffix: str, array: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> None:
    """Write ``array`` (H, W[, 3]) uint8/uint16 to ``tmp`` in the format of ``suffix``, with the colour
    profile ``icc`` and the EXIF block ``exif`` (a TIFF structure)."""
    embedded = {} if icc is None else {"icc_profile": icc}
    if exif is not None:
        embedded["exif"] = PREFIX + exif
    if suffix in (".tif", ".tiff"):
        import tifffile

        def image(file: BinaryIO, byteorder: str | None = None) -> None:
            # offsets from the file's start; no description or software of tifffile's, where the photo's own would go
            photometric = "rgb" if array.ndim == 3 else "minisblack"
            handle = tifffile.FileHandle(file, offset=0)
            tifffile.imwrite(handle, array, photometric=photometric, iccprofile=icc, byteorder=byteorder, metadata=None, software=False)

        with open(tmp, "w+b") as file:  # the EXIF's join reads the image's IFD back
            if exif is None:
                image(file)
            else:
                write_tiff(file, exif, image)
    elif array.dtype == np.uint16 and array.ndim == 3:
        import png

        height, width = array.shape[:2]
        image = png.from_array(array.reshape(height, width * 3), "RGB;16", info={"compression": PNG_COMPRESSION})
        if icc is None and exif is None:
            image.save(str(tmp))
            return
        encoded = io.BytesIO()
        image.write(encoded)
        chunks = list(png.Reader(bytes=encoded.getvalue()).chunks())
        if exif is not None:
            chunks.insert(1, (b"eXIf", exif))  # before the pixel data, where readers look for it
        if icc is not None:
            chunks.insert(1, (b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))  # after IHDR: name, compression method 0
        with open(tmp, "wb") as file:
            png.write_chunks(file, chunks)
    elif suffix == ".png":
        PILImage.fromarray(array).save(tmp, format="PNG", compress_level=PNG_COMPRESSION, **embedded)
    else:
        PILImage.fromarray(array).save(tmp, format="JPEG", quality=95, subsampling=0, **embedded)
