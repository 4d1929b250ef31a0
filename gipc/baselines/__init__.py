"""Classic multi-focus fusion baselines: pure tensor functions ``fn(a, b)`` on (N, 1, H, W) luminance in [0, 1].

Colour images go through :func:`gipc.color.fuse_color` with any of these as the luminance fuser.
"""

from __future__ import annotations

from typing import Callable

import torch

from gipc.baselines.average import average
from gipc.baselines.dsift import dsift
from gipc.baselines.dwt import dwt
from gipc.baselines.gff import gff
from gipc.baselines.gfdf import gfdf
from gipc.baselines.laplacian_energy import laplacian_energy
from gipc.baselines.laplacian_pyramid import laplacian_pyramid
from gipc.baselines.mwgf import mwgf
from gipc.errors import BaselineInputError, UnknownBaselineError

Fuser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BASELINES: dict[str, Fuser] = {
    "average": average,
    "laplacian_energy": laplacian_energy,
    "laplacian_pyramid": laplacian_pyramid,
    "gff": gff,
    "dwt": dwt,
    "gfdf": gfdf,
    "dsift": dsift,
    "mwgf": mwgf,
}


def get_baseline(name: str) -> Fuser:
    """The baseline registered as ``name``, or one clear error listing the valid names."""
    if name not in BASELINES:
        raise UnknownBaselineError(f"unknown baseline method {name!r}; choose one of: {', '.join(BASELINES)}")
    return BASELINES[name]


__all__ = [
    "BASELINES",
    "BaselineInputError",
    "Fuser",
    "UnknownBaselineError",
    "average",
    "dsift",
    "dwt",
    "get_baseline",
    "gff",
    "laplacian_energy",
    "laplacian_pyramid",
    "mwgf",
]
