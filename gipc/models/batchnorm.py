"""Precise BatchNorm: re-estimate a trained network's running statistics from its final weights.

A network trained with BatchNorm keeps running means and variances as exponential averages over the
last few hundred training steps, taken while its weights were still moving (and, in a GAN, while
the adversarial terms pushed them around). At inference those stale statistics mis-scale every
layer; re-estimating them with the weights frozen, as an exact average over a few thousand training
patches, removes that error without touching a single learned weight (Wu & Johnson, "Rethinking
'Batch' in BatchNorm", 2021, section 3).
"""

from __future__ import annotations

import itertools
from typing import Iterable, Sequence

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Sequence[torch.Tensor]]) -> int:
    """Replace the running statistics of every BatchNorm in ``model`` by their exact means over ``batches``.

    Each batch is the tuple of positional inputs of ``model`` (a generator takes ``(a, b)``). The
    statistics become the equally weighted average of the per-batch means and (unbiased) variances,
    as ``momentum=None`` defines them; weights, biases and the model's train/eval mode are left as
    they were. Returns the number of batches used; raises ``ValueError`` (model untouched) when there
    were none.
    """
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ValueError("recalibrate_batchnorm needs at least one batch")
    norms = [m for m in model.modules() if isinstance(m, _NORMS) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    modes = {m: m.training for m in model.modules()}  # each module's own: model.train(mode) would set them all alike
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    count = 0
    try:
        for inputs in itertools.chain([first], batches):
            model(*inputs)
            count += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return count
