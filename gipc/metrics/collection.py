"""All fusion metrics at once: a MetricCollection for training/evaluation loops, a function for per-image rows."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection

from gipc.metrics.base import PerImageMean
from gipc.metrics.correlation import CorrelationCoefficient, correlation_coefficient
from gipc.metrics.entropy import Entropy, entropy
from gipc.metrics.msssim import FusionMSSSIM, fusion_msssim
from gipc.metrics.qabf import QABF, qabf
from gipc.metrics.reference import ReferencePSNR, ReferenceSSIM, psnr, ssim
from gipc.metrics.spatial_frequency import SpatialFrequency, spatial_frequency
from gipc.metrics.standard_deviation import StandardDeviation, standard_deviation

#: The six no-reference metrics of the paper, in its table order.
METRIC_NAMES = ("EN", "SF", "SD", "CC", "QABF", "MSSSIM")
#: The metrics against ground truth, reported when it exists.
REFERENCE_NAMES = ("PSNR", "SSIM")


class FusionMetrics(MetricCollection):
    """Running means of the six fusion metrics (+ PSNR and SSIM with ``with_reference=True``).

    ``update(a, b, fused, gt=None)`` takes (N, C, H, W) images in [0, 1], C = 1 or 3; batches may
    differ in size between calls. ``compute()`` returns ``{name: float64 scalar}`` with the keys of
    :data:`METRIC_NAMES` (+ :data:`REFERENCE_NAMES`). A ``gt`` given without ``with_reference`` is
    ignored, and batches without ``gt`` update only the six. Every member is a :class:`PerImageMean`, so DDP gives the single-process means.
    """

    def __init__(self, with_reference: bool = False) -> None:
        metrics: dict[str, PerImageMean] = {
            "EN": Entropy(),
            "SF": SpatialFrequency(),
            "SD": StandardDeviation(),
            "CC": CorrelationCoefficient(),
            "QABF": QABF(),
            "MSSSIM": FusionMSSSIM(),
        }
        if with_reference:
            metrics |= {"PSNR": ReferencePSNR(), "SSIM": ReferenceSSIM()}
        # Compute groups would merge members whose states happen to be equal after one batch.
        super().__init__(metrics, compute_groups=False)
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


def fusion_metrics(
    a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-image scores ``{name: (N,) float64}`` of one batch: the six metrics, + PSNR and SSIM given ``gt``."""
    scores = {
        "EN": entropy(fused),
        "SF": spatial_frequency(fused),
        "SD": standard_deviation(fused),
        "CC": correlation_coefficient(a, b, fused),
        "QABF": qabf(a, b, fused),
        "MSSSIM": fusion_msssim(a, b, fused),
    }
    if gt is not None:
        scores |= {"PSNR": psnr(fused, gt), "SSIM": ssim(fused, gt)}
    return scores
