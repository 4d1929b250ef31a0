"""Which files of a folder are source images, and how they group into pairs and focus sequences.

Every command that reads images from a folder (``gipc-fuse --pairs``, ``gipc-eval``,
``gipc-build-data``, the training data loaders) goes through here, so they all accept the same
files and the same layouts, those of gipc and of the public pair sets:

* subfolders holding one file per scene with the same stem, one subfolder per source in focus
  order: ``A/``, ``B/`` [, ``C/`` ...] (what ``gipc-build-data`` writes), ``1/``, ``2/`` ...,
  ``source_1/``, ``source_2/`` ... (MFI-WHU) or ``near/``, ``far/``; other subfolders (``GT/``,
  ``full_clear/``, ``maps/``) hold no sources;
* names in one folder: ``<name>-A.<ext>``, ``<name>-B.<ext>`` [, ``<name>-C.<ext>`` ...] (Lytro),
  with ``_`` for ``-`` (``<name>_A``, MFFW) or digits for letters (``<name>-1``, ``<name>_2``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from gipc.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".heic", ".heif")
"""Everything :func:`gipc.imaging.read_image` decodes; other files in a folder are ignored."""
SOURCE_NAME = re.compile(r"^(?P<name>.+)(?P<sep>[-_])(?P<mark>[A-Z]|[1-9])$")
"""A source's stem in one folder: group name, separator and focus mark (a capital letter, or a digit from 1)."""
SOURCE_FOLDER = re.compile(r"^(?:(?P<letter>[A-Z])|(?:(?P<prefix>source_?))?(?P<digit>[1-9])|(?P<near>near)|(?P<far>far))$", re.IGNORECASE)
"""A subfolder holding one source per scene; ``GT/`` and any other name hold none."""
LAYOUTS = (
    "<name>-A/<name>-B files (or _A/_B, -1/-2, _1/_2) or A/ and B/ subfolders (or 1/ 2/, source_1/ source_2/, near/ far/)"
)
"""The layouts :func:`group_sources` reads, for messages."""


def focus_position(mark: str) -> int:
    """0 for the first source (``A``, ``1``), 1 for the second, ...: a file's mark or a folder's letter or digit."""
    return int(mark) - 1 if mark.isdigit() else ord(mark) - ord("A")


def folder_position(name: str) -> int | None:
    """Where a subfolder's source stands in focus order (``near`` first), or None for a folder of no sources."""
    match = SOURCE_FOLDER.match(name)
    if match is None or (match["letter"] is not None and not match["letter"].isupper()):
        return None
    if match["near"] or match["far"]:
        return 0 if match["near"] else 1
    return focus_position(match["letter"] or match["digit"])


def _sibling(example: str, position: int) -> str:
    """The name the ``position``-th source folder or mark takes in the style of ``example`` (for messages)."""
    match = SOURCE_FOLDER.match(example)
    if match is not None and match["digit"]:
        return f"{match['prefix'] or ''}{position + 1}"
    if match is not None and (match["near"] or match["far"]) and position < 2:
        return ("near", "far")[position]
    return chr(ord("A") + position)


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
    """Source groups of ``folder`` as (name, sources in focus order), sorted by name (layouts: module doc).

    Every group needs two or more sources running from the first without a gap; a file that
    cannot be grouped is an error rather than skipped, so nothing is silently left out.
    """
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist or is not a folder")
    by_name: dict[str, dict[int, Path]] = defaultdict(dict)
    subfolders: dict[int, Path] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        position = folder_position(sub.name)
        if position is not None:
            if position in subfolders:
                raise DataError(f"{subfolders[position]} and {sub} both hold source {position + 1} of each scene; keep one")
            subfolders[position] = sub
    for position, sub in subfolders.items():
        for stem, image in files_by_stem(sub).items():
            by_name[stem][position] = image
    example: dict[str, str] = {}  # a group's first file name: the style its missing partner is named in
    if not subfolders:
        for image in image_files(folder):
            match = SOURCE_NAME.match(image.stem)
            if match is None:
                raise DataError(f"{image}: cannot tell its partner; expected {LAYOUTS}")
            _add(by_name[match["name"]], focus_position(match["mark"]), image)
            example.setdefault(match["name"], match["sep"] + match["mark"])
    if not by_name:
        raise DataError(f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES)}); expected {LAYOUTS}")
    groups = []
    for name, sources in sorted(by_name.items()):
        missing = [position for position in range(max(len(sources), 2)) if position not in sources]
        if missing:
            found = ", ".join(str(p) for _, p in sorted(sources.items()))
            if subfolders:
                first = next(iter(subfolders.values())).name
                partner = folder / _sibling(first, missing[0]) / f"{name}.*"
            else:
                sep, mark = example[name][0], example[name][1:]
                partner = folder / f"{name}{sep}{_sibling('1' if mark.isdigit() else 'A', missing[0])}.*"
            raise DataError(f"{found}: unpaired, {partner} is missing")
        groups.append((name, tuple(sources[position] for position in range(len(sources)))))
    return groups


def _add(files: dict, key: str | int, path: Path) -> None:
    if key in files:
        raise DataError(f"{files[key]} and {path}: two files for one image; keep one")
    files[key] = path
