"""What every command shares: a parser whose usage errors are one line, and one error handler."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Callable, Collection, NoReturn, Sequence

from tqdm import tqdm

from gipc.errors import UserError, one_line_warnings, out_of_memory


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line (``<prog>: error: ... (see --help)``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def count(text: str) -> int:
    """An argparse type: a whole number >= 0 (a batch count, a step), refused in argparse's own line otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def doc_summary(doc: str) -> str:
    """A command module's first docstring line without its ````gipc-x``:`` label: the ``--help`` description."""
    summary = doc.splitlines()[0].split(": ", 1)[1]
    return summary[:1].upper() + summary[1:]


def say(prog: str, message: str) -> None:
    """A status line on stderr, so stdout keeps only what a command is asked to print (tables)."""
    print(f"{prog}: {message}", file=sys.stderr)


INNER_BAR_DELAY = 1.0
"""Seconds an image's own bar (tiles, a stack's frames, a classic's steps) waits before it shows: a
520x520 pair or a Lytro triple is fused in a tenth of that, and its bar would only flicker under the folder's."""


def inner_bar(items: Sequence, what: str, unit: str) -> Collection:
    """A bar over one image's steps, under the folder's and gone once the image is fused; on a terminal
    only: a log (nohup, Slurm) would keep every update and the cursor moves that stack it under the other."""
    return tqdm(items, desc=what, unit=unit, leave=False, delay=INNER_BAR_DELAY, disable=not sys.stderr.isatty(), file=sys.stderr)


def step_bar(steps: Sequence, what: str) -> Collection:
    """A bar over a classic's long loop (mwgf's 500 reconstruction steps a channel: a 12 MP pair takes
    a minute on two cores), for ``get_baseline(name, steps=step_bar)``."""
    return inner_bar(steps, what, "step")


class _Terminated(KeyboardInterrupt):
    """A SIGTERM, raised like Ctrl-C so the same clean-up runs (hidden build folders, temp files)."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def guarded(prog: str, body: Callable[[], int], interrupted: Callable[[], str] = lambda: "interrupted; nothing written") -> int:
    """Run a command's ``body``: a :class:`UserError`, an OS refusal (a missing or unreadable file)
    or a failed allocation (a focus stack too large for the memory) becomes one ``error:`` line and
    exit code 2, Ctrl-C one line and 130, a SIGTERM (``kill``, ``timeout``) the same line and 143,
    after the same clean-up, no traceback; a library's warning (MS-SSIM on small images, say) is one
    ``warning:`` line, not Python's two. The process's SIGTERM handler and warning format are the
    caller's again afterwards. Outputs are written whole or not at all (:mod:`gipc.files`), so an
    error leaves none half-written."""
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        with one_line_warnings(prog):
            return body()
    except UserError as err:
        say(prog, f"error: {err}")
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        say(prog, f"error: {where}{err.strerror or err}")
    except Exception as err:
        what = out_of_memory(err)
        if what is None:
            raise
        say(prog, f"error: {what}; fewer or smaller images at once need less")
    except KeyboardInterrupt as err:
        say(prog, interrupted())
        return 128 + signal.SIGTERM if isinstance(err, _Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 2
