"""Classic multi-focus fusion baselines: pure tensor functions ``fn(a, b)`` on (N, 1, H, W) luminance in [0, 1].

Colour images go through :func:`gipc.color.fuse_color` with any of these as the luminance fuser. A
method that weighs the sources pixel by pixel (average, laplacian_energy, gff, gfdf, dsift, bf) applies
the weights it draws from the luminance to each RGB channel and mwgf reconstructs each channel under
them, as their releases do (:class:`Baseline`; the DSIFT, GFF and MWGF ports then score their
published Lytro Q^AB/F to 1e-4, docs/results.md); laplacian_pyramid and dwt, which fuse transform
coefficients of the luminance, take fuse_color's chroma rule, as the network's direct output does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable

import torch

from gipc.baselines.average import average, mean_of
from gipc.baselines.bf import bf, bf_rgb
from gipc.baselines.dsift import dsift, dsift_map
from gipc.baselines.dwt import dwt
from gipc.baselines.gff import gff, gff_rgb
from gipc.baselines.gfdf import gfdf, gfdf_weight
from gipc.baselines.laplacian_energy import laplacian_energy, laplacian_energy_decision
from gipc.baselines.laplacian_pyramid import laplacian_pyramid
from gipc.baselines.mwgf import mwgf, mwgf_rgb
from gipc.color import luma
from gipc.errors import BaselineInputError, UnknownBaselineError
from gipc.tiling import Steps

Fuser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Baseline:
    """A classic method that fuses colour its own way: called on luminance (N, 1, H, W) as every
    fuser here, and ``fuse_rgb`` on RGB sources (N, 3, H, W) in [0, 1], which
    :func:`gipc.color.fuse_color` takes instead of its chroma rule."""

    luma: Fuser
    fuse_rgb: Fuser
    reports_steps: bool = False
    """Its fusers take ``steps`` (:data:`gipc.tiling.Steps`), which wraps their long loops for a progress display."""

    def __call__(self, a: torch.Tensor, b: torch.Tensor, **settings: Any) -> torch.Tensor:
        return self.luma(a, b, **settings)

    def with_steps(self, steps: Steps) -> Baseline:
        """This method with its long loops wrapped by ``steps``; itself where it has none."""
        if not self.reports_steps:
            return self
        return replace(self, luma=partial(self.luma, steps=steps), fuse_rgb=partial(self.fuse_rgb, steps=steps), reports_steps=False)


def blended_by(weight: Fuser) -> Fuser:
    """RGB blended channel by channel by ``weight``, A's weight (N, 1, H, W) from the sources'
    luminance: how the DSIFT and GFDF releases fuse colour, and a decision map copies pixels."""

    def blend(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w = weight(luma(a), luma(b))
        return w * a + (1 - w) * b

    return blend


BASELINES: dict[str, Fuser] = {
    "average": Baseline(average, mean_of),
    "laplacian_energy": Baseline(laplacian_energy, blended_by(laplacian_energy_decision)),
    "laplacian_pyramid": laplacian_pyramid,
    "gff": Baseline(gff, gff_rgb),
    "dwt": dwt,
    "gfdf": Baseline(gfdf, blended_by(gfdf_weight)),
    "dsift": Baseline(dsift, blended_by(dsift_map)),
    "mwgf": Baseline(mwgf, mwgf_rgb, reports_steps=True),
    "bf": Baseline(bf, bf_rgb, reports_steps=True),
}


def get_baseline(name: str, steps: Steps | None = None) -> Fuser:
    """The baseline registered as ``name``, or one clear error listing the valid names; with ``steps``,
    its long loops wrapped by it for a progress display, where it has any (mwgf's reconstructions, bf's stages)."""
    if name not in BASELINES:
        raise UnknownBaselineError(f"unknown baseline method {name!r}; choose one of: {', '.join(BASELINES)}")
    baseline = BASELINES[name]
    return baseline.with_steps(steps) if steps is not None and isinstance(baseline, Baseline) else baseline


__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineInputError",
    "Fuser",
    "UnknownBaselineError",
    "average",
    "bf",
    "dsift",
    "dwt",
    "get_baseline",
    "gff",
    "laplacian_energy",
    "laplacian_pyramid",
    "mwgf",
]
