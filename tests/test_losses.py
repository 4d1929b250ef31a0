"""L_G and L_D (eq. 6-17) on hand-made tensors, against values worked out by hand."""

import math

import pytest
import torch

from gipc.losses import LossWeights, discriminator_loss, generator_loss, gradient


def weights(**over) -> LossWeights:
    base = dict(lam=9.3, beta1=1.3, beta2=4.5, l1=0.1, l2=1.0, l3=0.1, l4=1.0, l5=0.1, l6=1.0,
                real_label=(1.0, 1.0), fake_label=(0.0, 0.0), laplacian="8-neighbour")
    base.update(over)
    return LossWeights(**base)


def mean_scorer(x: torch.Tensor) -> torch.Tensor:
    """A stand-in discriminator whose score is the image mean: easy to follow by hand."""
    return x.mean(dim=(1, 2, 3)).unsqueeze(1)


def impulse(n: int = 5, at: tuple[int, int] | None = None) -> torch.Tensor:
    """A one at ``at`` (the centre by default) in an n x n zero image."""
    i, j = at or (n // 2, n // 2)
    x = torch.zeros(1, 1, n, n)
    x[..., i, j] = 1.0
    return x


def test_laplacian_kernels_on_an_impulse():
    g8 = gradient(impulse(), "8-neighbour")[0, 0]
    assert g8[2, 2] == -8 and g8[1:4, 1:4].sum() == 0 and g8.abs().sum() == 16
    g4 = gradient(impulse(), "4-neighbour")[0, 0]
    assert g4[2, 2] == -4 and g4[1, 2] == g4[2, 1] == 1 and g4[1, 1] == 0 and g4.abs().sum() == 8


@pytest.mark.parametrize("kind, at, corner", [
    # Reflect mirrors row 1 onto row -1 and column 1 onto column -1: the impulse's images at (-1, 1), (1, -1)
    # and (-1, -1) add to the top row and left column (zero padding would give the plain kernel there).
    ("8-neighbour", (1, 1), [[4, 2, 2], [2, -8, 1], [2, 1, 1]]),
    # Zero padding: the plain kernel (reflect would make (0, 1) and (1, 0) 2).
    ("4-neighbour", (1, 1), [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    # Reflect's row -1 is row 1, zero here: the kernel cut by the border (replicate would make (0, 0) -5).
    ("8-neighbour", (0, 0), [[-8, 1, 0], [1, 1, 0], [0, 0, 0]]),
    ("4-neighbour", (0, 0), [[-4, 1, 0], [1, 0, 0], [0, 0, 0]]),
], ids=["8-reflect-(1,1)", "4-zero-(1,1)", "8-reflect-(0,0)", "4-zero-(0,0)"])
def test_laplacian_borders_on_a_corner_impulse(kind: str, at: tuple[int, int], corner: list[list[int]]) -> None:
    expected = torch.zeros(5, 5)
    expected[:3, :3] = torch.tensor(corner, dtype=torch.float32)
    assert torch.equal(gradient(impulse(at=at), kind)[0, 0], expected)


# F: a one at the corner (0, 0) of a 5x5 zero image, I = F / 2, so F - I = I and grad I = grad F / 2.
# grad F at the corner is the kernel cut by the border (see above): 8-neighbour -8 and three 1s
# (sum -5, squares 67), 4-neighbour -4 and two 1s (sum -2, squares 18); D = image mean.
CORNER_F, CORNER_I = impulse(at=(0, 0)), impulse(at=(0, 0)) / 2
GRAD_SUM, GRAD_SQ = {"8-neighbour": -5.0, "4-neighbour": -2.0}, {"8-neighbour": 67.0, "4-neighbour": 18.0}


@pytest.mark.parametrize("kind", GRAD_SUM)
def test_generator_loss_by_hand(kind: str) -> None:
    grad_sum, grad_sq = GRAD_SUM[kind], GRAD_SQ[kind]
    # Labels a1 = a2 = 1; D(F) = 1/25, D(grad F) = grad_sum / 25; mean (F - I)^2 = (1/2)^2 / 25;
    # mean (grad F - grad I)^2 = (1/2)^2 grad_sq / 25.
    terms = generator_loss(CORNER_F, CORNER_I, mean_scorer, weights(laplacian=kind))
    expected = {
        "adv_int": 0.1 * (1 / 25 - 1) ** 2,
        "adv_gra": 1.0 * (grad_sum / 25 - 1) ** 2,
        "content_int": 9.3 * 1.3 * 0.25 / 25,
        "content_gra": 9.3 * 4.5 * 0.25 * grad_sq / 25,
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-6), name
    assert terms["total"].item() == pytest.approx(sum(expected.values()), rel=1e-6)


@pytest.mark.parametrize("kind", GRAD_SUM)
def test_discriminator_loss_by_hand(kind: str) -> None:
    grad_sum = GRAD_SUM[kind]
    # Fake labels b = 0, real labels c = 1; D(F) = 1/25, D(grad F) = grad_sum / 25, D(I) = (1/2) / 25,
    # D(grad I) = grad_sum / 50.
    terms = discriminator_loss(CORNER_F, CORNER_I, mean_scorer, weights(laplacian=kind))
    expected = {
        "fake_int": 0.1 * (1 / 25) ** 2,
        "fake_gra": 1.0 * (grad_sum / 25) ** 2,
        "real_int": 0.1 * (0.5 / 25 - 1) ** 2,
        "real_gra": 1.0 * (grad_sum / 50 - 1) ** 2,
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-6), name
    assert terms["total"].item() == pytest.approx(sum(expected.values()), rel=1e-6)


def test_discriminator_loss_never_reaches_the_generator():
    fused = impulse().requires_grad_()
    scale = torch.ones((), requires_grad=True)
    total = discriminator_loss(fused, torch.zeros(1, 1, 5, 5), lambda x: scale * mean_scorer(x), weights())["total"]
    total.backward()
    assert fused.grad is None and scale.grad is not None


REAL, FAKE = (0.7, 1.2), (0.0, 0.3)


@pytest.mark.parametrize("loss, bounds", [
    (generator_loss, {"adv_int": REAL, "adv_gra": REAL}),
    (discriminator_loss, {"fake_int": FAKE, "fake_gra": FAKE, "real_int": REAL, "real_gra": REAL}),
], ids=["G", "D"])
def test_soft_labels_are_drawn_inside_their_ranges(loss, bounds):
    """With D = 0 and every weight 1, each adversarial term is label^2: 200 draws of U(low, high) stay inside
    and come within 5% of the width of both ends (missing one end: 0.95^200 = 4e-5 for a fair draw)."""
    w = weights(real_label=REAL, fake_label=FAKE, lam=0.0, l1=1.0, l2=1.0, l3=1.0, l4=1.0, l5=1.0, l6=1.0)
    zero_d = lambda x: torch.zeros(x.shape[0], 1)  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    draws = [loss(impulse(), impulse(), zero_d, w, gen) for _ in range(200)]
    for term, (low, high) in bounds.items():
        labels = [math.sqrt(terms[term].item()) for terms in draws]
        margin = 0.05 * (high - low)
        assert low - 1e-6 <= min(labels) < low + margin and high - margin < max(labels) <= high + 1e-6, term


def test_zero_lambdas_skip_their_terms_exactly():
    """An ablated term is exactly 0 and D never sees its input: with l3 = l5 = 0 (D) or l1 = 0 (G), D
    scores only gradient maps, and the terms left are the ones worked out by hand above."""
    seen = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return mean_scorer(x)

    # Target all zeros: an unskipped real_int would be 0.1 * (0 - 1)^2 and fake_int 0.1 / 625.
    fused, target = impulse(), torch.zeros(1, 1, 5, 5)
    terms = discriminator_loss(fused, target, recording, weights(l3=0.0, l5=0.0))
    assert terms["fake_int"].item() == 0 and terms["real_int"].item() == 0
    assert terms["total"].item() == pytest.approx(1.0)  # real_gra alone: 1.0 * (0 - 1)^2; fake_gra is 0
    assert len(seen) == 2 and not any(torch.equal(x, fused) or x is target for x in seen)
    seen.clear()
    terms = generator_loss(fused, target, recording, weights(l1=0.0, lam=0.0))
    assert terms["adv_int"].item() == 0 and terms["total"].item() == pytest.approx(1.0)  # adv_gra alone
    assert len(seen) == 1 and not torch.equal(seen[0], fused)
    seen.clear()
    terms = generator_loss(fused, target, recording, weights(l1=0.0, l2=0.0, lam=0.0))
    assert terms["total"].item() == 0 and not seen


@pytest.mark.parametrize("field", ["lam", "l1", "l6"])
def test_negative_weights_are_rejected(field):
    with pytest.raises(ValueError, match=f"loss.{field} must be >= 0"):
        weights(**{field: -0.1})
