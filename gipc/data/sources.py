"""Which files of a folder are source images, and how they group into pairs and focus sequences.

Every command that reads images from a folder (``gipc-fuse --pairs``, ``gipc-eval``,
``gipc-build-data``, the training data loaders) goes through here, so they all accept the same
files and the same two layouts:

* subfolders ``A/``, ``B/`` [, ``C/`` ...] holding one file per scene with the same stem
  (what ``gipc-build-data`` writes; a ``GT/`` beside them is not a source);
* Lytro-style names in one folder: ``<name>-A.<ext>``, ``<name>-B.<ext>`` [, ``<name>-C.<ext>`` ...].
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from gipc.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm")
"""Everything :func:`gipc.imaging.read_image` decodes; other files in a folder are ignored."""
SOURCE_NAME = re.compile(r"^(?P<name>.+)-(?P<letter>[A-Z])$")
"""A source's stem in one folder: group name and focus letter."""
_LETTER = re.compile(r"[A-Z]")


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def files_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two files of one stem (x.png, x.jpg) are an error."""
    files: dict[str, Path] = {}
    for path in image_files(folder):
        _add(files, path.stem, path)
    return files


def group_sources(folder: Path) -> list[tuple[str, tuple[Path, ...]]]:
    """Source groups of ``folder`` as (name, sources in focus order A, B, C, ...), sorted by name.

    Every group needs two or more sources with letters running from A without a gap; a file that
    cannot be grouped is an error rather than skipped, so nothing is silently left out.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist or is not a folder")
    by_name: dict[str, dict[str, Path]] = defaultdict(dict)
    subfolders = (folder / "A").is_dir() or (folder / "B").is_dir()
    if subfolders:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _LETTER.fullmatch(p.name)):
            for stem, image in files_by_stem(sub).items():
                by_name[stem][sub.name] = image
    else:
        for image in image_files(folder):
            match = SOURCE_NAME.match(image.stem)
            if match is None:
                raise DataError(
                    f"{image}: cannot tell its partner; name sources <name>-A.<ext>, <name>-B.<ext> or use A/ and B/ subfolders"
                )
            _add(by_name[match["name"]], match["letter"], image)
    if not by_name:
        raise DataError(
            f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES)}); expected <name>-A/<name>-B files or A/ and B/ subfolders"
        )
    groups = []
    for name, letters in sorted(by_name.items()):
        order = [chr(ord("A") + i) for i in range(max(len(letters), 2))]
        missing = [letter for letter in order if letter not in letters]
        if missing:
            found = ", ".join(str(p) for _, p in sorted(letters.items()))
            partner = folder / missing[0] / f"{name}.*" if subfolders else folder / f"{name}-{missing[0]}.*"
            raise DataError(f"{found}: unpaired, {partner} is missing")
        groups.append((name, tuple(letters[letter] for letter in order)))
    return groups


def _add(files: dict[str, Path], key: str, path: Path) -> None:
    if key in files:
        raise DataError(f"{files[key]} and {path}: two files for one image; keep one")
    files[key] = path
