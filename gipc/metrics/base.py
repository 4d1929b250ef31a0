"""Shared accumulation of the fusion metrics: the mean over images of a per-image score."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torchmetrics import Metric

from gipc.errors import MetricInputError


class PerImageMean(Metric):
    """Average of a per-image score over every image seen, as the fusion literature reports it.

    The state is a float64 sum and a count, both summed across processes, so DDP gives exactly the
    single-process mean and images of different sizes can arrive in different ``update`` calls.
    Subclasses only say how to score one batch: a pair in :meth:`per_image`, or any number of
    sources in :meth:`per_image_sources` (which then scores pairs too).
    """

    higher_is_better: bool | None = True
    is_differentiable = False
    full_state_update = False
    symbol: str
    """The metric's name as papers print it, in LaTeX (``$Q^{AB/F}$``), for tables of results."""
    best_at: float | None
    """Where the score is best when neither higher nor lower is (Q_SF: 0); tables rank by the distance to it."""
    takes_sequences: bool
    """Whether :meth:`per_image_sources` scores more than two sources (a focus sequence); the others score pairs."""

    total: torch.Tensor
    count: torch.Tensor

    def __init_subclass__(cls, symbol: str = "", best_at: float | None = None, sequences: bool = False, **kwargs: Any) -> None:
        """``class QSF(PerImageMean, symbol=r"$Q_{SF}$", best_at=0.0)``: each metric says how tables print and
        rank it, and (``sequences=True``) that it scores focus sequences too (:meth:`per_image_sources`)."""
        super().__init_subclass__(**kwargs)
        cls.symbol, cls.best_at, cls.takes_sequences = symbol, best_at, sequences
        if cls.per_image is PerImageMean.per_image and cls.per_image_sources is PerImageMean.per_image_sources:
            raise TypeError(f"{cls.__name__} must define per_image or per_image_sources")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        """Scores (N,) of a batch of sources ``a``, ``b``, fused images and optional ground truth: by
        default :meth:`per_image_sources` of the pair, for a metric that defines only that."""
        return self.per_image_sources([a, b], fused, gt)

    def per_image_sources(self, sources: Sequence[torch.Tensor], fused: torch.Tensor, gt: torch.Tensor | None) -> torch.Tensor:
        """:meth:`per_image` of two or more ``sources`` in focus order: a pair's score; for more, that of
        a metric that ``takes_sequences``, which defines this where it reads the sources (a metric of
        the fused image or the ground truth alone scores any number as it is)."""
        if len(sources) != 2 and not self.takes_sequences:
            raise MetricInputError(f"{type(self).__name__} scores pairs of sources, got {len(sources)}")
        return self.per_image(sources[0], sources[1], fused, gt)

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
