"""Image reading/writing: every bad input gives its one-line ImageError and nothing is written."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
import skimage.data
import torch
from PIL import Image as PILImage

from gipc.errors import ImageError, OutputExistsError
from gipc.imaging import check_matching, check_sources, read_header, read_image, read_matching, write_image

from helpers import icc_profiles


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    PILImage.fromarray(array, mode=mode).save(path) if mode else PILImage.fromarray(array).save(path)
    return path


def _rgb16_png(path: Path, array: np.ndarray) -> Path:
    """Write a 16-bit RGB PNG with pypng, independently of the code under test."""
    h, w, _ = array.shape
    png.from_array(array.reshape(h, w * 3), "RGB;16").save(str(path))
    return path


def _truncated_16bit_rgb_png(path: Path) -> None:
    full = _rgb16_png(path.with_name("full.png"), np.full((16, 16, 3), 40000, np.uint16))
    path.write_bytes(full.read_bytes()[:60])


def _truncated_heic(path: Path) -> None:
    PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(path, quality=80)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name, make, message", [
    ("nope.png", lambda path: None, r"nope\.png: no such file"),
    ("folder", lambda path: path.mkdir(), r"folder: is a folder, not an image"),
    ("notes.png", lambda path: path.write_text("hello"), r"notes\.png: not an image, or a corrupt one"),
    ("noise.jpg", lambda path: path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()),
     r"noise\.jpg: not an image, or a corrupt one"),
    ("cut.png", _truncated_16bit_rgb_png, r"cut\.png: truncated or corrupt image data"),
    ("cut.heic", _truncated_heic, r"cut\.heic: truncated or corrupt image data"),
], ids=["missing", "folder", "text-file", "random-bytes-jpeg", "truncated-16bit-png", "truncated-heic"])
def test_unreadable_inputs_are_refused_with_the_reason(tmp_path: Path, name: str, make, message: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(ImageError, match=message):
        read_image(path)


def test_an_image_over_pillows_pixel_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow raises its own DecompressionBombError past twice MAX_IMAGE_PIXELS: one ImageError line instead."""
    path = _save(tmp_path / "huge.png", np.zeros((8, 8), np.uint8))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 16)  # 64 pixels > 2 x 16
    for read in (read_image, read_header):
        with pytest.raises(ImageError, match=r"huge\.png: too large to decode safely \(over Pillow's pixel limit\)$"):
            read(path)


def test_truncated_jpeg_is_refused(tmp_path: Path, lytro_pairs: Path) -> None:
    data = (lytro_pairs / "lytro-01-A.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"half\.jpg: truncated or corrupt image data"):
        read_image(path)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_are_refused(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "alpha.png"
    PILImage.new(mode, (4, 4)).save(path)  # alpha 0 everywhere
    with pytest.raises(ImageError, match=r"alpha\.png: has transparent pixels; flatten it onto a background first"):
        read_image(path)


def test_palette_with_transparency_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pal.png"
    PILImage.new("P", (4, 4)).save(path, transparency=0)
    for read in (read_image, read_header):  # the header refuses it too, before any work on other sources
        with pytest.raises(ImageError, match=r"pal\.png: has transparent pixels"):
            read(path)


def test_an_opaque_alpha_channel_is_dropped(tmp_path: Path) -> None:
    """Screenshots and editors save opaque images with alpha: every pixel at full alpha loses nothing
    when the channel goes, so such files read as the RGB or gray image they show; one pixel short of
    opaque is refused, at 8 and 16 bits."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    PILImage.fromarray(np.dstack([rgb, np.full((5, 7), 255, np.uint8)])).save(tmp_path / "rgba.png")
    PILImage.fromarray(np.dstack([rgb[..., 0], np.full((5, 7), 255, np.uint8)]), mode="LA").save(tmp_path / "la.png")
    pal = PILImage.fromarray(rgb).convert("P")
    unused = next(i for i in range(256) if i not in set(np.asarray(pal).ravel().tolist()))
    pal.save(tmp_path / "key.png", transparency=unused)  # a colour key no pixel holds
    gray = rgb[..., 1] // 2 * 2  # even levels only: the key 1 is held by no pixel
    PILImage.fromarray(gray).save(tmp_path / "graykey.png", transparency=1)
    for name, expected in (("rgba", rgb), ("la", rgb[..., 0]), ("key", np.asarray(pal.convert("RGB"))), ("graykey", gray)):
        image = read_image(tmp_path / f"{name}.png")
        got = (image.pixels * 255).round().byte().numpy()
        assert image.bit_depth == 8 and np.array_equal(got[0] if expected.ndim == 2 else got.transpose(1, 2, 0), expected)
        header = read_header(tmp_path / f"{name}.png")
        assert (header.kind, header.height, header.width) == (image.kind, 5, 7)
    deep = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    opaque = np.dstack([deep, np.full((5, 7), 65535, np.uint16)])
    png.from_array(opaque.reshape(5, 28), "RGBA;16").save(str(tmp_path / "rgba16.png"))
    png.from_array(opaque[..., 2:].reshape(5, 14), "LA;16").save(str(tmp_path / "la16.png"))
    tifffile.imwrite(tmp_path / "rgba16.tif", opaque, photometric="rgb", extrasamples=["unassalpha"])
    for name, expected in (("rgba16.png", deep), ("la16.png", deep[..., 2]), ("rgba16.tif", deep)):
        image = read_image(tmp_path / name)
        assert image.bit_depth == 16 and read_header(tmp_path / name).kind == image.kind
        got = (image.pixels.double() * 65535).round().long().numpy()
        assert np.array_equal(got[0] if expected.ndim == 2 else got.transpose(1, 2, 0), expected)
    opaque[4, 6, 3] = 65534
    png.from_array(opaque.reshape(5, 28), "RGBA;16").save(str(tmp_path / "almost16.png"))
    rgba = np.dstack([rgb, np.full((5, 7), 255, np.uint8)])
    rgba[0, 0, 3] = 254
    PILImage.fromarray(rgba).save(tmp_path / "almost.png")
    for name in ("almost16.png", "almost.png"):
        with pytest.raises(ImageError, match=rf"{name.replace('.', '[.]')}: has transparent pixels"):
            read_header(tmp_path / name)


def test_palette_becomes_rgb_with_its_colours(tmp_path: Path) -> None:
    im = PILImage.new("P", (3, 2))
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 128, 255] + [0] * 759)
    im.putdata([0, 1, 2, 2, 1, 0])
    im.save(tmp_path / "pal.png")
    image = read_image(tmp_path / "pal.png")
    assert image.pixels.shape == (3, 2, 3) and image.bit_depth == 8
    assert image.pixels[:, 0, 1].tolist() == [1.0, 0.0, 0.0]
    assert torch.allclose(image.pixels[:, 0, 2], torch.tensor([0.0, 128 / 255, 1.0]))


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    PILImage.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    image = read_image(tmp_path / "c.jpg")
    assert image.pixels.shape == (3, 4, 4)
    assert image.pixels[0].min() > 0.9 and image.pixels[1:].max() < 0.1  # pure red


@pytest.mark.parametrize(("w", "h"), [(1, 1), (1, 5), (5, 1)])
def test_images_under_2x2_are_too_small(tmp_path: Path, w: int, h: int) -> None:
    path = _save(tmp_path / "tiny.png", np.zeros((h, w), np.uint8))
    with pytest.raises(ImageError, match=rf"tiny\.png: {w}x{h} is too small to fuse \(min 2x2\)"):
        read_image(path)


def test_2x2_is_accepted(tmp_path: Path) -> None:
    path = _save(tmp_path / "small.png", np.array([[0, 51], [102, 255]], np.uint8))
    assert read_image(path).pixels.flatten().tolist() == pytest.approx([0.0, 0.2, 0.4, 1.0])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6: the stored pixels turned 90 degrees clockwise for display. A textured image, so the
    direction counts: counter-clockwise (8) or a transpose (5) gives the same shape but other pixels."""
    stored = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    im = PILImage.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    with PILImage.open(tmp_path / "rot.jpg") as raw:  # the decoded stored pixels, orientation not applied
        decoded = np.asarray(raw.convert("RGB"))
    expected = torch.from_numpy(np.rot90(decoded, k=-1).copy()).permute(2, 0, 1)  # k=-1: clockwise
    image = read_image(tmp_path / "rot.jpg")
    assert image.pixels.shape == (3, 32, 16)
    assert torch.equal((image.pixels * 255).round().to(torch.uint8), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_jpegs_header_gives_the_size_its_pixels_are_read_at(tmp_path: Path, orientation: int) -> None:
    """The header (read without decoding, to plan a folder) and the decoded image agree on H x W under
    every EXIF orientation: 5-8 turn a 16 x 24 photo a quarter, 1-4 leave it as stored."""
    im = PILImage.fromarray(np.random.default_rng(orientation).integers(0, 256, (16, 24, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "photo.jpg", exif=exif)
    header, image = read_header(tmp_path / "photo.jpg"), read_image(tmp_path / "photo.jpg")
    assert (header.height, header.width) == tuple(image.pixels.shape[-2:]) == ((24, 16) if orientation >= 5 else (16, 24))


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg", "photo.tif", "photo.heic", "gray.png"])
def test_the_colour_profile_a_source_embeds_is_read_with_its_pixels_and_its_header(tmp_path: Path, name: str) -> None:
    """A phone's HEIC carries Display P3, a camera's JPEG or TIFF Adobe RGB: the profile goes with the
    pixels (to the fused file, :func:`gipc.fuse.write_outputs`); a file without one reads None."""
    icc, _ = icc_profiles()
    pixels = np.random.default_rng(3).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    PILImage.fromarray(pixels[..., 0] if name.startswith("gray") else pixels).save(tmp_path / name, icc_profile=icc)
    assert read_image(tmp_path / name).icc == read_header(tmp_path / name).icc == icc
    PILImage.fromarray(pixels).save(tmp_path / f"plain{Path(name).suffix}")
    assert read_image(tmp_path / f"plain{Path(name).suffix}").icc is read_header(tmp_path / f"plain{Path(name).suffix}").icc is None


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "photo.webp", "photo.heic", "photo.tif"])
def test_the_exif_block_a_source_holds_is_read_with_its_pixels(tmp_path: Path, name: str) -> None:
    """Each decoder hands EXIF over in its own way (JPEG's, PNG's and HEIC's after an ``Exif`` prefix,
    WebP's without, a TIFF's among its image's tags): every one reads as the same camera's block; a file
    without one reads None."""
    pixels = np.random.default_rng(4).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    exif = PILImage.Exif()
    exif[0x010F] = "Camera"
    PILImage.fromarray(pixels).save(tmp_path / name, exif=exif.tobytes())
    block = read_image(tmp_path / name).exif
    loaded = PILImage.Exif()
    loaded.load(block)
    assert block[:4] in (b"II*\x00", b"MM\x00*") and loaded[0x010F] == "Camera"
    PILImage.fromarray(pixels).save(tmp_path / f"plain{Path(name).suffix}")
    assert read_image(tmp_path / f"plain{Path(name).suffix}").exif is None


def test_an_exif_block_a_jpeg_cannot_hold_goes_only_to_a_png(tmp_path: Path) -> None:
    """A JPEG's APP1 segment holds 64 KiB; a PNG's (or HEIC's) block may be longer. Such a block is
    left out of a JPEG, whose pixels are written all the same, and kept whole in a PNG."""
    exif = PILImage.Exif()
    exif[0x010F] = "Camera"
    exif[0x9286] = "x" * 70_000  # a user comment longer than a JPEG segment
    block = exif.tobytes()[6:]
    pixels = torch.rand(3, 4, 5)
    write_image(tmp_path / "out.jpg", pixels, exif=block)
    write_image(tmp_path / "out.png", pixels, exif=block)
    assert read_image(tmp_path / "out.jpg").exif is None and read_image(tmp_path / "out.jpg").pixels.shape == (3, 4, 5)
    assert read_image(tmp_path / "out.png").exif == block


def test_heic_photos_are_read_upright(tmp_path: Path) -> None:
    """Phones save HEIC: gray and RGB ones decode to the pixels stored (lossless HEVC, 4:4:4 chroma: RGB
    within one step of the YCbCr round trip), and one whose EXIF says turn 90 degrees clockwise comes
    out turned, as a JPEG does; its header gives the same kind and size."""
    stored = np.random.default_rng(5).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    PILImage.fromarray(stored).save(tmp_path / "rgb.heic", quality=-1, chroma=444)
    PILImage.fromarray(stored[..., 0]).save(tmp_path / "gray.heif", quality=-1)
    turned = PILImage.fromarray(stored)
    exif = turned.getexif()
    exif[0x0112] = 6
    turned.save(tmp_path / "turned.heic", quality=-1, chroma=444, exif=exif.tobytes())
    upright = np.rot90(stored, k=-1)  # clockwise
    for name, kind, expected in (("rgb.heic", "RGB", stored), ("gray.heif", "grayscale", stored[..., :1]), ("turned.heic", "RGB", upright)):
        image = read_image(tmp_path / name)
        got = (image.pixels * 255).round().permute(1, 2, 0).numpy().astype(int)
        assert image.bit_depth == 8 and image.kind == kind and got.shape == expected.shape, name
        assert np.abs(got - expected).max() <= (0 if kind == "grayscale" else 1), name
        header = read_header(tmp_path / name)
        assert (header.kind, header.height, header.width) == (kind, *expected.shape[:2]), name


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("kind", ["gray8", "gray16", "rgb16"])
def test_tiff_orientation_is_applied_at_every_depth(tmp_path: Path, kind: str, orientation: int) -> None:
    """A TIFF's orientation tag turns it upright like a JPEG's EXIF: 16-bit RGB (decoded by tifffile) and
    gray ones (Pillow memory-maps those and garbled their quarter turn) as 8-bit RGB ones always were.
    Stored as EXIF defines each tag: 2 mirrored left-right, 4 top-bottom, 5 transposed (mirrored about the
    main diagonal), 7 transversed (about the other diagonal), 3, 6 and 8 turned."""
    upright = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    upright = upright[..., 0] if kind.startswith("gray") else upright
    upright = upright.astype(np.uint16) * 257 + 1 if kind.endswith("16") else upright
    stored = {
        2: upright[:, ::-1], 3: np.rot90(upright, 2), 4: upright[::-1], 5: upright.swapaxes(0, 1),
        6: np.rot90(upright, 1), 7: upright[::-1, ::-1].swapaxes(0, 1), 8: np.rot90(upright, -1),
    }[orientation]
    path = tmp_path / "turned.tif"
    photometric = "rgb" if stored.ndim == 3 else "minisblack"
    tifffile.imwrite(path, np.ascontiguousarray(stored), photometric=photometric, extratags=[(274, "H", 1, orientation, True)])
    image = read_image(path)
    scale = (1 << image.bit_depth) - 1
    decoded = (image.pixels * scale).round().permute(1, 2, 0).numpy().astype(upright.dtype)
    assert image.bit_depth == (16 if kind.endswith("16") else 8)
    assert np.array_equal(decoded[..., 0] if upright.ndim == 2 else decoded, upright)
    header = read_header(path)
    assert (header.height, header.width) == upright.shape[:2]


def test_lytro_jpeg_reads_as_8bit_rgb(lytro_pairs: Path) -> None:
    image = read_image(lytro_pairs / "lytro-01-A.jpg")
    assert image.pixels.shape == (3, 520, 520) and image.pixels.dtype == torch.float32
    assert image.bit_depth == 8 and image.path == lytro_pairs / "lytro-01-A.jpg"
    assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
    raw = np.array(PILImage.open(lytro_pairs / "lytro-01-A.jpg"))
    assert torch.equal((image.pixels * 255).round().to(torch.uint8), torch.from_numpy(raw).permute(2, 0, 1))


GRAY16 = np.array([[0, 1, 257], [40000, 65534, 65535]], np.uint16)
RGB16 = np.array([[[1, 257, 65535], [2, 40000, 0]], [[3, 4, 5], [6, 7, 8]]], np.uint16)


def _tiff(path: Path, array: np.ndarray) -> Path:
    tifffile.imwrite(path, array, photometric="rgb")
    return path


def _frames(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """A file of one random RGB image per (width, height), the first first, as Pillow saves several."""
    rng = np.random.default_rng(0)
    frames = [PILImage.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)) for w, h in sizes]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize("name", ["stack.tif", "stack.gif", "stack.png"], ids=["multi-page-tiff", "animated-gif", "animated-png"])
def test_a_file_of_several_images_of_one_size_is_refused(tmp_path: Path, name: str) -> None:
    """A focus stack saved as one file would otherwise be read as its first image alone, without a word."""
    path = _frames(tmp_path / name, [(8, 6)] * 3)
    message = rf"^{re.escape(str(path))}: holds 3 images of one size \(pages or frames\); gipc fuses one image per file: save each as its own file$"
    for read in (read_image, read_header):
        with pytest.raises(ImageError, match=message):
            read(path)


def test_a_tiffs_smaller_pages_are_previews_of_its_first(tmp_path: Path) -> None:
    path = _frames(tmp_path / "preview.tif", [(8, 6), (4, 3)])
    first = torch.from_numpy(np.array(PILImage.open(path))).permute(2, 0, 1).float() / 255
    assert torch.equal(read_image(path).pixels, first) and read_header(path).width == 8


def test_a_16bit_tiff_with_a_plane_per_channel_reads_as_rgb(tmp_path: Path) -> None:
    """Planar configuration 2 stores R, G and B as planes one after another; the pixels are those of RGB16."""
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(RGB16, -1, 0), photometric="rgb", planarconfig="separate")
    image = read_image(path)
    assert image.bit_depth == 16
    assert np.array_equal((image.pixels.permute(1, 2, 0).numpy() * 65535).round().astype(np.uint16), RGB16)


@pytest.mark.parametrize("name, write, values", [
    ("g16.png", _save, GRAY16),
    ("rgb16.png", _rgb16_png, RGB16),  # Pillow alone would cut these to 8 bits (1 and 257 would merge)
    ("rgb16.tif", _tiff, RGB16),
], ids=["gray-png", "rgb-png", "rgb-tiff"])
def test_16bit_files_keep_every_level(tmp_path: Path, name: str, write, values: np.ndarray) -> None:
    """Files written by Pillow, pypng and tifffile, read back level for level; their headers say 16
    bits already (a 16-bit stack meant for a JPEG is refused before any work)."""
    image = read_image(write(tmp_path / name, values))
    gray = values.ndim == 2
    assert image.bit_depth == read_header(tmp_path / name).bit_depth == 16 and image.pixels.shape == (1 if gray else 3, *values.shape[:2])
    levels = (image.pixels * 65535).round().numpy().astype(np.uint16)
    assert (levels[0] if gray else levels.transpose(1, 2, 0)).tolist() == values.tolist()
    assert image.stored.dtype == torch.uint16 and image.stored.numpy().tolist() == levels.tolist()  # held as stored, 2 bytes a value


@pytest.mark.parametrize(("channels", "suffix"), [(1, ".png"), (3, ".png"), (1, ".tif"), (3, ".tif")])
def test_16bit_round_trip_is_exact(tmp_path: Path, channels: int, suffix: str) -> None:
    levels = torch.randint(0, 65536, (channels, 5, 7), generator=torch.Generator().manual_seed(1))
    path = tmp_path / f"out{suffix}"
    write_image(path, levels.float() / 65535, bit_depth=16)
    back = read_image(path)
    assert back.bit_depth == 16 and back.pixels.shape == levels.shape
    assert torch.equal((back.pixels.double() * 65535).round().long(), levels)


@pytest.mark.parametrize("channels", [1, 3])
def test_8bit_png_round_trip_is_exact(tmp_path: Path, channels: int) -> None:
    levels = torch.randint(0, 256, (channels, 6, 5), generator=torch.Generator().manual_seed(2))
    write_image(tmp_path / "o.png", levels.float() / 255)
    back = read_image(tmp_path / "o.png")
    assert back.bit_depth == 8 and torch.equal((back.pixels * 255).round().long(), levels)
    assert back.stored.dtype == torch.uint8 and torch.equal(back.stored.long(), levels)  # held as stored, 1 byte a value
    assert torch.equal(back.pixels, torch.from_numpy(back.stored.numpy().astype(np.float32) / np.float32(255)))  # the decoder's floats, made when read


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_pixels_between_levels_are_written_as_the_nearest_level(tmp_path: Path, bit_depth: int) -> None:
    top = (1 << bit_depth) - 1
    levels = torch.tensor([[[0.4, 0.6, 99.4], [99.6, top - 0.6, top - 0.4]]])
    write_image(tmp_path / "o.png", levels / top, bit_depth=bit_depth)
    assert (read_image(tmp_path / "o.png").pixels * top).round().flatten().tolist() == [0, 1, 99, 100, top - 1, top]


def test_jpeg_output_is_high_quality(tmp_path: Path) -> None:
    """Quality 95 without chroma subsampling. On a photo that was never a JPEG (Pillow, measured): mean
    error 1.25 levels, largest 13; quality 95 with 4:2:0 chroma 1.54 / 20, quality 90 1.76 / 19,
    Pillow's default (75, 4:2:0) 2.85 / 50."""
    source = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float() / 255
    write_image(tmp_path / "o.jpg", source)
    error = (read_image(tmp_path / "o.jpg").pixels - source).abs() * 255
    assert float(error.mean()) < 1.4 and float(error.max()) < 16


def test_out_of_range_pixels_are_clamped(tmp_path: Path) -> None:
    write_image(tmp_path / "o.png", torch.tensor([[[-0.5, 1.5]], [[0.0, 1.0]], [[0.5, 0.5]]]).expand(3, 2, 2))
    assert read_image(tmp_path / "o.png").pixels[0, 0].tolist() == [0.0, 1.0]


def test_a_16bit_image_into_a_jpeg_is_rounded_to_8_bits(tmp_path: Path) -> None:
    """JPEG holds 8 bits: a 16-bit image's levels are rounded to the nearest of 256 (flat patches, which
    JPEG keeps exactly at quality 95)."""
    levels = torch.tensor([0.1, 0.3, 0.5, 0.9]).repeat_interleave(8).view(1, 1, 32).expand(3, 16, 32)  # four flat patches
    write_image(tmp_path / "o.jpg", levels, bit_depth=16)
    image = read_image(tmp_path / "o.jpg")
    assert image.bit_depth == 8 and image.stored.dtype == torch.uint8
    assert image.stored[:, :, ::8].unique().tolist() == [26, 76, 128, 230]  # round(255 x 0.1, 0.3, 0.5, 0.9)


@pytest.mark.parametrize("shape, bit_depth, message", [
    ((3, 2, 2), 12, r"o\.png: bit depth must be 8 or 16, got 12"),
    ((4, 2, 2), 8, r"o\.png: expected \(C, H, W\) pixels with C = 1 or 3, got \(4, 2, 2\)"),
    ((2, 2, 2), 16, r"o\.png: expected \(C, H, W\) pixels with C = 1 or 3, got \(2, 2, 2\)"),
    ((2, 2), 8, r"o\.png: expected \(C, H, W\) pixels with C = 1 or 3, got \(2, 2\)"),
], ids=["12-bit", "4-channels", "2-channels", "no-channel-axis"])
def test_pixels_no_format_holds_are_refused_and_nothing_is_written(tmp_path: Path, shape: tuple[int, ...], bit_depth: int, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        write_image(tmp_path / "o.png", torch.zeros(shape), bit_depth=bit_depth)
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"cannot write '\.gif' files; use \.png, \.jpg or \.tif"):
        write_image(tmp_path / "o.gif", torch.zeros(1, 2, 2))


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    write_image(tmp_path / "o.png", torch.zeros(1, 2, 2))
    with pytest.raises(OutputExistsError, match="already exists"):
        write_image(tmp_path / "o.png", torch.ones(1, 2, 2))
    write_image(tmp_path / "o.png", torch.ones(1, 2, 2), overwrite=True)
    assert read_image(tmp_path / "o.png").pixels.min() == 1.0


def test_an_input_is_never_overwritten(tmp_path: Path) -> None:
    source = _save(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(OutputExistsError, match="it is one of the inputs"):
        write_image(source, torch.ones(1, 2, 2), overwrite=True, protected=(source,))
    assert read_image(source).pixels.max() == 0.0


def test_disk_full_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(self: PILImage.Image, fp: os.PathLike, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(PILImage.Image, "save", full_disk)
    with pytest.raises(ImageError, match=r"cannot write .*o\.png: No space left on device"):
        write_image(tmp_path / "o.png", torch.zeros(3, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_matching_sources_read_together(grayscale_pairs: Path) -> None:
    """Each source read whole, in the order given: its levels are the file's as Pillow decodes it."""
    paths = [grayscale_pairs / "g01-A.png", grayscale_pairs / "g01-B.png"]
    images = read_matching(paths)
    assert [image.path for image in images] == paths
    for image, path in zip(images, paths, strict=True):
        raw = torch.from_numpy(np.array(PILImage.open(path).convert("L")))  # a writable copy: torch warns on a read-only array
        assert image.pixels.shape == (1, *raw.shape) and image.bit_depth == 8
        assert torch.equal((image.pixels[0] * 255).round().to(torch.uint8), raw)
    assert not torch.equal(images[0].pixels, images[1].pixels)


@pytest.mark.parametrize("b_shape, b_size", [((4, 5), "5x4"), ((3, 6), "6x3")], ids=["width", "height"])
def test_size_mismatch_names_both_files(tmp_path: Path, b_shape: tuple[int, int], b_size: str) -> None:
    a = _save(tmp_path / "a.png", np.zeros((4, 6), np.uint8))
    b = _save(tmp_path / "b.png", np.zeros(b_shape, np.uint8))
    message = rf"b\.png is {b_size} but .*a\.png is 6x4; the sources must be registered"
    with pytest.raises(ImageError, match=message):
        read_matching([a, b])
    with pytest.raises(ImageError, match=message):
        check_sources([a, b])  # from the headers alone


def test_gray_rgb_mix_names_both_files(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    b = _save(tmp_path / "b.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match=r"b\.png is RGB but .*a\.png is grayscale; convert them to one kind"):
        read_matching([a, b])


def test_no_sources_is_an_error() -> None:
    with pytest.raises(ImageError, match="no images given"):
        read_matching([])


def test_16bit_rgb_ppm_is_refused_rather_than_cut_to_8_bits(tmp_path: Path) -> None:
    path = tmp_path / "deep.ppm"
    path.write_bytes(b"P6 3 2 65535\n" + np.arange(18, dtype=">u2").tobytes())
    for read in (read_image, read_header):  # the header refuses it too, before any work on other sources
        with pytest.raises(ImageError, match=r"deep\.ppm: 16-bit RGB PPM is not supported; convert it to a 16-bit PNG or TIFF"):
            read(path)


def test_8bit_ppm_reads(tmp_path: Path) -> None:
    path = tmp_path / "plain.ppm"
    path.write_bytes(b"P6 2 2 255\n" + bytes([0, 51, 255] * 4))
    assert read_image(path).pixels[:, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


@pytest.mark.parametrize(
    "mode, values, message",
    [
        ("F", np.linspace(0, 1, 64, dtype=np.float32), "unsupported pixel mode 'F'; save it as 8- or 16-bit gray or RGB"),
        ("I", np.arange(64, dtype=np.int32) * 100_000, "32-bit integer pixels are not supported; save it as 8- or 16-bit"),
    ],
)
def test_32bit_pixels_are_refused(tmp_path, mode, values, message):
    path = tmp_path / f"x-{mode}.tif"
    PILImage.fromarray(values.reshape(8, 8), mode=mode).save(path)
    with pytest.raises(ImageError, match=re.escape(message)):
        read_image(path)


def test_the_header_gives_the_kind_and_size_decoding_gives(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    PILImage.fromarray(rng.integers(0, 256, (6, 9), dtype=np.uint8)).save(tmp_path / "gray.png")
    PILImage.fromarray(rng.integers(0, 256, (6, 9), dtype=np.uint8)).convert("P").save(tmp_path / "palette.png")
    png.from_array(rng.integers(0, 65536, (6, 27), dtype=np.uint16), "RGB;16").save(str(tmp_path / "rgb16.png"))
    turned = PILImage.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8))
    exif = turned.getexif()
    exif[0x0112] = 6  # displayed a quarter turn from how it is stored: 6 x 9 stored, 9 x 6 shown
    turned.save(tmp_path / "turned.jpg", exif=exif)
    expected = {"gray.png": ("grayscale", 6, 9), "palette.png": ("RGB", 6, 9), "rgb16.png": ("RGB", 6, 9), "turned.jpg": ("RGB", 9, 6)}
    for name, (kind, height, width) in expected.items():
        header, image = read_header(tmp_path / name), read_image(tmp_path / name)
        assert (header.kind, header.height, header.width) == (image.kind, image.height, image.width) == (kind, height, width), name
        assert header.bit_depth == image.bit_depth == (16 if name == "rgb16.png" else 8), name
    PILImage.fromarray(rng.integers(0, 256, (6, 9, 4), dtype=np.uint8)).save(tmp_path / "alpha.png")
    with pytest.raises(ImageError, match="alpha.png: has transparent pixels"):
        read_header(tmp_path / "alpha.png")
    with pytest.raises(ImageError, match="gray.png is grayscale but .*palette.png is RGB"):
        check_matching([read_header(tmp_path / "palette.png"), read_header(tmp_path / "gray.png")])
    with pytest.raises(ImageError, match="turned.jpg is 6x9 but .*rgb16.png is 9x6"):
        check_matching([read_header(tmp_path / "rgb16.png"), read_header(tmp_path / "turned.jpg")])


def test_sources_whose_headers_do_not_tell_their_orientation_are_checked_as_decoded(tmp_path: Path) -> None:
    # A 16-bit gray TIFF with Orientation 6, stored 48 wide and 64 high: upright 64 x 48, header and decode alike.
    rng = np.random.default_rng(0)
    for side in "AB":
        tifffile.imwrite(tmp_path / f"s-{side}.tif", (rng.random((64, 48)) * 65535).astype(np.uint16),
                         photometric="minisblack", extratags=[(274, "H", 1, 6, True)])
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, (rng.random((48, 64)) * 65535).astype(np.uint16), photometric="minisblack")
    check_sources([tmp_path / "s-A.tif", plain])  # both decode to 48 x 64: accepted
    tifffile.imwrite(tmp_path / "other.tif", (rng.random((48, 60)) * 65535).astype(np.uint16), photometric="minisblack")
    with pytest.raises(ImageError, match="other.tif is 60x48 but"):
        check_sources([tmp_path / "s-A.tif", tmp_path / "other.tif"])
    tifffile.imwrite(tmp_path / "float.tif", rng.random((8, 8)).astype(np.float32))
    with pytest.raises(ImageError, match="float.tif: unsupported pixel mode 'F'"):
        read_header(tmp_path / "float.tif")  # refused before any work, as decoding would refuse it
