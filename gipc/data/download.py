"""Fetch public multi-focus data sets (the ``gipc-download`` command is :mod:`gipc.cli.download`).

The archive streams to ``DEST/.NAME.part`` (an interrupted download resumes from there with an
HTTP Range request), is checked against its sha256, then a zip is unpacked into ``DEST/NAME``
through a hidden folder renamed at the end, so ``DEST/NAME`` is complete or absent.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from gipc.errors import DownloadError
from gipc.files import sha256_file, staging_dir

CHUNK = 1 << 16


@dataclass(frozen=True)
class Remote:
    """Where a data set lives. ``sha256=None``: not pinned yet; the digest is printed to pin it."""

    url: str | None
    sha256: str | None
    home: str
    note: str = ""


REGISTRY: dict[str, Remote] = {
    "mfi-whu": Remote(
        url="https://github.com/HaoZhang1018/MFI-WHU/archive/refs/heads/master.zip",
        sha256=None,  # a GitHub branch archive: its bytes may change with the branch, so pin per download
        home="https://github.com/HaoZhang1018/MFI-WHU",
        note="the 120 all-in-focus images (full_clear/) are the MFI-DRC source of section 4.1; if the "
        "archive holds MFI-WHU.rar, unpack it with `7z x` or `unrar x` (Python cannot read RAR)",
    ),
    "lytro": Remote(
        url=None,  # Nejati's page links the archive through a form; no stable direct URL is known
        sha256=None,
        home="https://mansournejati.ece.iut.ac.ir/content/lytro-multi-focus-dataset",
        note="20 pairs and 4 triple sequences (section 4.1 test set)",
    ),
}


def fetch(url: str, part: Path, timeout: float = 30.0, progress: bool = True) -> None:
    """Stream ``url`` into ``part``, resuming from its current size when the server honours Range."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to fetch: the part file is already whole
            return
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; check the URL (--url)") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot reach {url} ({reason}); check the network connection or pass another --url") from None
    with response:
        resumed = getattr(response, "status", 200) == 206
        if not resumed:
            offset = 0  # the server sent the whole file (no Range support, or file://)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name, disable=not progress
        ) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
            except (http.client.HTTPException, OSError, socket.timeout) as err:
                raise DownloadError(
                    f"download of {url} interrupted after {f.tell()} bytes ({type(err).__name__}); "
                    "run the same command again to resume"
                ) from None
        if total is not None and part.stat().st_size < total:
            raise DownloadError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; run the same command again to resume")


def _extract_zip(archive: Path, target: Path) -> None:
    """Unpack into a hidden sibling folder, then rename it to ``target``; refuse paths leaving it."""
    try:
        with staging_dir(target) as tmp, zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                path = PurePosixPath(member)
                if path.is_absolute() or ".." in path.parts:
                    raise DownloadError(f"{archive} holds an unsafe path {member!r}; not extracting it")
            zf.extractall(tmp)
            os.replace(tmp, target)
    except zipfile.BadZipFile:
        raise DownloadError(f"{archive} is not a valid zip archive") from None


def _archive_suffix(url: str) -> str:
    """The archive type a URL names: ``.tar.gz`` whole (not ``.gz``), ``.zip``; ``.bin`` when it names none."""
    suffixes = PurePosixPath(urllib.parse.urlsplit(url).path).suffixes
    if len(suffixes) >= 2 and suffixes[-2].lower() == ".tar":
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ".bin"


def part_path(dest: str | Path, name: str) -> Path:
    """Where the archive of ``name`` streams to, and stays for a rerun to resume when the transfer stops."""
    return Path(dest) / f".{name}.part"


def download(
    name: str,
    dest: str | Path,
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download, verify and unpack data set ``name`` into ``dest/name``; returns that folder.

    ``url`` / ``sha256`` override the registry. Without a known digest the computed one is printed
    so the user can pin it. A mismatch deletes the download. A non-zip archive is kept as
    ``dest/name<suffix>`` for the user to unpack.
    """
    if name not in REGISTRY:
        raise DownloadError(f"unknown data set {name!r}; choose one of {', '.join(REGISTRY)}")
    remote = REGISTRY[name]
    url = url or remote.url
    if url is None:
        raise DownloadError(f"no direct download link is known for {name}; get the archive's link from {remote.home} and pass --url")
    expected = (sha256 or remote.sha256 or "").lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):  # before a download it could never match
        raise DownloadError(f"--sha256 {sha256 or expected}: a sha256 is 64 hexadecimal digits")
    dest = Path(dest)
    target = dest / name
    kept = dest / (name + _archive_suffix(url))  # where an archive that is not a zip is kept whole
    for path in (target, *([kept] if kept.suffix != ".zip" else [])):
        if path.exists():
            raise DownloadError(f"{path} already exists; delete it or choose another -o folder")
    dest.mkdir(parents=True, exist_ok=True)
    part = part_path(dest, name)
    fetch(url, part, timeout, progress)
    digest = sha256_file(part)
    if expected is not None and digest != expected:
        part.unlink()
        raise DownloadError(f"sha256 mismatch for {name}: expected {expected}, got {digest}; deleted the download, try again or check --url")
    if expected is None:
        print(f"sha256 of {name}: {digest} (not pinned: pass --sha256 {digest} next time, or add it to the registry)")
    if zipfile.is_zipfile(part):
        try:
            _extract_zip(part, target)
        finally:
            part.unlink()  # unpacked, or unusable: a rerun must fetch it afresh
        return target
    os.replace(part, kept)
    print(f"{kept} is not a zip archive; unpack it by hand")
    return kept
