"""Which files of a folder are source images, and how they group into pairs and focus sequences.

Every command that reads images from a folder (``gipc-fuse --pairs``, ``gipc-eval``,
``gipc-build-data``, the training data loaders) goes through here, so they all accept the same
files and the same layouts, those of gipc and of the public pair sets:

* one subfolder per source, in focus order: ``A/``, ``B/`` [, ``C/`` ...] (what ``gipc-build-data``
  writes), ``1/``, ``2/`` ..., the same after ``source``, ``image`` or ``img`` (``source_1/``,
  ``source_2/``: MFI-WHU; ``imageA/``, ``imageB/``: Real-MFF), or ``near/``, ``far/``; each holds
  one file per scene, named by the scene alike in every folder, or by the scene and the folder's
  own mark in every file (``imageA/709_A.png``, ``imageB/709_B.png``); other subfolders (``GT/``,
  ``full_clear/``, ``maps/``) hold no sources;
* names in one folder: ``<name>-A.<ext>``, ``<name>-B.<ext>`` [, ``<name>-C.<ext>`` ...] (Lytro),
  with ``_`` for ``-`` (``<name>_A``, MFFW), lower-case letters (``<name>-a``), digits for letters
  (``<name>-1``, ``<name>_2``), or ``near`` and ``far`` (``<name>_near``, ``<name>_far``).

A focus stack as a camera shoots it is read apart from these (:func:`stack_folders`): a folder of
frames, numbered by the camera in the order it shot them through focus, or one such subfolder per stack.

A camera's RAW file stands for its frame: a JPEG (or any image) of the same name beside it, as a
camera writes in RAW+JPEG mode, is not a source (:func:`raw_companions`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence, TypeVar

from gipc.errors import DataError
from gipc.raw import RAW_SUFFIXES, is_raw

K = TypeVar("K", str, int)

_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".heic", ".heif")
IMAGE_SUFFIXES = (*_PICTURE_SUFFIXES, *RAW_SUFFIXES)
"""Everything :func:`gipc.imaging.read_image` decodes; other files in a folder are ignored."""
SUFFIXES_IN_WORDS = f"{', '.join(_PICTURE_SUFFIXES)} or cameras' RAW files: {', '.join(RAW_SUFFIXES[:4])}, ..."
""":data:`IMAGE_SUFFIXES` for messages."""
SOURCE_NAME = re.compile(r"^(?P<name>.+)(?P<sep>[-_])(?P<mark>[A-Za-z]|[1-9]|(?i:near|far))$")
"""A source's stem in one folder: group name, separator and focus mark (a letter, a digit from 1, or near and far)."""
SOURCE_FOLDER = re.compile(r"^(?:(?P<prefix>(?:source|image|img)[-_]?)?(?P<mark>[a-z]|[1-9])|(?P<near>near)|(?P<far>far))$", re.IGNORECASE)
"""A subfolder holding one source per scene (its mark a capital letter or a digit); any other holds none."""
LAYOUTS = (
    "<name>-A/<name>-B files (or _A/_B, -a/-b, -1/-2, _1/_2, -near/-far) or A/ and B/ subfolders (or 1/ 2/, source_1/ source_2/, imageA/ imageB/, near/ far/)"
)
"""The layouts :func:`group_sources` reads, for messages."""


def focus_position(mark: str) -> int:
    """0 for the first source (``A``, ``a``, ``1``, ``near``), 1 for the second, ...: a file's or a folder's mark."""
    if mark.isdigit():
        return int(mark) - 1
    if len(mark) > 1:  # near, far
        return ("near", "far").index(mark.lower())
    return ord(mark.upper()) - ord("A")


def _mark_like(example: str, position: int) -> str:
    """The ``position``-th source's file mark in the style of the mark ``example`` (``b`` beside ``a``, ``Far`` beside ``Near``)."""
    if example.isdigit():
        return str(position + 1)
    if len(example) > 1 and position < 2:
        word = ("near", "far")[position]
        return word.upper() if example.isupper() else word.capitalize() if example[0].isupper() else word
    letter = chr(ord("A") + position)
    return letter.lower() if example.islower() else letter


def folder_position(name: str) -> int | None:
    """Where a subfolder's source stands in focus order (``near`` first), or None for a folder of no sources."""
    match = SOURCE_FOLDER.match(name)
    if match is None or (match["mark"] is not None and match["mark"].islower()):
        return None
    return focus_position(match["near"] or match["far"] or match["mark"])


def _sibling(example: str, position: int) -> str:
    """The name the ``position``-th source folder or mark takes in the style of ``example`` (for messages)."""
    match = SOURCE_FOLDER.match(example)
    if match is None or match["near"] or match["far"]:
        return ("near", "far")[position] if match is not None and position < 2 else chr(ord("A") + position)
    return f"{match['prefix'] or ''}{_mark_like(match['mark'], position)}"


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name, but for :func:`raw_companions`."""
    return _listed(folder)[0]


def raw_companions(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` that share their name with a camera RAW file beside them
    (``IMG_0001.JPG`` by ``IMG_0001.CR3``: the JPEG a camera writes with each frame in RAW+JPEG mode),
    sorted: the RAW file stands for that frame, and :func:`image_files` leaves these out."""
    return _listed(folder)[1]


def _listed(folder: Path) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    raw = {p.stem for p in files if is_raw(p)}
    companions = [p for p in files if p.stem in raw and not is_raw(p)]
    return [p for p in files if p not in companions], companions


def set_aside(folder: Path) -> list[Path]:
    """:func:`raw_companions` of a folder of source groups and of its source subfolders (``A/``, ``B/``, ...)."""
    subfolders = [sub for sub in sorted(folder.iterdir()) if sub.is_dir() and folder_position(sub.name) is not None]
    return [path for place in (folder, *subfolders) for path in raw_companions(place)]


def set_aside_note(companions: Sequence[Path]) -> str | None:
    """The line a command that reads folders of sources says of the ``companions`` it set aside
    (:func:`set_aside`, :func:`raw_companions`); None where there are none."""
    if not companions:
        return None
    one = len(companions) == 1
    return f"{len(companions)} file{'' if one else 's'} beside RAW files of the same name set aside ({companions[0].name}{'' if one else ', ...'}): the RAW files are read"


def _check_folder(folder: Path) -> None:
    """Refuse a ``folder`` to read sources from that is none."""
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist or is not a folder")


def frame_order(path: Path) -> list[int | str]:
    """Sort key of a stack's frames: names in natural order (``frame2`` before ``frame10``), the order
    a camera numbers the frames of a bracket as it shoots them through focus."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", path.name)]


def stack_frames(folder: Path) -> tuple[Path, ...]:
    """The frames of one focus stack: ``folder``'s image files in :func:`frame_order`. A folder whose
    files are several marked groups (``x-A``, ``x-B``, ``y-A``, ``y-B``) is a pair set, not a stack."""
    _check_folder(folder)
    frames = sorted(image_files(folder), key=frame_order)
    if len(frames) < 2:
        found = f"only {frames[0].name}" if frames else f"no images ({SUFFIXES_IN_WORDS})"
        raise DataError(f"{folder}: {found}; a focus stack needs two or more frames")
    if is_pair_set(frames) and len({match["name"] for path in frames if (match := SOURCE_NAME.match(path.stem))}) > 1:
        raise DataError(f"{folder} holds groups of sources ({frames[0].name}, {frames[1].name}, ...), not one focus stack: give it as --pairs {folder}")
    return tuple(frames)


def stack_folders(folder: Path) -> list[tuple[str, tuple[Path, ...]]]:
    """The focus stacks of ``folder``, one per subfolder that holds images (:func:`stack_frames`), as
    (the subfolder's name, its frames), in :func:`frame_order`. Images beside the subfolders are refused
    rather than left out, as :func:`group_sources` refuses what it cannot group."""
    _check_folder(folder)
    subfolders = sorted((sub for sub in folder.iterdir() if sub.is_dir() and not sub.name.startswith(".") and image_files(sub)), key=frame_order)
    loose = image_files(folder)
    if not subfolders:
        what = f"holds images ({loose[0].name}, ...) but no subfolders of them" if loose else "has no subfolders with images"
        raise DataError(f"{folder} {what}: each focus stack is a subfolder of frames (a folder of frames alone is one stack: give it as the source)")
    if loose:
        raise DataError(f"{folder} holds images ({loose[0].name}, ...) beside its stacks' subfolders; move them into a subfolder of their own, or out")
    return [(sub.name, stack_frames(sub)) for sub in subfolders]


def files_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two files of one stem (x.png, x.jpg) are an error."""
    files: dict[str, Path] = {}
    for path in image_files(folder):
        _add(files, path.stem, path)
    return files


def is_pair_set(files: Sequence[Path]) -> bool:
    """Whether every one of a folder's image ``files`` is a source of a complete group marked by letters
    (``g01-A.png``, ``g01-B.png``: a pair set, not photos). A folder of photos named so is unlikely;
    digit marks (``IMG_1``, ``IMG_2``) are left alone, as a camera's numbering may read so."""
    groups: dict[tuple[str, str], set[int]] = defaultdict(set)
    for path in files:
        match = SOURCE_NAME.match(path.stem)
        if match is None or match["mark"].isdigit():
            return False
        groups[match["name"], match["sep"]].add(focus_position(match["mark"]))
    return bool(groups) and all(len(marks) >= 2 and marks == set(range(len(marks))) for marks in groups.values())


def refuse_pair_set(folder: Path, files: Sequence[Path], what: str) -> None:
    """Refuse ``folder``, whose image ``files`` are given, as all-in-focus photos (``what``: the option
    naming it) if it holds a pair set (:func:`is_pair_set`): blurred again, its pairs would train towards
    a ground truth that is itself half blurred."""
    if is_pair_set(files):
        raise DataError(
            f"{what} {folder} holds multi-focus pairs ({files[0].name}, {files[1].name}, ...), not all-in-focus photos: "
            "give photos sharp everywhere (gipc-fuse --pairs fuses pairs)"
        )


def group_sources(folder: Path, otherwise: str = "") -> list[tuple[str, tuple[Path, ...]]]:
    """Source groups of ``folder`` as (name, sources in focus order), sorted by name (layouts: module doc).

    Every group needs two or more sources running from the first without a gap; a file that
    cannot be grouped is an error rather than skipped, so nothing is silently left out. A folder
    of folders of images is refused naming them, with ``otherwise`` after (what else the caller
    could read them as: gipc-fuse's ``--stacks``).
    """
    _check_folder(folder)
    by_name: dict[str, dict[int, Path]] = defaultdict(dict)
    subfolders: dict[int, Path] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        position = folder_position(sub.name)
        if position is not None:
            if position in subfolders:
                raise DataError(f"{subfolders[position]} and {sub} both hold source {position + 1} of each scene; keep one")
            subfolders[position] = sub
    if subfolders:
        stems = {position: files_by_stem(sub) for position, sub in subfolders.items()}
        # every file named by its scene and its folder's mark (imageA/709_A, imageB/709_B): the scene is 709
        marked = all(_mark_of(stem) == position for position, files in stems.items() for stem in files)
        entries = [(stem, position if not marked else None, image) for position, files in stems.items() for stem, image in files.items()]
    else:
        entries = [(image.stem, None, image) for image in image_files(folder)]
    example: dict[str, str] = {}  # a group's first mark: the style its missing partner is named in
    for stem, position, image in entries:  # position None: the stem's own mark tells it
        match = SOURCE_NAME.match(stem) if position is None else None
        if position is None and match is None:
            raise DataError(f"{image}: cannot tell its partner; expected {LAYOUTS}")
        name = stem if match is None else match["name"]
        _add(by_name[name], position if match is None else focus_position(match["mark"]), image)
        if match is not None:
            example.setdefault(name, match["sep"] + match["mark"])
    if not by_name:
        sets = [sub.name for sub in sorted(folder.iterdir()) if sub.is_dir() and not sub.name.startswith(".") and image_files(sub)]
        if sets and not subfolders:  # a folder of pair sets (lytro/ holding pairs/ and triple/)
            raise DataError(f"{folder}: no images directly in it; its subfolders {', '.join(sets)} hold images: give one of them{otherwise}")
        raise DataError(f"{folder}: no images found ({SUFFIXES_IN_WORDS}); expected {LAYOUTS}")
    groups = []
    for name, sources in sorted(by_name.items()):
        missing = [position for position in range(max(len(sources), 2)) if position not in sources]
        if missing:
            found = ", ".join(str(p) for _, p in sorted(sources.items()))
            stem = name
            if name in example:  # the partner's own mark, in the style of the one found
                sep, mark = example[name][0], example[name][1:]
                stem = f"{name}{sep}{_mark_like(mark, missing[0])}"
            partner = folder / (_sibling(next(iter(subfolders.values())).name, missing[0]) + "/" if subfolders else "") / f"{stem}.*"
            raise DataError(f"{found}: unpaired, {partner} is missing")
        groups.append((name, tuple(sources[position] for position in range(len(sources)))))
    return groups


def _mark_of(stem: str) -> int | None:
    """The focus position a stem's own mark gives (``709_B``: 1), None without one."""
    match = SOURCE_NAME.match(stem)
    return None if match is None else focus_position(match["mark"])


def _add(files: dict[K, Path], key: K, path: Path) -> None:
    """``files[key] = path``, refusing a second file for one key."""
    if key in files:
        raise DataError(f"{files[key]} and {path}: two files for one image; keep one")
    files[key] = path
