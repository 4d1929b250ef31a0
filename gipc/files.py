"""Safe file output: every file the project writes appears whole or not at all, and never replaces an input."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from gipc.errors import ImageError, OutputExistsError, UserError

try:
    import fcntl
except ImportError:  # not POSIX: nothing is locked, and no leftover is removed
    fcntl = None  # type: ignore[assignment]

SETTLE_S = 2.0
"""A leftover younger than this is left alone: its writer may have made it and not locked it yet."""


def check_readable(path: Path) -> None:
    """An input image that is there, is a file and may be read; each way it is not, one ImageError line."""
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{path}: permission denied")


def check_writable(path: Path, overwrite: bool = False, protected: tuple[Path, ...] = ()) -> None:
    """Refuse to write over an input file, over an existing output unless ``overwrite``, or where no
    file can be made (:func:`check_creatable`)."""
    resolved = path.resolve()
    if any(resolved == p.resolve() for p in protected):
        raise OutputExistsError(f"refusing to write {path}: it is one of the inputs")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; choose another name or pass --overwrite (overwrite=True from Python)")
    check_creatable(path.parent)


def check_creatable(folder: Path) -> None:
    """Refuse a ``folder`` to write into whose nearest existing part (itself or a parent) is a file,
    or takes no new file (read-only, not ours, a file system such as /proc): found by making and
    removing a file there, which no permission bit read as root would tell, so that a command says
    so before its work, not after it."""
    ancestor = next(part for part in (folder, *folder.parents) if part.exists())  # a relative path ends at "."
    if not ancestor.is_dir():
        raise UserError(f"cannot write into {folder}: {ancestor} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise UserError(f"cannot write into {folder}: no new file can be made in {ancestor} ({error.strerror})") from None


def check_output_folder(out: Path, overwrite: bool = False, inputs: Sequence[Path] = ()) -> None:
    """Refuse an output folder that is a file, is or holds an input folder, lies in a folder of one that
    holds files (a pair set's ``A/``), or (unless ``overwrite``) is not empty.

    Every command that writes a folder checks it with this before it reads or computes anything,
    so a mistake costs nothing and the message is the same whichever command it was.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output folder {out} is a file; choose a folder")
    resolved = out.resolve()
    for path in inputs:
        source = path.resolve()
        if resolved == source or resolved in source.parents:
            raise OutputExistsError(f"output folder {out} holds the input {path}; choose a folder outside the inputs")
        inner = [folder for folder in (resolved, *resolved.parents) if source in folder.parents]
        if any(folder.is_dir() and any(f.is_file() and not f.name.startswith(".") for f in folder.iterdir()) for folder in inner):
            # one of the input's own folders (a pair set's A/): what is written there would be read as input next time
            raise OutputExistsError(f"output folder {out} is a folder of the input {path}; choose a folder outside the inputs")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"output folder {out} is not empty; choose a new folder or pass --overwrite")
    check_creatable(out)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash, a full disk or Ctrl-C inside the block leaves no partial ``path`` behind, and the
    temporary file that a ``kill -9`` leaves is removed by the next write of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{path.name}.", ".tmp" + path.suffix
    remove_leftovers(path.parent, prefix, suffix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    tmp_path = Path(tmp)
    try:
        _lock(fd)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the umask like open() would
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def staging_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new hidden folder beside ``out`` (``.NAME.staging-*``) to build ``out`` in; the block
    moves it into place (:func:`replace_dir`) when it is whole. Whatever is left of it is removed
    when the block ends, however it ends; the folder a ``kill -9`` leaves is removed by the next
    build of ``out``. The folder is locked while the block runs, so a live build's is never touched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.staging-"
    remove_leftovers(out.parent, prefix)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
    fd = os.open(staging, os.O_RDONLY)
    try:
        _lock(fd)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(fd)


def remove_leftovers(folder: Path, prefix: str, suffix: str = "") -> list[Path]:
    """Remove the temporary files and folders in ``folder`` named ``prefix*suffix`` whose writer is
    gone: no process holds their lock (the OS drops it when a process ends, SIGKILL included).
    Where files cannot be locked, nothing is removed. Returns what was removed."""
    removed = []
    for path in folder.glob(glob.escape(prefix) + "*" + glob.escape(suffix)):
        if _abandoned(path):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _lock(fd: int) -> None:
    """Hold an exclusive lock on an open file or folder until ``fd`` closes; not where locks fail."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a file system without locks: the leftover check then removes nothing
            pass


def _abandoned(path: Path) -> bool:
    if fcntl is None:
        return False
    try:
        if time.time() - path.lstat().st_mtime < SETTLE_S:
            return False
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer, or a file system without locks
        return False
    finally:
        os.close(fd)
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_dir(staging: Path, out: Path) -> None:
    """Move the finished folder ``staging`` to ``out``. An old ``out`` is moved aside first and deleted
    only once the new one is in place; if that move fails, the old one is put back."""
    if not out.exists():
        os.replace(staging, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(aside / out.name, out)  # if this fails too, the old folder stays in ``aside``, named by the error
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (manifests and download checks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
