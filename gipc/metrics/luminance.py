"""The one conversion every fusion metric starts from: images in [0, 1] -> integer luminance on 0..255.

The MFIF benchmark toolbox (Liu et al. 2020) reads uint8 files and applies Matlab's ``rgb2gray``;
scoring the same integers is what makes our numbers comparable with the published ones.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch

from gipc.color import outside_unit_range
from gipc.errors import MetricInputError

#: Matlab ``rgb2gray`` weights (the exact doubles Matlab uses, not the rounded Rec. 601 ones).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)

_CONVERTED: ContextVar[dict[int, tuple[torch.Tensor, int | None, torch.Tensor]] | None] = ContextVar("gipc_gray255_converted", default=None)
"""Inside :func:`converted_once`: each converted tensor by ``id``, with the tensor (which keeps its id
taken), its version counter at the time (None for an inference tensor, which has none) and its luminance."""


@contextmanager
def converted_once() -> Iterator[None]:
    """Within it :func:`gray255` converts each tensor once and hands later calls on it the same result,
    so a scene's metrics share their inputs' luminance (read only: no metric changes it in place; a test
    scores each metric alone and all together). A 12 MP pair's three conversions take 0.2 s each, and
    its default scoring made each four times; the survey's extra metrics, seven times more."""
    token = _CONVERTED.set({})
    try:
        yield
    finally:
        _CONVERTED.reset(token)


def matlab_round_(x: torch.Tensor) -> torch.Tensor:
    """Round ``x`` (>= 0) in place, half away from zero like Matlab (``torch.round`` rounds half to even):
    ``floor(x + 0.5)`` in ``x``'s memory, which a 12 MP RGB image's float64 levels fill with 288 MB."""
    return x.add_(0.5).floor_()


def gray255(image: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) image in [0, 1], C = 1 or 3 -> (N, 1, H, W) float64 integers 0..255.

    RGB is quantised to uint8 first and then converted with ``rgb2gray``'s weights and rounding,
    gray is quantised directly: what the toolbox sees after ``imread`` + ``rgb2gray``.
    """
    converted = _CONVERTED.get()
    if converted is None:
        return _gray255(image)
    version = None if image.is_inference() else image._version  # an inference tensor keeps no version counter
    if (seen := converted.get(id(image))) is not None and seen[0] is image and seen[1] == version:
        return seen[2]
    levels = _gray255(image)
    converted[id(image)] = (image, version, levels)
    return levels


def _gray255(image: torch.Tensor) -> torch.Tensor:
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise MetricInputError(f"expected images shaped (N, C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise MetricInputError(f"expected float images in [0, 1], got dtype {image.dtype}")
    if problem := outside_unit_range(image):
        raise MetricInputError(f"expected images in [0, 1], got {problem}")
    levels = matlab_round_(image.to(torch.float64, copy=True).clamp_(0.0, 1.0).mul_(255.0))
    if levels.shape[1] == 1:
        return levels
    weights = torch.tensor(RGB2GRAY, dtype=torch.float64, device=image.device).view(1, 3, 1, 1)
    return matlab_round_(levels.mul_(weights).sum(dim=1, keepdim=True)).clamp_(0.0, 255.0)


def gray255_same(*images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:func:`gray255` of several images that must share one shape (sources, fused, ground truth)."""
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) != 1:
        raise MetricInputError(f"images to compare differ in shape: {sorted(shapes)}")
    return tuple(gray255(image) for image in images)
