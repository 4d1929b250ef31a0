"""Every error gipc raises on purpose, in one light module (no torch import).

Bad input a user can fix derives from :class:`UserError`: each command catches that one type and
prints its message as a single ``error:`` line with exit code 2, no traceback. The subclasses
only say which layer refused; their messages name the file or value and what to do.
:func:`out_of_memory` tells an allocation the system refused, which is no bug either, from the rest;
:func:`one_line_warnings` makes a library's warning read like the errors, one line.
"""

from __future__ import annotations

import errno
import re
import warnings
from contextlib import contextmanager
from typing import Iterator


class UserError(ValueError):
    """Bad input (a file, folder, option or config value), told in one line the user can act on."""


class ConfigError(UserError):
    """A bad config value, reported before any work starts."""


class RunDirError(ConfigError):
    """The run dir holds an earlier run's checkpoints; that run is left exactly as it was (no FAILED marker)."""


class LoggerError(UserError):
    """A logger that cannot start its run: W&B online without a login, or without its server."""


class DataError(UserError):
    """A bad data folder, file or option."""


class DownloadError(DataError):
    """Offline, refused, interrupted or corrupt download."""


class ImageError(UserError):
    """An image that cannot be read, fused or written."""


class CheckpointError(UserError):
    """A file that is not a usable gipc generator checkpoint."""


class FuseInputError(UserError):
    """Sources or an output location the fuse command cannot work with."""


class EvalInputError(UserError):
    """Sources, fused images or options the eval command cannot score."""


class CompareError(UserError):
    """Nothing to compare, an unusable ``--reference``, or an output that would overwrite something."""


class MetricInputError(UserError):
    """Images a fusion metric cannot score (wrong shape, range or size)."""


class BaselineInputError(UserError):
    """Sources or settings a baseline cannot fuse."""


class UnknownBaselineError(BaselineInputError):
    """A ``--method`` name that is not a baseline."""


class OutputExistsError(FileExistsError, UserError):
    """Raised instead of silently replacing a file the user did not ask to overwrite."""


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss term became NaN or inf (not a user error: the run is marked FAILED)."""


_OUT_OF_MEMORY = ("can't allocate memory", "not enough memory", "out of memory", "Insufficient memory")
"""What torch's CPU allocator, CUDA and OpenCV say when an allocation fails (numpy raises MemoryError)."""

_SOURCE_LOCATION = r"^(\[enforce fail at [^]]*\] [^.]*\. |OpenCV\([^)]*\) \S+: error: \(-?\d+:[^)]*\) )"
"""Where in their C++ sources torch's and OpenCV's errors arose: no help to a user."""


def out_of_memory(err: BaseException) -> str | None:
    """``out of memory (<the failed allocation's own words>)`` on one line (numpy's size and shape,
    torch's bytes), or None for any other error."""
    if not isinstance(err, MemoryError) and not any(words in str(err) for words in _OUT_OF_MEMORY):
        return None
    lines = str(err).strip().splitlines()
    return f"out of memory ({re.sub(_SOURCE_LOCATION, '', lines[0]) if lines else type(err).__name__})"


def disk_full(err: BaseException) -> str | None:
    """``no space left on the device (writing <file>)`` for a write that found the disk or the
    user's quota full, anywhere in ``err``'s chain (Lightning wraps a checkpoint's); None for any other error."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            where = seen.filename2 or seen.filename
            return f"no space left on the device{f' (writing {where})' if where else ''}"
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def one_line_warnings(prefix: str = "") -> Iterator[None]:
    """While the block runs, a warning (MS-SSIM on small images, say) prints as one ``[prefix: ]warning:
    <message>`` line, not as Python's two with a path into the library that raised it; the caller's
    format again after, so a Python caller's own warnings read as before."""
    formatwarning = warnings.formatwarning
    lead = f"{prefix}: " if prefix else ""
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"{lead}warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = formatwarning
