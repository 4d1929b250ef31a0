"""A CSV logger that a resumed run appends to (``conf/logger/csv.yaml``).

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its writer starts in a folder that holds one,
so ``resume=<run dir>`` with ``logger=csv`` kept only the rows logged after the resume. Here, when
the run continues from a checkpoint (``keep_earlier_rows``, set by :mod:`gipc.experiment`), the
rows of earlier launches stay, up to the step the resumed run starts logging from: rows a killed
launch wrote after its last checkpoint are replayed by the resumed one, so those are replaced. A
run that starts over (``overwrite=true``, or a run killed before its first checkpoint and started
again) replaces the file, as Lightning's does.
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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
