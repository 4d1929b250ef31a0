"""GIPC-GAN objectives (paper equations 6-17, docs/paper.md section 4) as pure tensor functions.

Both losses take the discriminator as a callable and a :class:`LossWeights` object, so they
are testable without Lightning and every weight comes from ``conf/loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Literal

import kornia
import torch

from gipc.errors import ConfigError

Scorer = Callable[[torch.Tensor], torch.Tensor]
LaplacianKind = Literal["8-neighbour", "4-neighbour"]

_LAPLACIAN_4 = torch.tensor([[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]])


@dataclass(frozen=True)
class LossWeights:
    """Every weight of L_G and L_D; defaults are never used by the code paths, ``conf/loss`` sets them."""

    lam: float
    beta1: float
    beta2: float
    l1: float
    l2: float
    l3: float
    l4: float
    l5: float
    l6: float
    real_label: tuple[float, float]
    fake_label: tuple[float, float]
    laplacian: LaplacianKind
    #: The intensity : gradient knob ``conf/loss`` sets l1, l3, l5 from; kept for logging and grouping.
    ratio: float | None = None

    def __post_init__(self) -> None:
        for f in sorted(fields(self), key=lambda f: f.name != "ratio"):  # ratio first: l1, l3, l5 are copies of it
            value = getattr(self, f.name)
            if isinstance(value, float | int) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"loss.{f.name} must be >= 0, got {value}")
        for name in ("real_label", "fake_label"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"loss.{name} must be a (low, high) range with low <= high, got {(low, high)}")
        if self.laplacian not in ("8-neighbour", "4-neighbour"):
            raise ConfigError(f"loss.laplacian must be '8-neighbour' or '4-neighbour', got {self.laplacian!r}")


def gradient(x: torch.Tensor, kind: LaplacianKind) -> torch.Tensor:
    """Laplacian gradient map of a batch (B, 1, H, W).

    ``8-neighbour``: kornia's unnormalised 3x3 Laplacian (centre -8), reflect border.
    ``4-neighbour``: the FusionGAN / MFF-GAN kernel with zero padding.
    """
    if kind == "8-neighbour":
        return kornia.filters.laplacian(x, 3, border_type="reflect", normalized=False)
    return kornia.filters.filter2d(x, _LAPLACIAN_4.to(x), border_type="constant")


def _draw(bounds: tuple[float, float], generator: torch.Generator | None) -> float:
    """One soft label drawn uniformly from ``bounds`` (fresh each step, paper section 4.2).

    A Python number, not a tensor: copying a CPU scalar to a GPU waits for the GPU's queue to drain,
    ten times a batch (benchmarks/README.md, "On a lent GPU")."""
    low, high = bounds
    u = torch.rand((), generator=generator, device="cpu" if generator is None else generator.device)
    return float(low + (high - low) * u)  # float32 arithmetic, as the labels have always been drawn


def _adversarial(weight: float, discriminator: Scorer, x: torch.Tensor, label: float) -> torch.Tensor:
    """Least-squares term ``weight * mean((D(x) - label)^2)``; exactly 0, without running D, when ablated."""
    if not weight:
        return x.new_zeros(())
    return weight * torch.mean((discriminator(x) - label) ** 2)


def generator_loss(
    fused: torch.Tensor, target: torch.Tensor, discriminator: Scorer, w: LossWeights, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """L_G (eq. 6-12): adversarial intensity + gradient terms and the content loss.

    Returns every term separately (already weighted) plus ``"total"``.
    """
    grad_f, grad_i = _gradients(fused, target, w)
    a1, a2 = (_draw(w.real_label, generator) for _ in range(2))
    return _with_total({
        "adv_int": _adversarial(w.l1, discriminator, fused, a1),
        "adv_gra": _adversarial(w.l2, discriminator, grad_f, a2),
        "content_int": w.lam * w.beta1 * torch.mean((fused - target) ** 2),
        "content_gra": w.lam * w.beta2 * torch.mean((grad_f - grad_i) ** 2),
    })


def discriminator_loss(
    fused: torch.Tensor, target: torch.Tensor, discriminator: Scorer, w: LossWeights, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """L_D (eq. 13-17): fused image and gradient as fake, all-in-focus image and gradient as real.

    ``fused`` is detached here so L_D never reaches the generator.
    """
    fused = fused.detach()
    grad_f, grad_i = _gradients(fused, target, w)
    b1, b2 = (_draw(w.fake_label, generator) for _ in range(2))
    c1, c2 = (_draw(w.real_label, generator) for _ in range(2))
    return _with_total({
        "fake_int": _adversarial(w.l3, discriminator, fused, b1),
        "fake_gra": _adversarial(w.l4, discriminator, grad_f, b2),
        "real_int": _adversarial(w.l5, discriminator, target, c1),
        "real_gra": _adversarial(w.l6, discriminator, grad_i, c2),
    })


def _gradients(fused: torch.Tensor, target: torch.Tensor, w: LossWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient maps both losses compare, with the Laplacian ``conf/loss`` picks."""
    return gradient(fused, w.laplacian), gradient(target, w.laplacian)


def _with_total(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weighted terms and their sum, the loss that is optimised, under ``"total"``."""
    return {**terms, "total": sum(terms.values())}
