"""Build an MFI-DRC-style data set on disk (docs/paper.md section 6; the ``gipc-build-data``
command is :mod:`gipc.cli.build_data`).

Every all-in-focus photo gets a decision map, equations 18-19 make its (A, B) pair, and a seeded
split sends it to ``train/`` or ``test/``, each holding ``A/ B/ GT/ maps/`` PNGs. ``manifest.json``
records every setting, each image's map source and split, and a sha256 per file: the same command
rebuilds the same bytes. The set is built in a hidden folder beside ``--out`` and renamed into
place at the end, so a failure or Ctrl-C leaves nothing half-written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from gipc.data.decision_maps import SOURCES
from gipc.data.embedded import CATALOGUE, Photo, load_photo
from gipc.data.scene import split_names, synthesize_scene
from gipc.configs import conf_group
from gipc.data.sources import SUFFIXES_IN_WORDS, files_by_stem, refuse_pair_set
from gipc.data.synthesis import SMALLEST_SIDE, blur_kernel_size, fit_longest_side, fits, fitted_size
from gipc.errors import DataError, OutputExistsError
from gipc.files import check_output_folder, replace_dir, sha256_file, staging_dir, write_text
from gipc.imaging import Header, read_header, read_image, write_image

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
EMBEDDED = conf_group("data/source", "embedded")
"""``conf/data/source/embedded.yaml``: its blur sigma (eq. 18-19), held-out share (section 4.1) and photo
size are also gipc-build-data's defaults, so a built set and the embedded one match."""


@dataclass(frozen=True)
class Source:
    """One all-in-focus photo to synthesize from, loaded on demand so a build holds one at a time."""

    name: str
    load: Callable[[], tuple[Photo, int]]  # the photo and its bit depth
    map_file: str | None  # the mask / depth file the map comes from, for the manifest


def _embedded_sources(maps: str | None, mask_dir: Path | None, max_side: int | None) -> list[Source]:
    masks = files_by_stem(mask_dir) if mask_dir else {}
    if mask_dir and not set(masks) & set(CATALOGUE):
        raise DataError(f"--mask-dir {mask_dir} has no file named after an embedded photo ({', '.join(CATALOGUE)}), so none would be used")

    def loader(name: str) -> Callable[[], tuple[Photo, int]]:
        def load() -> tuple[Photo, int]:
            if name in masks:  # a user mask or depth image replaces the photo's own map
                return _with_map_file(load_photo(name, max_side), maps or "file", masks[name], max_side), 8
            return load_photo(name, max_side, maps), 8

        return load

    return [Source(name, loader(name), masks[name].name if name in masks else None) for name in CATALOGUE]


def _folder_sources(folder: Path, maps: str, mask_dir: Path | None, max_side: int | None, sigma: float) -> list[Source]:
    if not folder.is_dir():
        raise DataError(f"--source {folder} does not exist or is not a folder")
    photos = files_by_stem(folder)
    if not photos:
        raise DataError(f"--source {folder} holds no images ({SUFFIXES_IN_WORDS})")
    refuse_pair_set(folder, list(photos.values()), "--source")
    masks = files_by_stem(mask_dir) if mask_dir else {}
    if maps in ("file", "disparity"):
        missing = sorted(set(photos) - set(masks))
        if missing:
            raise DataError(f"--maps {maps} needs a file per photo in --mask-dir {mask_dir}; none for {', '.join(missing[:5])}")
    # a file that is no image, or a photo too small to blur, fails here, before the build starts
    for name, path in photos.items():
        _check_blur_fits(read_header(path), max_side, sigma)
        if name in masks:
            read_header(masks[name])

    def loader(name: str) -> Callable[[], tuple[Photo, int]]:
        def load() -> tuple[Photo, int]:
            image = read_image(photos[name])
            photo = Photo(name, fit_longest_side(image.pixels, max_side), maps)
            return (_with_map_file(photo, maps, masks[name], max_side) if name in masks else photo), image.bit_depth

        return load

    return [Source(name, loader(name), masks[name].name if name in masks else None) for name in photos]


def _check_blur_fits(header: Header, max_side: int | None, sigma: float) -> None:
    """Refuse a photo, by name, that the blur of eq. 18-19 cannot cover: its shorter side, after
    ``max_side``, within the kernel's half width."""
    height, width = fitted_size(header.height, header.width, max_side)
    size = blur_kernel_size(sigma)
    if not fits(height, width, size):
        scaled = f" (after --max-side {max_side})" if (height, width) != (header.height, header.width) else ""
        raise DataError(f"{header.path}: {width}x{height}{scaled} is too small for --sigma {sigma:g}, whose {size} px blur needs "
                        f"a shorter side over {size // 2} px; use a smaller --sigma or a larger photo")


def _with_map_file(photo: Photo, maps: str, path: Path, max_side: int | None) -> Photo:
    """Attach a mask file (``file``) or a depth/disparity image (``disparity``) to a photo."""
    if maps == "file":
        return Photo(photo.name, photo.image, "file", {"path": path, "max_side": max_side})
    if maps == "disparity":
        depth = fit_longest_side(read_image(path).pixels[:1], max_side, nearest=True)[0]
        return Photo(photo.name, photo.image, "disparity", {"depth": depth})
    raise DataError(f"--mask-dir is only used by --maps file or --maps disparity, not {maps}")


def _check_out(out: Path, overwrite: bool, inputs: Sequence[Path]) -> None:
    """Build only into nothing, an empty folder, or (with overwrite) an earlier build: it is replaced whole."""
    check_output_folder(out, overwrite, inputs)
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise OutputExistsError(f"refusing to replace {out}: it holds no {MANIFEST}, so it is not a gipc-build-data output")


def _check_settings(
    maps: str | None, mask_path: Path | None, sigma: float, soft: float, max_side: int | None, embedded: bool
) -> None:
    """One line for each setting gipc-build-data cannot use, before anything is read or written."""
    if maps is not None and maps not in SOURCES:
        raise DataError(f"unknown --maps {maps!r}; choose one of {', '.join(SOURCES)}")
    if mask_path is not None and not mask_path.is_dir():
        raise DataError(f"--mask-dir {mask_path} does not exist or is not a folder")
    if mask_path is None and (maps == "file" or (maps == "disparity" and not embedded)):
        raise DataError(f"--maps {maps} needs --mask-dir with one {'mask' if maps == 'file' else 'depth image'} per photo")
    used = maps or (None if embedded else "region_competition")  # the embedded set's default takes masks as file maps
    if mask_path is not None and used not in (None, "file", "disparity"):
        raise DataError(f"--mask-dir is only used by --maps file or --maps disparity, not {used}")
    if sigma <= 0 or soft < 0:
        raise DataError(f"--sigma must be > 0 and --soft >= 0 (got {sigma}, {soft})")
    if max_side is not None and max_side < SMALLEST_SIDE:
        raise DataError(f"--max-side must be >= {SMALLEST_SIDE}, got {max_side}")


def _write_scene(root: Path, item: Source, split: str, seed: int, sigma: float, soft: float) -> dict[str, Any]:
    """Synthesize one photo's pair (eq. 18-19), write its A, B, GT and map PNGs under ``root/split``,
    and return its manifest entry with a sha256 per file."""
    photo, bit_depth = item.load()
    made = synthesize_scene(item.name, photo.image, photo.map_source, seed, sigma, soft, **photo.map_options)
    files = {}
    images = {"A": (made.a, bit_depth), "B": (made.b, bit_depth), "GT": (made.gt, bit_depth), "maps": (made.focus_map, 8)}
    for sub, (pixels, depth) in images.items():
        relative = f"{split}/{sub}/{item.name}.png"
        write_image(root / relative, pixels, bit_depth=depth)
        files[relative] = sha256_file(root / relative)
    return {
        "name": item.name,
        "split": split,
        "map_source": photo.map_source,
        "map_file": item.map_file,
        "foreground_fraction": round(float(made.focus_map.mean()), 6),
        "size": list(photo.image.shape[-2:]),
        "bit_depth": bit_depth,
        "files": files,
    }


def build_dataset(
    out: str | Path,
    source: str | Path | None = None,
    maps: str | None = None,
    mask_dir: str | Path | None = None,
    sigma: float = EMBEDDED["sigma"],
    soft: float = 0.0,
    test_fraction: float = EMBEDDED["test_fraction"],
    seed: int = 0,
    max_side: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Build the set from a folder of all-in-focus photos (``source``) or the embedded photos (``None``).

    ``maps`` picks the decision-map source (default: region_competition for folders, each photo's
    own for the embedded set); ``mask_dir`` holds one mask (``file``) or depth image
    (``disparity``) per photo, same stem. ``max_side`` downscales photos (``None``: as they are).
    Returns the manifest.
    """
    out = Path(out)
    mask_path = Path(mask_dir) if mask_dir is not None else None
    _check_settings(maps, mask_path, sigma, soft, max_side, embedded=source is None)
    inputs = [Path(p) for p in (source, mask_dir) if p is not None]
    _check_out(out, overwrite, inputs)
    if source is None:
        sources = _embedded_sources(maps, mask_path, max_side)
    else:
        maps = maps or "region_competition"  # recorded as used: a manifest names its folder build's maps
        sources = _folder_sources(Path(source), maps, mask_path, max_side, sigma)
    train, test = split_names([s.name for s in sources], test_fraction, seed)
    split = {**{n: "train" for n in train}, **{n: "test" for n in test}}

    with staging_dir(out) as tmp:
        with tqdm(sources, desc=f"building {out}", unit="image", disable=not progress) as progress_bar:  # closed before an error line
            images = [_write_scene(tmp, item, split[item.name], seed, sigma, soft) for item in progress_bar]
        manifest = {
            "format": MANIFEST_FORMAT,
            "source": "embedded (scikit-image photos)" if source is None else str(source),
            "mask_dir": None if mask_path is None else str(mask_path),
            "maps": maps,
            "seed": seed,
            "sigma": sigma,
            "kernel_size": blur_kernel_size(sigma),
            "soft": soft,
            "test_fraction": test_fraction,
            "max_side": max_side,
            "counts": {"train": len(train), "test": len(test)},
            "images": images,
        }
        write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        replace_dir(tmp, out)
    return manifest
