"""Least-squares discriminator of GIPC-GAN (paper Table 2, docs/paper.md section 3)."""

from __future__ import annotations

import torch
from torch import nn

from gipc.errors import ConfigError
from gipc.models.generator import check_slope


class Discriminator(nn.Module):
    """Scores a 1-channel image or Laplacian map with one unbounded number (LSGAN: no sigmoid).

    The same network judges intensity images and gradient maps. Its input size is a
    constructor argument because the final Linear layer depends on it.
    """

    def __init__(self, patch_size: int, channels: tuple[int, ...], slope: float) -> None:
        """Table 2's ``channels`` and LeakyReLU ``slope`` come from ``conf/model``, ``patch_size`` from ``conf/data``."""
        super().__init__()
        if not channels or min(channels) < 1:
            raise ConfigError(f"model.discriminator.channels must be one or more widths >= 1, got {list(channels)}")
        check_slope("model.discriminator.slope", slope)
        factor = 2 ** len(channels)  # each stride-2 conv halves the patch
        if patch_size % factor or patch_size <= 0:
            raise ValueError(
                f"data.patch_size must be a positive multiple of {factor} (the discriminator's {len(channels)} "
                f"stride-2 convs halve it), got {patch_size}"
            )
        layers: list[nn.Module] = []
        in_ch = 1
        for i, out_ch in enumerate(channels):
            layers.append(nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(slope, inplace=True))  # as in the generator's blocks
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        side = patch_size // factor
        self.head = nn.Linear(in_ch * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))
