"""Q_MI: Hossny's normalised mutual information between each source and the fused image, ported from
the MFIF benchmark toolbox's ``metricMI.m`` (its revised-MI switch) and ``mutual_info.m``.

Port details: each image's 0..255 luminance is first stretched to its own full range and rounded
(``normalize1.m``: ``round(255 (y - min) / (max - min))``); entropies are in bits over 256 levels
and the joint 256 x 256 histogram. An image of one level stays 0 (the toolbox divides 0 by 0 for one
of a level above 0), and a source term whose two entropies are both 0 counts 0 (neither image
holds information to share).
"""

from __future__ import annotations

import torch

from gipc.metrics.base import PerImageMean, ratio
from gipc.metrics.entropy import bits
from gipc.metrics.luminance import gray255_same, matlab_round_

LEVELS = 256


def stretched(y: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 0..255 luminance, each image stretched to 0..255 and rounded (``normalize1.m``)."""
    low = y.amin(dim=(1, 2, 3), keepdim=True)
    span = y.amax(dim=(1, 2, 3), keepdim=True) - low
    return matlab_round_(ratio(y - low, span, 0.0) * (LEVELS - 1))


def mutual_information(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image (N,) of two (N, 1, H, W) integer images on 0..255: their mutual information and
    each one's entropy, in bits, from their joint histogram."""
    n = x.shape[0]
    pairs = (x.flatten(1).long() * LEVELS + y.flatten(1).long()) + LEVELS * LEVELS * torch.arange(n, device=x.device).unsqueeze(1)
    joint = torch.bincount(pairs.flatten(), minlength=n * LEVELS * LEVELS).view(n, LEVELS, LEVELS).to(torch.float64)
    joint /= joint.sum(dim=(1, 2), keepdim=True)
    h_x, h_y = bits(joint.sum(dim=2), (1,)), bits(joint.sum(dim=1), (1,))
    return h_x + h_y - bits(joint, (1, 2)), h_x, h_y


def qmi(a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
    """Per-image Q_MI (N,) in [0, 2] of (N, C, H, W) images in [0, 1]:
    ``2 (MI(A, F) / (H(A) + H(F)) + MI(B, F) / (H(B) + H(F)))``."""
    ya, yb, yf = (stretched(y) for y in gray255_same(a, b, fused))
    total = torch.zeros(ya.shape[0], dtype=torch.float64, device=ya.device)
    for source in (ya, yb):
        shared, h_source, h_fused = mutual_information(source, yf)
        total += ratio(shared, h_source + h_fused, 0.0)
    return 2.0 * total


class QMI(PerImageMean, symbol=r"$Q_{MI}$"):
    """Mean Q_MI (Hossny et al. 2008), matching the MFIF benchmark toolbox."""

    def per_image(
        self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None
    ) -> torch.Tensor:
        return qmi(a, b, fused)
