"""All fusion metrics at once: a MetricCollection for training/evaluation loops, a function for per-image rows."""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics import MetricCollection

from gipc.choices import expand, unknown
from gipc.errors import MetricInputError
from gipc.metrics.base import PerImageMean
from gipc.metrics.correlation import CorrelationCoefficient
from gipc.metrics.decision_map import MAP_SYMBOLS
from gipc.metrics.entropy import Entropy
from gipc.metrics.luminance import converted_once
from gipc.metrics.msssim import FusionMSSSIM
from gipc.metrics.qabf import QABF
from gipc.metrics.qcb import QCB
from gipc.metrics.qm import QM
from gipc.metrics.qmi import QMI
from gipc.metrics.qncie import QNCIE
from gipc.metrics.qp import QP
from gipc.metrics.qsf import QSF
from gipc.metrics.qy import QY
from gipc.metrics.reference import ReferencePSNR, ReferenceSSIM
from gipc.metrics.spatial_frequency import SpatialFrequency
from gipc.metrics.standard_deviation import StandardDeviation

#: The one table the names, the collection and the per-image scores derive from: the six
#: no-reference metrics of the paper in its table order, then those against ground truth.
METRICS: dict[str, type[PerImageMean]] = {
    "EN": Entropy,
    "SF": SpatialFrequency,
    "SD": StandardDeviation,
    "CC": CorrelationCoefficient,
    "QABF": QABF,
    "MSSSIM": FusionMSSSIM,
}
REFERENCE_METRICS: dict[str, type[PerImageMean]] = {"PSNR": ReferencePSNR, "SSIM": ReferenceSSIM}
#: Further no-reference metrics of the MFIF survey's tables (Liu et al. 2020), scored on request
#: (``gipc-eval --extra-metrics``), in the survey's order: normalised mutual information, nonlinear
#: correlation information entropy, multiscale edge preservation (0..3), extended spatial frequency
#: (0 best), phase congruency, Yang's SSIM-based metric and Chen and Blum's perceptual one. With
#: Q^AB/F (the survey's Q_G) they are its eight.
EXTRA_METRICS: dict[str, type[PerImageMean]] = {"QMI": QMI, "QNCIE": QNCIE, "QM": QM, "QSF": QSF, "QP": QP, "QY": QY, "QCB": QCB}
METRIC_NAMES = tuple(METRICS)
REFERENCE_NAMES = tuple(REFERENCE_METRICS)
EXTRA_NAMES = tuple(EXTRA_METRICS)


class FusionMetrics(MetricCollection):
    """Running means of the six fusion metrics (+ PSNR and SSIM with ``with_reference=True``).

    ``update(a, b, fused, gt=None)`` takes (N, C, H, W) images in [0, 1], C = 1 or 3; batches may
    differ in size between calls. ``compute()`` returns ``{name: float64 scalar}`` with the keys of
    :data:`METRIC_NAMES` (+ :data:`REFERENCE_NAMES`). A ``gt`` given without ``with_reference`` is
    ignored, and batches without ``gt`` update only the six. Every member is a :class:`PerImageMean`, so DDP gives the single-process means.
    """

    def __init__(self, with_reference: bool = False) -> None:
        table = METRICS | (REFERENCE_METRICS if with_reference else {})
        # Compute groups would merge members whose states happen to be equal after one batch.
        super().__init__({name: metric() for name, metric in table.items()}, compute_groups=False)
        self.with_reference = with_reference

    def update(self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None = None) -> None:
        """Add one batch to every metric; without ``gt`` (real pairs) the reference metrics skip it."""
        if self.with_reference and gt is not None:
            super().update(a, b, fused, gt=gt)
            return
        for name in METRIC_NAMES:
            self[name].update(a, b, fused)

    def compute(self) -> dict[str, torch.Tensor]:
        """Means of the metrics that saw at least one image: no PSNR/SSIM for a set without ground truth.

        A data set either has ground truth for every pair or for none, so all ranks agree on the keys.
        """
        return {name: metric.compute() for name, metric in self.items(keep_base=True) if metric.update_called}


_SCORERS = {name: metric() for name, metric in (METRICS | REFERENCE_METRICS | EXTRA_METRICS).items()}
"""One instance of each metric for :func:`fusion_metrics`: ``per_image`` reads no state."""


def goal(name: str) -> str | float | None:
    """Where the report column ``name`` is best, for tables that mark the best method: ``"max"``,
    ``"min"`` or a value (Q_SF: 0.0); None for a column that is no metric."""
    if name in MAP_SYMBOLS:
        return "max"
    metric = _SCORERS.get(name)
    if metric is None:
        return None
    if metric.best_at is not None:
        return metric.best_at
    return "max" if metric.higher_is_better else "min"


def symbol(name: str) -> str | None:
    """The report column ``name`` as papers print it, in LaTeX (``$Q^{AB/F}$``); None for a column that is no metric."""
    if name in MAP_SYMBOLS:
        return MAP_SYMBOLS[name]
    metric = _SCORERS.get(name)
    return None if metric is None else metric.symbol or name


def fusion_metrics(
    a: torch.Tensor,
    b: torch.Tensor,
    fused: torch.Tensor,
    gt: torch.Tensor | None = None,
    extra: Sequence[str] = (),
    only: Sequence[str] | None = None,
    more: Sequence[torch.Tensor] = (),
) -> dict[str, torch.Tensor]:
    """Per-image scores ``{name: (N,) float64}`` of one batch: the six metrics, + PSNR and SSIM given
    ``gt``, + the ``extra`` ones asked for (:data:`EXTRA_NAMES`, or ``all``); of those, ``only`` the
    ones named there where given (a checkpoint's selection ranks two). ``more``: a focus sequence's
    sources after ``a`` and ``b``, which the six, PSNR and SSIM score (:meth:`PerImageMean.per_image_sources`)
    and the extra metrics, defined for pairs, refuse."""
    extra = expand(extra, EXTRA_NAMES)
    if problem := unknown(extra, EXTRA_NAMES, "extra metric"):
        raise MetricInputError(problem)
    names = METRIC_NAMES + (REFERENCE_NAMES if gt is not None else ()) + tuple(extra)
    if only is not None:
        if missing := [name for name in only if name not in names]:
            raise MetricInputError(f"no metric {', '.join(missing)} among those scored here: {', '.join(names)}")
        names = tuple(name for name in names if name in only)
    sources = (a, b, *more)
    if pairs_only := [name for name in names if not _SCORERS[name].takes_sequences] if more else []:
        raise MetricInputError(f"{', '.join(pairs_only)} score pairs; a focus sequence of {len(sources)} sources is scored on "
                               + ", ".join(name for name in names if name not in pairs_only))
    with converted_once():
        return {name: _SCORERS[name].per_image_sources(sources, fused, gt) for name in names}
