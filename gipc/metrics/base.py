"""Shared accumulation of the fusion metrics: the mean over images of a per-image score."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torchmetrics import Metric


class PerImageMean(Metric):
    """Average of a per-image score over every image seen, as the fusion literature reports it.

    The state is a float64 sum and a count, both summed across processes, so DDP gives exactly the
    single-process mean and images of different sizes can arrive in different ``update`` calls.
    Subclasses only say how to score one batch in :meth:`per_image`.
    """

    higher_is_better: bool | None = True
    is_differentiable = False
    full_state_update = False
    symbol: str
    """The metric's name as papers print it, in LaTeX (``$Q^{AB/F}$``), for tables of results."""
    best_at: float | None
    """Where the score is best when neither higher nor lower is (Q_SF: 0); tables rank by the distance to it."""

    total: torch.Tensor
    count: torch.Tensor

    def __init_subclass__(cls, symbol: str = "", best_at: float | None = None, **kwargs: Any) -> None:
        """``class QSF(PerImageMean, symbol=r"$Q_{SF}$", best_at=0.0)``: each metric says how tables print and rank it."""
        super().__init_subclass__(**kwargs)
        cls.symbol, cls.best_at = symbol, best_at

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @abstractmethod
    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        """Scores (N,) of a batch of sources ``a``, ``b``, fused images and optional ground truth."""

    def update(self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None = None) -> None:
        """Add one batch of (N, C, H, W) images in [0, 1]."""
        scores = self.per_image(a, b, fused, gt)
        self.total += scores.sum()
        self.count += scores.numel()

    def compute(self) -> torch.Tensor:
        """Mean score over all images (float64)."""
        return self.total / self.count


def ratio(numerator: torch.Tensor, denominator: torch.Tensor, where_zero: float) -> torch.Tensor:
    """``numerator / denominator``, and ``where_zero`` where the denominator is 0: the value a metric
    gives where the toolbox divides 0 by 0 (flat images), rather than NaN."""
    zero = denominator == 0
    return torch.where(zero, where_zero, numerator / torch.where(zero, 1.0, denominator))
