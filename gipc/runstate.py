"""A run dir's state on disk: finished, failed, running now, partial (how far) or never started.

Read without Hydra by the tools that look at runs after the fact (``gipc-compare``, ``gipc-select``)
and by a resumed sweep (:mod:`gipc.sweep`), which skips, continues or starts each job by it.
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal

from gipc.errors import RunDirError

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

DONE = "DONE"
"""Written when a run has done all it was asked (trained, and tested unless ``test=false``), removed
when it trains again (a resume with more epochs): a run dir holding it (and no ``FAILED``) is done.
It records when, and the value the run returned to a sweeper (:func:`done_record`)."""
UNTESTED = "without a test stage (test=false)"
"""How a run done with no test table is named (its DONE without a FINISHED): there is nothing of it to compare."""
FINISHED = "metrics.csv"
"""The test stage's table: a run dir of an earlier gipc that holds it (and no ``FAILED``) is done too."""
FAILED = "FAILED"
"""Written when a run fails, with the error; removed when the run later succeeds."""
LOCK = ".lock"
"""Locked (``flock``) by the process that trains in the run dir, and released by the OS when that
process ends however it ends (SIGKILL included), so a lock held means the run is live."""
PROBE_WAIT_S = 1.0
"""How long a launch waits for the lock before it refuses: :func:`running` holds it for an instant."""
_STEP = re.compile(r"step(\d+)")
_LAUNCH = re.compile(r"[+~]*resume(=|$)")


def launch_override(item: str) -> bool:
    """An override that says how a job was launched, not what it is: ``resume=`` (any ``+``/``~`` prefix).
    A job a resumed sweep starts first records it, its siblings do not; sweeps and arms leave it out."""
    return _LAUNCH.match(item) is not None


def recorded_overrides(run_dir: Path) -> list[str]:
    """The run's command-line overrides as Hydra recorded them (``.hydra/overrides.yaml``), less the
    :func:`launch_override` ones; [] before Hydra wrote them (or for a run Hydra did not launch)."""
    import yaml  # only here: the lock and the markers need no YAML

    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [item for item in map(str, yaml.safe_load(path.read_text()) or []) if not launch_override(item)]


def done_record(metric: str | None, value: float | None) -> str:
    """:data:`DONE`'s text: when the run finished and, where a sweeper asked for one (``optimized_metric``),
    the value the run returned, which a resumed Optuna sweep tells its study instead of running the trial again."""
    import yaml

    record: dict[str, object] = {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if metric and value is not None:
        record["objective"] = {metric: value}
    return yaml.safe_dump(record, sort_keys=False)


def recorded_objective(run_dir: Path, metric: str | None) -> float | None:
    """The ``metric`` a finished run returned, from its :data:`DONE` (None: not recorded, as by a gipc
    before the record, or another metric)."""
    import yaml

    try:
        record = yaml.safe_load((run_dir / DONE).read_text())
    except (OSError, yaml.YAMLError):
        return None
    value = ((record or {}).get("objective") or {}).get(metric) if isinstance(record, dict) else None
    return float(value) if value is not None else None


def last_checkpoint(run_dir: Path) -> Path:
    """The run's ``checkpoints/last.ckpt``: what a resume continues from, always a whole file."""
    return run_dir / "checkpoints" / "last.ckpt"


def checkpoint_step(path: Path) -> int:
    """The global step in a checkpoint's name (``epoch002-step0000450.ckpt``), -1 for ``last.ckpt``."""
    match = _STEP.search(path.stem)
    return int(match[1]) if match else -1


def last_step(run_dir: Path) -> int | None:
    """How far the run's checkpoints got (None: no checkpoint yet): the step its ``last.ckpt`` holds,
    where a resume continues (a Slurm hand-back can write it between step-named saves, or before the
    first), else the highest step in their names (never an atomic save's hidden temp file)."""
    saved = saved_step(last_checkpoint(run_dir))
    if saved is not None:
        return saved
    return max((checkpoint_step(p) for p in (run_dir / "checkpoints").glob("[!.]*.ckpt") if checkpoint_step(p) >= 0), default=None)


def saved_step(path: Path) -> int | None:
    """The global step a Lightning checkpoint holds (None: missing, unreadable, or needing code to load:
    a status line never unpickles, as gipc's own checkpoints load with ``weights_only=True``)."""
    import torch  # only here: the rest of this module reads the run dir without it

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # noqa: BLE001 - a status line, not a resume: an unreadable file is "no checkpoint"
        return None


def job_order(path: Path) -> tuple[object, ...]:
    """Hydra's ``<num>_<overrides>`` sweep subdirs by job number, anything else by name."""
    match = re.match(r"(\d+)_", path.name)
    return (str(path.parent), int(match.group(1)) if match else math.inf, path.name)


def finished(run_dir: Path) -> bool:
    """The run did all it was asked (:data:`DONE`, or an earlier gipc's test table) and did not fail
    after it (its W&B table, say): a crash after the table leaves ``FAILED`` beside it, and such a
    run is not done."""
    return ((run_dir / DONE).is_file() or (run_dir / FINISHED).is_file()) and not (run_dir / FAILED).is_file()


def untested(run_dir: Path) -> bool:
    """The run is :func:`finished` but wrote no test table (``test=false``): there is nothing of it to compare."""
    return finished(run_dir) and not (run_dir / FINISHED).is_file()


def resume_action(run_dir: Path) -> Literal["skip", "continue", "start"]:
    """What a resumed sweep does with one job: ``skip`` it (finished), ``continue`` it from its
    ``last.ckpt``, or ``start`` it (never started, or stopped before its first checkpoint)."""
    if finished(run_dir):
        return "skip"
    return "continue" if last_checkpoint(run_dir).is_file() else "start"


def unfinished_runs(path: Path) -> list[tuple[Path, int | None]]:
    """Run dirs at or under ``path`` that started (``config.yaml``) but are neither :func:`finished` nor
    failed, with how far they got (:func:`last_step`)."""
    found = []
    for config in sorted(path.rglob("config.yaml")):
        run = config.parent
        if any(part.startswith(".") for part in run.relative_to(path).parts) or finished(run) or (run / FAILED).is_file():
            continue
        found.append((run, last_step(run)))
    return sorted(found, key=lambda item: job_order(item[0]))


def progress(step: int | None) -> str:
    return "no checkpoint yet" if step is None else f"last checkpoint at step {step}"


def running(run_dir: Path) -> bool:
    """A live process trains in the run dir now (it holds :data:`LOCK`); False where files cannot be locked."""
    path = run_dir / LOCK
    if fcntl is None or not path.is_file():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # a file system without locks: cannot tell
            return False
    return False


@contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run dir's :data:`LOCK` while the block trains in it; refuse when a live process holds it
    (a job an earlier launcher left running, the same run started twice), since two trainers would
    write over each other's checkpoints. The file is removed when the block ends."""
    if fcntl is None:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    deadline = time.monotonic() + PROBE_WAIT_S
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() < deadline:  # perhaps a status probe (``gipc-compare --status``), not a trainer
                handle.close()
                time.sleep(0.02)
                continue
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirError(f"{run_dir} is being trained by {holder} now; wait for it to end or stop it, then resume") from None
        except OSError:  # a file system without locks (some NFS mounts): train unlocked
            handle.close()
            break  # yield below, outside this handler: a failed run's error would otherwise read as raised while handling it
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # its holder removed the file between our open and our lock: lock the new one
    if handle.closed:  # unlocked
        yield
        return
    try:
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked here, so no process can hold the file being removed
        handle.close()
