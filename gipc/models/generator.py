"""Pseudo-Siamese dense generator of GIPC-GAN (paper Table 1, docs/paper.md section 2)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from gipc.errors import ConfigError

Head = Literal["image", "weights"]
HEADS: tuple[str, ...] = ("image", "weights")


def check_slope(key: str, slope: float) -> None:
    """A LeakyReLU slope the in-place blocks can train with: PyTorch refuses a negative one's backward."""
    if not slope >= 0:
        raise ConfigError(f"{key} must be >= 0 (the LeakyReLU's slope for negative inputs), got {slope}")


def conv_block(in_ch: int, out_ch: int, slope: float, kernel: int = 3, norm: bool = True) -> nn.Sequential:
    """Conv (stride 1, SAME padding) + optional BatchNorm + LeakyReLU: the "block" of Tables 1 and 2.

    The LeakyReLU works in place: its input is a conv or BatchNorm output whose backward never reads
    it, so training and fusing each keep one activation buffer less per block (benchmarks/README.md).
    """
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride=1, padding=kernel // 2)]
    if norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.LeakyReLU(slope, inplace=True))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """Fuses two 1-channel images in [-1, 1] into one, same H x W (any size, odd too).

    Two encoder paths (near focus A, far focus B) of equal shape and unshared weights
    exchange features after every block; their dense features meet in a 1x1 feature
    generator and a plain conv decoder ends in tanh (``head="image"``, the paper's).

    ``head="weights"`` (not in the paper) ends in a sigmoid instead: a per-pixel weight ``w`` in
    [0, 1] for A, and the fused image is ``w A + (1 - w) B``, so every pixel is a mix of the
    sources rather than a repainting; the losses see that image as they see the paper's.
    """

    def __init__(self, width: int, encoder_blocks: int, slope: float, head: Head = "image") -> None:
        """Table 1's ``width``, ``encoder_blocks`` and LeakyReLU ``slope`` come from ``conf/model``."""
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"model.generator.head must be one of {', '.join(HEADS)}, got {head!r}")
        for name, value in (("width", width), ("encoder_blocks", encoder_blocks)):
            if value < 1:
                raise ConfigError(f"model.generator.{name} must be >= 1, got {value}")
        check_slope("model.generator.slope", slope)
        self.head = head
        self.settings = {"width": width, "encoder_blocks": encoder_blocks, "slope": slope, "head": head}
        """The constructor's arguments, saved beside the weights so that a file rebuilds this network."""
        # Block k of a path sees its own k-1 earlier outputs plus the other path's latest one.
        in_channels = [1] + [width * (k + 1) for k in range(1, encoder_blocks)]
        self.enc_a = nn.ModuleList(conv_block(c, width, slope=slope) for c in in_channels)
        self.enc_b = nn.ModuleList(conv_block(c, width, slope=slope) for c in in_channels)
        fused = 2 * width * encoder_blocks
        self.feature = conv_block(fused, fused, kernel=1, slope=slope)
        self.decoder = nn.Sequential(
            conv_block(fused, 4 * width, norm=False, slope=slope),
            conv_block(4 * width, 2 * width, slope=slope),
            conv_block(2 * width, width, slope=slope),
            nn.Conv2d(width, 1, 3, padding=1),
            nn.Tanh() if head == "image" else nn.Sigmoid(),
        )

    @property
    def receptive_radius(self) -> int:
        """How far (px) from an output pixel the inputs it depends on lie: each conv on the longest path
        (one encoder, the feature conv, the decoder) adds ``kernel // 2``. Tiles that overlap by 4x this
        fuse exactly (:func:`gipc.tiling.exact_overlap`)."""
        path = [*self.enc_a, self.feature, self.decoder]
        return sum(conv.kernel_size[0] // 2 for part in path for conv in part.modules() if isinstance(conv, nn.Conv2d))

    def output_layer(self) -> str:
        """The state-dict prefix of the last conv, the one layer whose meaning depends on the head."""
        return f"decoder.{len(self.decoder) - 2}."

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The fused image in [-1, 1] (either head)."""
        out = self._decode(a, b)
        return out if self.head == "image" else out * a + (1.0 - out) * b

    def weight(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """A's per-pixel weight in [0, 1] (``head="weights"`` only)."""
        if self.head != "weights":
            raise ValueError("only a generator with head='weights' outputs weights")
        return self._decode(a, b)

    def _decode(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feats_a = [self.enc_a[0](a)]
        feats_b = [self.enc_b[0](b)]
        for block_a, block_b in zip(self.enc_a[1:], self.enc_b[1:]):
            new_a = block_a(torch.cat([*feats_a, feats_b[-1]], dim=1))
            new_b = block_b(torch.cat([*feats_b, feats_a[-1]], dim=1))
            feats_a.append(new_a)
            feats_b.append(new_b)
        return self.decoder(self.feature(torch.cat([*feats_a, *feats_b], dim=1)))
