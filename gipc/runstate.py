"""A run dir's state on disk: finished, failed, partial (how far) or never started.

Read without Hydra by the tools that look at runs after the fact (``gipc-compare``, ``gipc-select``)
and by a resumed sweep (:mod:`gipc.sweep`), which skips, continues or starts each job by it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

FINISHED = "metrics.csv"
"""Written by the test stage when a run ends: a run dir holding it (and no ``FAILED``) is done."""
FAILED = "FAILED"
"""Written when a run fails, with the error; removed when the run later succeeds."""
_STEP = re.compile(r"step(\d+)")


def checkpoint_step(path: Path) -> int:
    """The global step in a checkpoint's name (``epoch002-step0000450.ckpt``), -1 for ``last.ckpt``."""
    match = _STEP.search(path.stem)
    return int(match[1]) if match else -1


def last_step(run_dir: Path) -> int | None:
    """The highest step among the run's step-named checkpoints (None: no checkpoint yet)."""
    return max((checkpoint_step(p) for p in (run_dir / "checkpoints").glob("*.ckpt") if checkpoint_step(p) >= 0), default=None)


def job_order(path: Path) -> tuple[object, ...]:
    """Hydra's ``<num>_<overrides>`` sweep subdirs by job number, anything else by name."""
    match = re.match(r"(\d+)_", path.name)
    return (str(path.parent), int(match.group(1)) if match else math.inf, path.name)


def finished(run_dir: Path) -> bool:
    """The run wrote its test table and did not fail after it (its W&B table, say): a crash after
    the table leaves ``FAILED`` beside it, and such a run is not done."""
    return (run_dir / FINISHED).is_file() and not (run_dir / FAILED).is_file()


def resume_action(run_dir: Path) -> Literal["skip", "continue", "start"]:
    """What a resumed sweep does with one job: ``skip`` it (finished), ``continue`` it from its
    ``last.ckpt``, or ``start`` it (never started, or stopped before its first checkpoint)."""
    if finished(run_dir):
        return "skip"
    return "continue" if (run_dir / "checkpoints" / "last.ckpt").is_file() else "start"


def unfinished_runs(path: Path) -> list[tuple[Path, int | None]]:
    """Run dirs at or under ``path`` that started (``config.yaml``) but wrote no test table and did not
    fail, with how far they got (:func:`last_step`)."""
    found = []
    for config in sorted(path.rglob("config.yaml")):
        run = config.parent
        if any(part.startswith(".") for part in run.relative_to(path).parts) or (run / FINISHED).is_file() or (run / FAILED).is_file():
            continue
        found.append((run, last_step(run)))
    return sorted(found, key=lambda item: job_order(item[0]))


def progress(step: int | None) -> str:
    return "no checkpoint yet" if step is None else f"last checkpoint at step {step}"
