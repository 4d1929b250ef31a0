"""EN: Shannon entropy of the fused luminance histogram (docs/paper.md section 7)."""

from __future__ import annotations

import math

import torch

from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import gray255


def bits(p: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Shannon entropy in bits of the probabilities ``p`` summed over ``dims`` (0 log 0 = 0)."""
    return -torch.special.xlogy(p, p).sum(dim=dims) / math.log(2.0)


def entropy(fused: torch.Tensor) -> torch.Tensor:
    """Per-image entropy (N,) in bits of the 256-bin histogram of the 0..255 luminance."""
    levels = gray255(fused).flatten(1).long()
    n, pixels = levels.shape
    offsets = 256 * torch.arange(n, device=levels.device).unsqueeze(1)
    counts = torch.bincount((levels + offsets).flatten(), minlength=256 * n).view(n, 256)
    return bits(counts.to(torch.float64) / pixels, (1,))


class Entropy(PerImageMean, symbol="EN", sequences=True):
    """Mean EN of the fused images; the sources do not enter."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return entropy(fused)
