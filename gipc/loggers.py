"""Loggers that go on with a resumed run instead of starting a second record of it.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its writer starts in a folder that holds one,
so ``resume=<run dir>`` with ``logger=csv`` kept only the rows logged after the resume. Here, when
the run continues from a checkpoint (``keep_earlier_rows``, set by :func:`continue_run`), the
rows of earlier launches stay, up to the step the resumed run starts logging from: rows a killed
launch wrote after its last checkpoint are replayed by the resumed one, so those are replaced. A
run that starts over (``overwrite=true``, or a run killed before its first checkpoint and started
again) replaces the file, as Lightning's does.

W&B gives every launch a new run unless it is told the run's id: :func:`continue_run` keeps one id
per run dir (``wandb/gipc-run-id``) for the launches that continue it. Lightning's ``WandbLogger``
always passes ``anonymous``, a setting wandb no longer uses and warns about in every run;
:class:`QuietWandbLogger` leaves it out, and says in one line why W&B cannot start a run (online
without ``wandb login``, its server out of reach) instead of a traceback. Its ``offline="auto"``
(the default config's) logs online where the user has logged in and W&B's server answers, offline
elsewhere (:func:`wandb_offline`), so that a machine without an account or a network never waits on one.
"""

from __future__ import annotations

import csv
import difflib
import inspect
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Sequence

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from gipc.errors import LoggerError
from gipc.files import write_text
from gipc.wandb_mode import OFFLINE_MODES, wandb_offline

log = logging.getLogger(__name__)

WANDB_RUN_ID = "wandb/gipc-run-id"
"""The run dir's W&B run id, kept for the launches that continue the run."""


def _step(row: dict[str, str]) -> float:
    return float(row.get("step") or "nan")


class ResumableWriter(ExperimentWriter):
    """``metrics.csv`` writer that keeps the earlier launches' rows (``keep_earlier``) instead of deleting them."""

    def __init__(self, log_dir: str, keep_earlier: bool) -> None:
        self.keep_earlier = keep_earlier
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        self._earlier: list[dict[str, str]] | None = None
        if not self.keep_earlier:
            super()._check_log_dir_exists()  # Lightning's: the old file goes, with a warning
        elif self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self._earlier = list(csv.DictReader(handle))

    def save(self) -> None:
        if self.metrics and self._earlier is not None:
            first = min(float(m["step"]) for m in self.metrics)
            kept = [row for row in self._earlier if _step(row) < first]
            self.metrics_keys = sorted({key for row in self._earlier for key in row})
            with self._fs.open(self.metrics_file_path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            self._earlier = None
        super().save()


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` with :class:`ResumableWriter`; ``keep_earlier_rows`` must be set before
    the first value is logged (the writer is made then)."""

    keep_earlier_rows = False

    @property
    @rank_zero_experiment
    def experiment(self) -> ResumableWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ResumableWriter(self.log_dir, self.keep_earlier_rows)
        return self._experiment


class QuietWandbLogger(WandbLogger):
    """Lightning's W&B logger without the ``anonymous=None`` it passes to ``wandb.init`` whatever the
    user set, for which wandb prints a deprecation warning in every run, and with wandb's own errors
    on starting a run as one line (:class:`LoggerError`)."""

    def __init__(self, *args: Any, offline: bool | str = "auto", **kwargs: Any) -> None:
        import wandb

        takes = set(inspect.signature(WandbLogger).parameters) | set(inspect.signature(wandb.init).parameters)
        for key in sorted(set(kwargs) - takes):  # wandb.init would refuse it with a traceback once training starts
            near = difflib.get_close_matches(key, takes, n=1)
            raise TypeError(f"the W&B logger has no setting {key}{f'; did you mean {near[0]}?' if near else ''}")
        offline, why = wandb_offline(offline)
        log.info("W&B %s: %s", "offline" if offline else "online", why)
        super().__init__(*args, offline=offline, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            del self._wandb_init["anonymous"]

    @property
    def experiment(self) -> Any:
        try:
            return super().experiment
        except Exception as exc:
            import wandb.errors

            if not isinstance(exc, wandb.errors.Error):
                raise
            offline = self._offline or os.environ.get("WANDB_MODE") in OFFLINE_MODES
            hint = "" if offline else "; logger.wandb.offline=true logs without an account, for `wandb sync` to upload later"
            raise LoggerError(f"W&B cannot start the run: {' '.join(str(exc).split()).rstrip('.')}{hint}") from None


def wandb_run_id(run_dir: Path, continues: bool) -> str:
    """The W&B id of the run in ``run_dir``: the recorded one when the launch continues the run, else a
    new one (recorded by rank zero), so a run started over is a new W&B run."""
    path = run_dir / WANDB_RUN_ID
    if continues and path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)
    if rank_zero_only.rank == 0:
        write_text(path, run_id + "\n")
    return run_id


def continue_run(loggers: Sequence[Logger], run_dir: Path, continues: bool) -> None:
    """Tell the run's loggers, before they log anything, whether this launch continues the run from a
    checkpoint: the CSV file keeps its rows, and W&B resumes the same run (online it goes on; offline,
    ``wandb sync`` uploads the launches' folders as that one run). A user's own ``id=`` is left alone."""
    for logger in loggers:
        if isinstance(logger, ResumableCSVLogger):
            logger.keep_earlier_rows = continues
        elif isinstance(logger, WandbLogger) and logger._wandb_init.get("id") is None:
            logger._wandb_init["id"] = logger._id = wandb_run_id(run_dir, continues)
