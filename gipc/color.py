"""Colour handling of the fusion pipeline (SPEC section 1): fuse luminance with the network, chroma by rule."""

from __future__ import annotations

import kornia
import torch


def split_luma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [0, 1] -> Y (B, 1, H, W) and CbCr (B, 2, H, W), chroma centred on 0.5."""
    ycbcr = kornia.color.rgb_to_ycbcr(rgb)
    return ycbcr[:, :1], ycbcr[:, 1:]


def merge_luma(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_luma`, clamped to the displayable range."""
    return kornia.color.ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0.0, 1.0)


def fuse_chroma(cbcr_a: torch.Tensor, cbcr_b: torch.Tensor) -> torch.Tensor:
    """Saturation-weighted chroma fusion of MFF-GAN: the more saturated source wins each pixel.

    ``C = (C_A |C_A - 0.5| + C_B |C_B - 0.5|) / (|C_A - 0.5| + |C_B - 0.5|)``, 0.5 where both are neutral.
    """
    wa = (cbcr_a - 0.5).abs()
    wb = (cbcr_b - 0.5).abs()
    den = wa + wb
    fused = (cbcr_a * wa + cbcr_b * wb) / den.clamp_min(torch.finfo(den.dtype).tiny)
    return torch.where(den > 0, fused, torch.full_like(fused, 0.5))


def to_net(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] image -> the network's [-1, 1] range."""
    return x * 2.0 - 1.0


def from_net(y: torch.Tensor) -> torch.Tensor:
    """The network's tanh output -> [0, 1]."""
    return ((y + 1.0) / 2.0).clamp(0.0, 1.0)
