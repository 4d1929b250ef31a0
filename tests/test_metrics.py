"""Fusion metrics (gipc.metrics) against hand-computed values, closed forms and a literal toolbox port."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure, structural_similarity_index_measure

from gipc.choices import expand, unknown
from gipc.metrics import (
    EXTRA_NAMES,
    METRIC_NAMES,
    QABF,
    REFERENCE_NAMES,
    FusionMetrics,
    MetricInputError,
    correlation_coefficient,
    entropy,
    fusion_metrics,
    fusion_msssim,
    gray255,
    msssim,
    msssim_scales,
    psnr,
    qabf,
    qcb,
    qm,
    qmi,
    qncie,
    qp,
    qsf,
    qy,
    spatial_frequency,
    ssim,
    standard_deviation,
)
from gipc.metrics.base import PerImageMean
from gipc.metrics.luminance import converted_once
from gipc.metrics.correlation import CorrelationCoefficient
from gipc.metrics.msssim import _warn_fewer_scales
from gipc.metrics.qabf import sobel, sources_qabf
import gipc.metrics.phase_congruency
from gipc.metrics.phase_congruency import matlab_median, phase_congruency
from gipc.windows import convolved_sums, gaussian_taps, window_sums

# Q^AB/F constants of the MFIF toolbox (metricXydeas.m), restated here so the tests check the defaults.
GAMMA_G, K_G, SIGMA_G = 0.9994, -15.0, 0.5
GAMMA_A, K_A, SIGMA_A = 0.9879, -22.0, 0.8


def levels(array: np.ndarray) -> torch.Tensor:
    """Integer grey levels (H, W) or (H, W, 3) -> (1, C, H, W) float64 in [0, 1], as a uint8 file reads."""
    t = torch.as_tensor(np.asarray(array, dtype=np.float64))
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    return (t / 255.0).unsqueeze(0)


def textured(seed: int, shape: tuple[int, ...] = (1, 1, 32, 32)) -> torch.Tensor:
    """Random integer-level image: every pixel has a nonzero gradient almost surely."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.float64) / 255.0


def read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int64)


# ---------------------------------------------------------------- luminance
def test_gray255_matches_matlab_rgb2gray_on_primaries() -> None:
    # Matlab: rgb2gray(uint8([255 0 0])) = 76, green 150, blue 29, white 255, grey 128 stays 128.
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [128, 128, 128]]])
    assert gray255(levels(rgb)).flatten().tolist() == [76.0, 150.0, 29.0, 255.0, 128.0]


def test_gray255_rounds_half_away_from_zero_like_matlab() -> None:
    # 2.5 and 3.5 grey levels: Matlab rounds both up; round-half-to-even would give 2 and 4.
    x = torch.tensor([2.5, 3.5, 254.6], dtype=torch.float64).view(1, 1, 1, 3) / 255.0
    assert gray255(x).flatten().tolist() == [3.0, 4.0, 255.0]


def test_gray255_uses_matlabs_exact_weights_not_the_rounded_ones() -> None:
    # Red 189: Matlab's 0.298936021293775 * 189 = 56.4989 -> 56; the rounded 0.299 * 189 = 56.511 would give 57.
    assert gray255(levels(np.array([[[189, 0, 0]]]))).item() == 56.0


def test_gray255_clamps_values_within_the_tolerated_half_level() -> None:
    # Half a grey level outside [0, 1] is tolerated; 255.5 would round to 256 without the clamp to [0, 1].
    edge = torch.tensor([1 + 0.5 / 255, 1 + 0.4 / 255, -0.5 / 255], dtype=torch.float64).view(1, 1, 1, 3)
    assert gray255(edge).flatten().tolist() == [255.0, 255.0, 0.0]
    # RGB red at the edge: level 255 -> 0.298936 * 255 = 76.2 -> 76 (level 256 would give 76.5 -> 77).
    assert gray255(torch.tensor([1 + 0.5 / 255, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)).item() == 76.0


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.full((1, 1, 8, 8), 200.0), r"\[0, 1\]"),  # 0..255 passed by mistake
        (torch.full((1, 1, 8, 8), -1.0), "from_net"),  # network range
        (torch.full((1, 1, 8, 8), float("nan")), r"\[0, 1\]"),
        # Just outside the tolerated half grey level either side (gipc.color.RANGE_SLACK).
        (torch.full((1, 1, 8, 8), 1 + 0.6 / 255), r"\[0, 1\]"),
        (torch.full((1, 1, 8, 8), -0.6 / 255), r"\[0, 1\]"),
        (torch.zeros(1, 2, 8, 8), "C = 1 or 3"),
        (torch.zeros(8, 8), "C = 1 or 3"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "float"),
    ],
)
def test_bad_inputs_raise_one_line_value_errors(image: torch.Tensor, message: str) -> None:
    with pytest.raises(MetricInputError, match=message) as info:
        entropy(image)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_sources_and_fused_must_share_a_shape() -> None:
    with pytest.raises(MetricInputError, match="differ in shape"):
        qabf(textured(0, (1, 1, 16, 16)), textured(1, (1, 1, 16, 16)), textured(2, (1, 1, 16, 15)))


# ---------------------------------------------------------------- EN, SF, SD, CC
def test_entropy_of_two_equal_levels_is_one_bit() -> None:
    half = np.zeros((6, 8))
    half[:, 4:] = 255
    assert entropy(levels(half)).item() == pytest.approx(1.0, abs=1e-12)


def test_entropy_of_four_equal_levels_is_two_bits_and_flat_is_zero() -> None:
    four = np.repeat(np.array([[0, 1, 2, 3]]), 5, axis=0) * 60
    assert entropy(levels(four)).item() == pytest.approx(2.0, abs=1e-12)
    assert entropy(levels(np.full((5, 5), 9))).item() == 0.0


def test_entropy_has_one_bin_per_grey_level() -> None:
    # Levels 0..3 equally often: log2(4) = 2 bits; each of the 256 levels once: log2(256) = 8 bits.
    assert entropy(levels(np.tile(np.arange(4), (3, 1)))).item() == pytest.approx(2.0, abs=1e-12)
    assert entropy(levels(np.arange(256).reshape(16, 16))).item() == pytest.approx(8.0, abs=1e-12)


def test_spatial_frequency_of_a_ramp_by_hand() -> None:
    # y = 10 j + 3 i on 4x5: 4*4 horizontal steps of 10, 3*5 vertical steps of 3, divided by M*N = 20.
    i, j = np.mgrid[0:4, 0:5]
    rf2 = 4 * 4 * 10**2 / 20  # 80
    cf2 = 3 * 5 * 3**2 / 20  # 6.75
    assert spatial_frequency(levels(10 * j + 3 * i)).item() == pytest.approx(math.sqrt(rf2 + cf2), abs=1e-12)


def test_standard_deviation_is_the_population_one() -> None:
    # Half 0, half 255: population SD is exactly 127.5 (the sample SD would be 127.5 * sqrt(n / (n - 1))).
    half = np.zeros((4, 6))
    half[:2] = 255
    assert standard_deviation(levels(half)).item() == pytest.approx(127.5, abs=1e-12)


def test_correlation_of_fused_equal_to_a_is_half_of_one_plus_r_ab() -> None:
    a, b = textured(0), textured(1)
    r_ab = np.corrcoef((a * 255).flatten().numpy(), (b * 255).flatten().numpy())[0, 1]
    assert correlation_coefficient(a, b, a).item() == pytest.approx((1 + r_ab) / 2, abs=1e-12)


def test_correlation_with_a_flat_image_is_zero_not_nan() -> None:
    a, b = textured(0), textured(1)
    assert correlation_coefficient(a, b, torch.full_like(a, 0.5)).item() == 0.0


# ---------------------------------------------------------------- Q^AB/F
def _qabf_reference(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """metricXydeas.m line by line, with explicit loops for the zero-padded Sobel correlation."""
    flt1 = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    flt2 = [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]

    def filter2(kernel: list[list[int]], img: np.ndarray) -> np.ndarray:
        h, w = img.shape
        out = np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                acc = 0.0
                for dy in range(3):
                    for dx in range(3):
                        yy, xx = y + dy - 1, x + dx - 1
                        if 0 <= yy < h and 0 <= xx < w:
                            acc += kernel[dy][dx] * img[yy, xx]
                out[y, x] = acc
        return out

    def edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx, gy = filter2(flt1, img), filter2(flt2, img)
        g = np.sqrt(gx * gx + gy * gy)
        gx = gx + (gx == 0) * 0.00001
        return g, np.arctan(gy / gx)

    fuse_g, fuse_a = edges(f.astype(np.float64))
    q, w = [], []
    for src in (a, b):  # the toolbox guards fuseG in place during the first pass; the second sees it guarded
        g, ang = edges(src.astype(np.float64))
        bimap = g > fuse_g
        g = g + (g == 0) * 0.00001
        buffer1 = fuse_g / g
        fuse_g = fuse_g + (fuse_g == 0) * 0.00001
        buffer2 = g / fuse_g
        ratio = bimap * buffer1 + (1 - bimap) * buffer2
        align = 1 - np.abs(ang - fuse_a) * 2 / np.pi
        q.append(GAMMA_G / (1 + np.exp(K_G * (ratio - SIGMA_G))) * GAMMA_A / (1 + np.exp(K_A * (align - SIGMA_A))))
        w.append(g)
    return float(np.sum(q[0] * w[0] + q[1] * w[1]) / np.sum(w[0] + w[1]))


def _case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b, f = (rng.integers(0, 256, (5, 5)) for _ in range(3))
    return a, b, f


@pytest.mark.parametrize("case", ["random", "flat_fused_block", "flat_source", "fused_is_a"])
def test_qabf_5x5_matches_a_literal_loop_port_of_the_toolbox(case: str) -> None:
    a, b, f = _case(7)
    if case == "flat_fused_block":
        f[:3, :3] = 0  # zero fused strength where the sources have edges: exercises the 1e-5 guards
    if case == "flat_source":
        a[:] = 0
    if case == "fused_is_a":
        f = a.copy()
    got = qabf(levels(a), levels(b), levels(f)).item()
    assert got == pytest.approx(_qabf_reference(a, b, f), abs=1e-12)


def _qabf_out_of_place(ys: list[torch.Tensor], yf: torch.Tensor) -> torch.Tensor:
    """sources_qabf's formulas on 0..255 luminance, each step a new tensor (as metricXydeas.m reads)."""

    def edges(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gx, gy = sobel(y)
        return torch.sqrt(gx.square() + gy.square()), torch.atan(gy / torch.where(gx == 0, 1e-5, gx))

    def sigmoid(x: torch.Tensor, gamma: float, k: float, sigma: float) -> torch.Tensor:
        return gamma / (1.0 + torch.exp(k * (x - sigma)))

    g_f, angle_f = edges(yf)
    g_f_safe = torch.where(g_f == 0, 1e-5, g_f)
    total, weights = 0.0, 0.0
    for n, y in enumerate(ys):
        seen = g_f if n == 0 else g_f_safe
        g, angle = edges(y)
        g_safe = torch.where(g == 0, 1e-5, g)
        ratio = torch.where(g > seen, seen / g_safe, g_safe / g_f_safe)
        alignment = 1.0 - (angle - angle_f).abs() * 2.0 / math.pi
        q = sigmoid(ratio, GAMMA_G, K_G, SIGMA_G) * sigmoid(alignment, GAMMA_A, K_A, SIGMA_A)
        total, weights = total + q * g_safe, weights + g_safe
    return total.sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3))


def test_sobel_through_opencv_is_torchs_convolution_on_integer_luminance() -> None:
    """The CPU's OpenCV path and torch's convolution (taken with gradients) give the same responses to
    the bit on 0..255 levels; zero padding: a last column of 255 after 0s reads 0 there (0 both sides of
    it; a replicated border would read 1020) and 4 * 255 = 1020 beside it."""
    y = torch.randint(0, 256, (2, 1, 23, 31), generator=torch.Generator().manual_seed(10)).double()
    fast = sobel(y)
    exact = sobel(y.clone().requires_grad_())
    assert all(torch.equal(f, e.detach()) for f, e in zip(fast, exact))
    column = torch.zeros(1, 1, 5, 4, dtype=torch.float64)
    column[..., -1] = 255
    gx, _ = sobel(column)
    assert gx[0, 0, 2, -1].item() == 0 and gx[0, 0, 2, -2].item() == 1020


def test_qabfs_in_place_arithmetic_is_its_formulas_to_the_bit() -> None:
    """sources_qabf reuses planes in place (a 12 MP pair's peak); its scores equal the formulas written
    one new tensor a step, to the bit, for pairs and a sequence of three, with flat areas (the guards)."""
    generator = torch.Generator().manual_seed(8)
    images = [torch.rand(2, 3, 40, 52, generator=generator, dtype=torch.float64) for _ in range(4)]
    images[0][..., :12, :20] = 0.5  # a flat block: zero strengths, guarded
    images[3][..., 20:, 30:] = 0.25
    for sources, fused in (([images[0], images[1]], images[3]), ([images[0], images[1], images[2]], images[3]), ([images[0], images[1]], images[0])):
        expected = _qabf_out_of_place([gray255(x) for x in sources], gray255(fused))
        assert torch.equal(sources_qabf(sources, fused), expected)


def test_qabf_of_perfect_fusion_is_the_product_of_the_two_sigmoids_at_ratio_1_angle_0() -> None:
    a = textured(3)
    expected = GAMMA_G / (1 + math.exp(K_G * (1 - SIGMA_G))) * GAMMA_A / (1 + math.exp(K_A * (1 - SIGMA_A)))
    # By hand: 0.9994 / (1 + e^-7.5) = 0.99885 and 0.9879 / (1 + e^-4.4) = 0.97592.
    assert expected == pytest.approx(0.99885 * 0.97592, abs=1e-5)
    assert qabf(a, a, a).item() == pytest.approx(expected, abs=1e-12)


def test_qabf_of_a_black_fused_image_is_about_zero() -> None:
    # Black, not mid-grey: with the toolbox's zero padding a flat grey image has edges along its border.
    a, b = textured(4), textured(5)
    strength_term_at_ratio_0 = GAMMA_G / (1 + math.exp(K_G * (0 - SIGMA_G)))  # 5.5e-4
    assert 0.0 <= qabf(a, b, torch.zeros_like(a)).item() <= strength_term_at_ratio_0


def test_qabf_constants_are_keyword_arguments_and_checked_on_construction() -> None:
    a, b, f = textured(0), textured(1), textured(2)
    base = qabf(a, b, f).item()
    assert qabf(a, b, f, gamma_g=GAMMA_G / 2).item() == pytest.approx(base / 2, rel=1e-12)
    metric = QABF(gamma_g=GAMMA_G / 2)
    metric.update(a, b, f)
    assert metric.compute().item() == pytest.approx(base / 2, rel=1e-12)
    with pytest.raises(TypeError):
        QABF(gama_g=1.0)


def test_qmi_by_hand_one_bit_shared_and_nothing_shared() -> None:
    """F = A, a half-black half-white A (1 bit) and a flat B: MI(A, F) = 1 over H(A) + H(F) = 2, and
    the flat B shares nothing, its term counted 0: Q_MI = 2 (1/2 + 0) = 1."""
    half = np.zeros((6, 8))
    half[:, 4:] = 255
    assert qmi(levels(half), levels(np.full((6, 8), 40)), levels(half)).item() == pytest.approx(1.0, abs=1e-12)


def test_qmi_by_hand_four_levels_read_through_two() -> None:
    """A holds 4 equally common levels (2 bits); F = B keeps which half each pixel lies in (1 bit):
    MI(A, F) = 1, MI(B, F) = 1, so Q_MI = 2 (1 / (2 + 1) + 1 / (1 + 1)) = 5/3."""
    four = np.repeat(np.array([[0, 1, 2, 3]]), 5, axis=0) * 85
    two = np.where(four > 100, 255, 0)
    assert qmi(levels(four), levels(two), levels(two)).item() == pytest.approx(5 / 3, abs=1e-12)


def test_qmi_reads_levels_not_values_each_image_stretched_to_its_own_range() -> None:
    """Mutual information sees which levels go together, not which they are: an inverted F, or a
    source of half the contrast (stretched back to 0..255 first, as the toolbox's normalize1 does),
    scores the same; identical images score the maximum, 2."""
    a, b = textured(1, (1, 1, 20, 24)), textured(2, (1, 1, 20, 24))
    even = torch.floor(a * 255 / 2) * 2 / 255  # even levels: halving them is exact
    assert qmi(even, b, 1 - even).item() == pytest.approx(qmi(even, b, even).item(), abs=1e-12)
    assert qmi(even / 2 + 0.25, b, even).item() == pytest.approx(qmi(even, b, even).item(), abs=1e-12)
    assert qmi(a, a, a).item() == pytest.approx(2.0, abs=1e-12)


def _halves() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left/right halves, top/bottom halves and their exclusive or: each pair independent, 1 bit each."""
    rows, columns = np.indices((8, 8))
    a, b = (columns >= 4) * 255, (rows >= 4) * 255
    return a, b, (a != b) * 255


def test_qncie_of_three_unrelated_images_is_one_less_log_3_over_log_256() -> None:
    """No pair shares information: R = I, each eigenvalue a third, Q_NCIE = 1 - log 3 / log 256."""
    a, b, xor = _halves()
    assert qncie(levels(a), levels(b), levels(xor)).item() == pytest.approx(1 - math.log(3) / math.log(256), abs=1e-12)


def test_qncie_by_hand_when_f_copies_a_one_bit_source() -> None:
    """F = A (1 bit, so NCC(A, F) = 1/8), B unrelated to both: R's eigenvalues are 1 and 1 +- 1/8."""
    a, b, _ = _halves()
    expected = 1 + sum(r / 3 * math.log(r / 3, 256) for r in (1.0, 1.125, 0.875))
    assert qncie(levels(a), levels(b), levels(a)).item() == pytest.approx(expected, abs=1e-12)


def test_qncie_of_identical_images_holding_every_level_equally_is_one() -> None:
    every = levels(np.arange(256).repeat(4).reshape(32, 32))
    assert qncie(every, every, every).item() == pytest.approx(1.0, abs=1e-12)


def test_qsf_by_hand_on_2x2_images() -> None:
    """A = [[0, 10], [0, 10]] changes along rows, B = [[0, 0], [20, 20]] along columns, F = A. Squared
    differences (rows, columns, main and secondary diagonal): F 200, 0, 100, 100; the reference, the
    larger of A's and B's at each place, 200, 800, 400, 400; diagonals weigh sqrt(2) / 2."""
    a, b = np.array([[0, 10], [0, 10]]), np.array([[0, 0], [20, 20]])
    w = math.sqrt(2) / 2
    expected = math.sqrt((200 + w * 200) / (1000 + w * 800)) - 1
    assert qsf(levels(a), levels(b), levels(a)).item() == pytest.approx(expected, abs=1e-12)


def test_qsf_is_zero_for_the_sources_larger_differences_and_minus_one_for_a_flat_fusion() -> None:
    """F = A where B is flat holds every difference the reference holds: 0. A flat F holds none: -1."""
    a = textured(8, (1, 1, 16, 20))
    assert qsf(a, torch.full_like(a, 0.3), a).item() == pytest.approx(0.0, abs=1e-12)
    assert qsf(a, textured(9, (1, 1, 16, 20)), torch.full_like(a, 0.3)).item() == pytest.approx(-1.0, abs=1e-12)


def _yang_by_hand(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Q_Y of 7 x 7 integer images (one window) written out with sums: Yang et al.'s rule on SSIM of a
    Gaussian window (sigma 1.5) with constants 2e-16."""
    r = np.arange(7) - 3
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()

    def stats(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
        mx, my = (w * x).sum(), (w * y).sum()
        vx, vy, cxy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum(), (w * (x - mx) * (y - my)).sum()
        return (2 * mx * my + 2e-16) * (2 * cxy + 2e-16) / ((mx**2 + my**2 + 2e-16) * (vx + vy + 2e-16)), vx, vy

    s_ab, v_a, v_b = stats(a, b)
    s_af, s_bf = stats(a, f)[0], stats(b, f)[0]
    if s_ab >= 0.75:
        return v_a / (v_a + v_b) * s_af + v_b / (v_a + v_b) * s_bf
    return max(s_af, s_bf)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qy_of_one_window_is_yangs_rule_written_out(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(40, 200, (7, 7)).astype(float)
    b = np.clip(a + rng.integers(-12, 13, (7, 7)), 0, 255) if seed else rng.integers(0, 256, (7, 7)).astype(float)  # alike, or not
    f = np.clip(a + rng.integers(-30, 31, (7, 7)), 0, 255)
    assert qy(levels(a), levels(b), levels(f)).item() == pytest.approx(_yang_by_hand(a, b, f), rel=1e-9)


def test_qy_of_flat_windows_is_what_exact_arithmetic_gives() -> None:
    """Saturated areas: the toolbox's one-pass variance leaves rounding where a flat window has none
    and scores ratios of rounding errors (10^5 on Lytro pairs). Exactly: two flat windows of one
    level are alike (SSIM 1), weighed half and half; a flat F against a textured source keeps
    nothing of its structure (SSIM 0)."""
    flat, textured_a = np.full((9, 9), 255.0), np.random.default_rng(3).integers(0, 256, (9, 9)).astype(float)
    assert qy(levels(flat), levels(flat), levels(flat)).item() == pytest.approx(1.0, abs=1e-12)
    darker = np.full((9, 9), 254.0)  # alike in structure, the luminance term 2 * 255 * 254 / (255^2 + 254^2)
    assert qy(levels(flat), levels(darker), levels(flat)).item() == pytest.approx(0.5 + 0.5 * 2 * 255 * 254 / (255**2 + 254**2), abs=1e-12)
    assert qy(levels(textured_a), levels(flat), levels(flat)).item() == pytest.approx(1.0, abs=1e-12)  # not alike: the better, B's
    assert abs(qy(levels(textured_a), levels(textured_a), levels(flat)).item()) < 1e-9


def test_qy_refuses_images_smaller_than_its_window() -> None:
    with pytest.raises(MetricInputError, match="Q_Y needs images of at least 7x7 px, got 6x9"):
        qy(*(levels(np.zeros((6, 9))) for _ in range(3)))


def _chen_blum_port(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """metricChenBlum.m line by line in numpy and scipy, on (H, W) 0..255 integer images."""
    from scipy.signal import correlate2d

    def normalize1(x: np.ndarray) -> np.ndarray:
        low, high = x.min(), x.max()
        return x if low == high == 0 else np.floor((x - low) / (high - low) * 255 + 0.5)

    hang, lie = a.shape
    u, v = np.meshgrid((np.arange(lie) - lie // 2) * (2 / lie), (np.arange(hang) - hang // 2) * (2 / hang))  # freqspace(..., 'meshgrid')
    r = np.hypot(lie / 30 * u, hang / 30 * v)
    sd = np.exp(-((r / 15.3870) ** 2)) - 0.7622 * np.exp(-((r / 1.3456) ** 2))
    x, y = np.meshgrid(np.arange(-15, 16), np.arange(-15, 16))

    def gaussian(sigma: float) -> np.ndarray:
        return np.exp(-(x * x + y * y) / (2 * sigma * sigma)) / (2 * np.pi * sigma * sigma)

    def masked(im: np.ndarray) -> np.ndarray:
        filtered = np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(im)) * sd))
        c = np.abs(correlate2d(filtered, gaussian(2), mode="same") / correlate2d(filtered, gaussian(4), mode="same") - 1)
        return c**3 / (c**2 + 1e-4)

    c1, c2, cf = (masked(normalize1(im.astype(float))) for im in (a, b, f))
    q1, q2 = np.where(c1 < cf, c1 / cf, cf / c1), np.where(c2 < cf, c2 / cf, cf / c2)
    return float(np.mean(c1 * c1 / (c1 * c1 + c2 * c2) * q1 + c2 * c2 / (c1 * c1 + c2 * c2) * q2))


@pytest.mark.parametrize("shape", [(37, 45), (40, 32)])
def test_qcb_matches_a_line_by_line_port_of_the_toolbox(shape: tuple[int, int]) -> None:
    """Odd and even sides (Matlab's freqspace grid is asymmetric for even ones: the filtered image is complex)."""
    rng = np.random.default_rng(sum(shape))
    scene = np.asarray(Image.fromarray(rng.integers(0, 256, (shape[0] // 4, shape[1] // 4)).astype(np.uint8)).resize(shape[::-1], Image.BICUBIC), dtype=float)
    a = np.where(np.arange(shape[1]) < shape[1] // 2, scene, np.asarray(Image.fromarray(scene.astype(np.uint8)).resize((8, 8)).resize(shape[::-1]), dtype=float))
    b = np.where(np.arange(shape[1]) >= shape[1] // 2, scene, np.round(scene * 0.5 + 60))
    f = np.round((a + b) / 2)
    assert qcb(levels(a), levels(b), levels(f)).item() == pytest.approx(_chen_blum_port(a, b, f), rel=1e-10)


def test_qcb_is_one_for_a_copy_of_identical_sources_and_zero_for_a_flat_fusion() -> None:
    a, b = textured(6, (1, 1, 33, 40)), textured(7, (1, 1, 33, 40))
    assert qcb(a, a, a).item() == pytest.approx(1.0, abs=1e-12)
    assert qcb(a, b, torch.full_like(a, 0.5)).item() == 0.0  # no contrast kept, not 0 / 0
    assert 0.0 < qcb(a, b, (a + b) / 2).item() < qcb(a, b, a).item() < 1.0


def _pww_port(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """metricPWW.m line by line, with matlabPyrTools' buildWpyr(im, 2, 'haar') as its Matlab
    fallback computes it: corrDn flips the filter, rconv2 pads with reflected copies (reflect1) and
    convolves ('valid'), then samples from START by STEP up to the image's size."""
    from scipy.signal import convolve2d

    def rconv2(large: np.ndarray, small: np.ndarray) -> np.ndarray:
        sy, sx = small.shape
        ly, lx = large.shape
        sy2, sx2 = (sy - 1) // 2, (sx - 1) // 2
        rows = np.concatenate([large[sy - sy2 - 1:0:-1] if sy - sy2 > 1 else large[:0], large, large[ly - 2:ly - sy2 - 2:-1] if sy2 else large[:0]])
        padded = np.concatenate([rows[:, sx - sx2 - 1:0:-1] if sx - sx2 > 1 else rows[:, :0], rows, rows[:, lx - 2:lx - sx2 - 2:-1] if sx2 else rows[:, :0]], axis=1)
        return convolve2d(padded, small, mode="valid")

    def corr_dn(im: np.ndarray, filt: np.ndarray, step: tuple[int, int], start: tuple[int, int]) -> np.ndarray:
        return rconv2(im, filt[::-1, ::-1])[start[0] - 1::step[0], start[1] - 1::step[1]]

    lo_f = np.array([[1.0], [1.0]]) / np.sqrt(2)  # namedFilter('haar')
    hi_f = np.array([[-1.0], [1.0]]) / np.sqrt(2)  # modulateFlip: lfilt(ind) .* (-1).^(ind - sz2)

    def bands(im: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for _ in range(2):
            lo, hi = corr_dn(im, lo_f, (2, 1), (2, 1)), corr_dn(im, hi_f, (2, 1), (2, 1))
            out.append((corr_dn(hi, lo_f.T, (1, 2), (1, 2)), corr_dn(lo, hi_f.T, (1, 2), (1, 2)), corr_dn(hi, hi_f.T, (1, 2), (1, 2))))
            im = corr_dn(lo, lo_f.T, (1, 2), (1, 2))
        return out

    q = []
    for (h1, v1, d1), (h2, v2, d2), (hf, vf, df) in zip(bands(a.astype(float)), bands(b.astype(float)), bands(f.astype(float))):
        w1, w2 = h1 * h1 + v1 * v1 + d1 * d1, h2 * h2 + v2 * v2 + d2 * d2
        ep1 = np.exp(-abs(h1 - hf)) + np.exp(-abs(v1 - vf)) + np.exp(-abs(d1 - df))
        ep2 = np.exp(-abs(h2 - hf)) + np.exp(-abs(v2 - vf)) + np.exp(-abs(d2 - df))
        q.append((ep1 * w1 + ep2 * w2).sum() / (w1 + w2).sum())
    return float(q[0] ** (2 / 3) * q[1] ** (1 / 3))


def _focus_pair(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random scene, A sharp on the left half and blurred on the right, B the reverse and
    darker, F their rounded mean: integer images with edges, flat areas and both kinds of fusion error."""
    rng = np.random.default_rng(sum(shape))
    scene = np.asarray(Image.fromarray(rng.integers(0, 256, (shape[0] // 4, shape[1] // 4)).astype(np.uint8)).resize(shape[::-1], Image.BICUBIC), dtype=float)
    blurred = np.asarray(Image.fromarray(scene.astype(np.uint8)).resize((8, 8)).resize(shape[::-1]), dtype=float)
    left = np.arange(shape[1]) < shape[1] // 2
    a = np.where(left, scene, blurred)
    b = np.where(left, np.round(blurred * 0.5 + 60), np.round(scene * 0.5 + 60))
    return a, b, np.round((a + b) / 2)


@pytest.mark.parametrize("shape", [(37, 45), (40, 32)])
def test_qm_matches_a_line_by_line_port_of_the_toolbox(shape: tuple[int, int]) -> None:
    """Odd and even sides: the toolbox's sampling drops an odd last row or column at each level."""
    a, b, f = _focus_pair(shape)
    assert qm(levels(a), levels(b), levels(f)).item() == pytest.approx(_pww_port(a, b, f), rel=1e-12)


def test_qm_is_three_where_f_keeps_every_detail_whatever_its_brightness() -> None:
    """EP is 3 where F's detail coefficients equal a source's; Haar details are blind to an offset.
    A flat B holds no detail and weighs nothing; F = (A + B) / 2 halves A's details and scores less."""
    a = textured(10, (1, 1, 24, 28)) * 0.8
    flat = torch.full_like(a, 0.4)
    assert qm(a, a, a).item() == pytest.approx(3.0, abs=1e-12)
    assert qm(a, flat, a + 40 / 255).item() == pytest.approx(3.0, abs=1e-12)
    assert qm(a, flat, (a + flat) / 2).item() < qm(a, flat, a).item()
    assert qm(flat, flat, a).item() == 3.0  # no detail in either source: nothing to lose (0 / 0 in the toolbox)


def test_qm_refuses_images_too_small_for_two_levels() -> None:
    with pytest.raises(MetricInputError, match="Q_M needs images of at least 4x4 px, got 3x9"):
        qm(*(levels(np.zeros((3, 9))) for _ in range(3)))


def _zhao_port(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """metricZhao.m (pc_assessFusion, myphasecong3, correlation_coeffcient) line by line in numpy and
    scipy, on (H, W) 0..255 integer images."""
    from scipy.signal import correlate2d

    def lowpassfilter(rows: int, cols: int) -> np.ndarray:
        x = (np.ones((rows, 1)) * np.arange(1, cols + 1) - (cols // 2 + 1)) / cols
        y = (np.arange(1, rows + 1)[:, None] * np.ones((1, cols)) - (rows // 2 + 1)) / rows
        return np.fft.fftshift(1.0 / (1.0 + (np.sqrt(x**2 + y**2) / 0.45) ** 30))

    def myphasecong3(im: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nscale, norient, eps = 4, 6, 1e-4
        rows, cols = im.shape
        imagefft = np.fft.fft2(im)
        xrange = np.arange(-(cols - 1) / 2, (cols - 1) / 2 + 1) / (cols - 1) if cols % 2 else np.arange(-cols / 2, cols / 2) / cols
        yrange = np.arange(-(rows - 1) / 2, (rows - 1) / 2 + 1) / (rows - 1) if rows % 2 else np.arange(-rows / 2, rows / 2) / rows
        x, y = np.meshgrid(xrange, yrange)
        radius = np.sqrt(x**2 + y**2)
        radius[rows // 2, cols // 2] = 1
        theta = np.fft.ifftshift(np.arctan2(-y, x))
        radius = np.fft.ifftshift(radius)
        sintheta, costheta = np.sin(theta), np.cos(theta)
        lp = lowpassfilter(rows, cols)
        log_gabor = []
        for s in range(nscale):
            fo = 1.0 / (3 * 2.1**s)
            g = np.exp(-(np.log(radius / fo) ** 2) / (2 * np.log(0.55) ** 2)) * lp
            g[0, 0] = 0
            log_gabor.append(g)
        spread = []
        for o in range(norient):
            angl = o * np.pi / norient
            ds, dc = sintheta * np.cos(angl) - costheta * np.sin(angl), costheta * np.cos(angl) + sintheta * np.sin(angl)
            spread.append(np.exp(-np.abs(np.arctan2(ds, dc)) ** 2 / (2 * (np.pi / norient / 1.2) ** 2)))
        total_energy, total_sum_an = np.zeros((rows, cols)), np.zeros((rows, cols))
        covx2, covy2, covxy = np.zeros((rows, cols)), np.zeros((rows, cols)), np.zeros((rows, cols))
        for o in range(norient):
            angl = o * np.pi / norient
            sum_e, sum_o, sum_an, energy = (np.zeros((rows, cols)) for _ in range(4))
            eo, ifft_filters = [], []
            for s in range(nscale):
                filt = log_gabor[s] * spread[o]
                ifft_filters.append(np.real(np.fft.ifft2(filt)) * np.sqrt(rows * cols))
                eo.append(np.fft.ifft2(imagefft * filt))
                an = np.abs(eo[s])
                sum_an, sum_e, sum_o = sum_an + an, sum_e + eo[s].real, sum_o + eo[s].imag
                if s == 0:
                    em_n, max_an = (filt**2).sum(), an
                else:
                    max_an = np.maximum(max_an, an)
            x_energy = np.sqrt(sum_e**2 + sum_o**2) + eps
            mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
            for s in range(nscale):
                e, od = eo[s].real, eo[s].imag
                energy = energy + e * mean_e + od * mean_o - np.abs(e * mean_o - od * mean_e)
            noise_power = -np.median(np.abs(eo[0]) ** 2) / np.log(0.5) / em_n
            est_sum_an2 = sum(fi**2 for fi in ifft_filters).sum()
            est_sum_ai_aj = sum(ifft_filters[i] * ifft_filters[j] for i in range(nscale - 1) for j in range(i + 1, nscale)).sum()
            tau = np.sqrt((2 * noise_power * est_sum_an2 + 4 * noise_power * est_sum_ai_aj) / 2)
            t = (tau * np.sqrt(np.pi / 2) + 2.0 * np.sqrt((2 - np.pi / 2) * tau**2)) / 1.7
            energy = np.maximum(energy - t, 0)
            weight = 1.0 / (1 + np.exp((0.5 - sum_an / (max_an + eps) / nscale) * 10))
            total_sum_an, total_energy = total_sum_an + sum_an, total_energy + weight * energy
            pc = weight * energy / sum_an
            covx, covy = pc * np.cos(angl), pc * np.sin(angl)
            covx2, covy2, covxy = covx2 + covx**2, covy2 + covy**2, covxy + covx * covy
        covx2, covy2, covxy = covx2 / (norient / 2), covy2 / (norient / 2), covxy / norient
        denom = np.sqrt(covxy**2 + (covx2 - covy2) ** 2) + eps
        return total_energy / (total_sum_an + eps), (covy2 + covx2 + denom) / 2, (covy2 + covx2 - denom) / 2

    r = np.arange(11) - 5
    window = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()

    def filter2(x: np.ndarray) -> np.ndarray:
        return correlate2d(x, window, mode="same")

    def correlation_coeffcient(im1, im2, im_max, imf, mask1, mask2, mask3) -> float:
        res = []
        for im, mask in ((im1, mask1), (im2, mask2), (im_max, mask3)):
            im = mask * im
            mu, muf = filter2(im), filter2(imf)
            sigma_sq, sigmaf_sq, sigmaf = filter2(im * im) - mu * mu, filter2(imf * imf) - muf * muf, filter2(im * imf) - mu * muf
            res.append(np.where(mask, (sigmaf + 1e-4) / (np.sqrt(np.abs(sigma_sq * sigmaf_sq)) + 1e-4), 0))
        return float(np.max(res, axis=0).sum() / mask3.sum())

    (pc1, big1, small1), (pc2, big2, small2), (pcf, bigf, smallf) = (myphasecong3(im.astype(float)) for im in (a, b, f))
    mask = pc1 > pc2
    masks = (pc1 > 0.1, pc2 > 0.1, np.where(mask, pc1, pc2) > 0.1)
    return (
        correlation_coeffcient(pc1, pc2, np.where(mask, pc1, pc2), pcf, *masks)
        * correlation_coeffcient(big1, big2, np.where(mask, big1, big2), bigf, *masks)
        * correlation_coeffcient(small1, small2, np.where(mask, small1, small2), smallf, *masks)
    )


@pytest.mark.parametrize("shape", [(37, 45), (40, 32)])
def test_qp_matches_a_line_by_line_port_of_the_toolbox(shape: tuple[int, int]) -> None:
    """Odd and even sides (the frequency grid and the low pass's centre differ between them)."""
    a, b, f = _focus_pair(shape)
    assert qp(levels(a), levels(b), levels(f)).item() == pytest.approx(_zhao_port(a, b, f), rel=1e-10)


def test_phase_congruency_holding_its_responses_or_filtering_again_gives_the_same_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small images keep each orientation's responses between their two reads, large ones filter them
    again (HELD_PIXELS): the same PC and moments to the bit."""
    image = torch.rand(37, 50, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 255
    held = phase_congruency(image)
    monkeypatch.setattr(gipc.metrics.phase_congruency, "HELD_PIXELS", 0)
    again = phase_congruency(image)
    assert all(torch.equal(x, y) for x, y in zip(held, again))


def test_phase_congruency_marks_edges_whatever_their_contrast() -> None:
    """A bright bar (the filtering is circular, so a bar, not a step that would wrap): PC is 0..1,
    highest on the two columns either side of each edge and the same for any height of the bar (it
    measures phase, not amplitude, up to the noise threshold); the maximum moment is never below the
    minimum one and peaks there too; a flat image has no feature."""
    bar = torch.zeros(48, 64, dtype=torch.float64)
    bar[:, 16:48] = 1.0
    pc, maximum, minimum = phase_congruency(bar * 200)
    assert 0.0 <= pc.min() and pc.max() <= 1.0
    assert set(pc[24].argsort(descending=True)[:4].tolist()) == {15, 16, 47, 48}
    assert pc[24, 16] > 0.6 > 0.1 > pc[24, 20]
    assert torch.allclose(phase_congruency(bar * 40)[0], pc, atol=1e-3)
    assert (maximum >= minimum).all()
    assert set(maximum[24].argsort(descending=True)[:4].tolist()) == {15, 16, 47, 48}
    flat, *_ = phase_congruency(torch.full((20, 24), 100.0, dtype=torch.float64))
    assert flat.abs().max() == 0.0


@pytest.mark.parametrize("metric", [qm, qp], ids=["QM", "QP"])
def test_qm_and_qp_score_a_batch_as_each_image_alone(metric) -> None:
    """The test report scores batches: each image's score must not depend on its neighbours."""
    pairs = [_focus_pair((40, 32)), tuple(np.flipud(x).copy() for x in _focus_pair((40, 32)))]
    a, b, f = (torch.cat([levels(pair[k]) for pair in pairs]) for k in range(3))
    alone = [metric(levels(pair[0]), levels(pair[1]), levels(pair[2])).item() for pair in pairs]
    assert metric(a, b, f).tolist() == pytest.approx(alone, rel=1e-12)


def test_qp_refuses_images_with_a_side_of_one_pixel() -> None:
    with pytest.raises(MetricInputError, match="Q_P needs images of at least 2x2 px, got 1x9"):
        qp(*(levels(np.zeros((1, 9))) for _ in range(3)))


@pytest.mark.parametrize(("values", "median"), [([3, 1, 2], 2), ([4, 1, 3, 2], 2.5), ([2, 1, 3, 2], 2), ([5, 5, 5, 5], 5), ([1, 9], 5)])
def test_matlab_median_takes_the_mean_of_the_two_middle_values(values: list[float], median: float) -> None:
    assert matlab_median(torch.tensor(values, dtype=torch.float64)).item() == median


def test_qp_prefers_the_sharp_halves_and_needs_no_feature_to_score() -> None:
    """F that copies each source's sharp half keeps more of the sources' features than their mean
    or the blurred halves, but a flat F scores higher still (docs/paper.md); where neither source
    has a feature there is nothing to lose (0 / 0 in the toolbox): 1."""
    a, b, mean = _focus_pair((48, 64))
    left = np.arange(64) < 32
    sharp, blurred = np.where(left, a, b), np.where(left, b, a)
    scores = [qp(levels(a), levels(b), levels(f)).item() for f in (sharp, mean, blurred)]
    assert scores[0] > scores[1] > scores[2]
    assert qp(levels(a), levels(b), levels(np.full_like(a, 90))).item() > 0.99 > scores[0]  # the constants' C / C: read Q_P beside others
    flat = levels(np.full((20, 24), 90))
    assert qp(flat, flat, levels(np.random.default_rng(0).integers(0, 256, (20, 24)))).item() == 1.0


def test_extra_metrics_come_only_when_asked_and_unknown_ones_are_refused() -> None:
    a, b = textured(4), textured(5)
    assert tuple(fusion_metrics(a, b, a)) == METRIC_NAMES
    scores = fusion_metrics(a, b, a, extra=EXTRA_NAMES)
    assert tuple(scores) == METRIC_NAMES + EXTRA_NAMES == METRIC_NAMES + ("QMI", "QNCIE", "QM", "QSF", "QP", "QY", "QCB")
    for name, metric in (("QMI", qmi), ("QNCIE", qncie), ("QM", qm), ("QSF", qsf), ("QP", qp), ("QY", qy), ("QCB", qcb)):
        assert float(scores[name][0]) == metric(a, b, a).item(), name
    with pytest.raises(MetricInputError, match="no extra metric QS; choose from QMI, QNCIE, QM, QSF, QP, QY, QCB or all"):
        fusion_metrics(a, b, a, extra=["QS"])


def test_gray255_leaves_its_input_as_it_was() -> None:
    """It rounds in place, in a copy: a float64 image (which ``.to(float64)`` would hand back as it is) is untouched."""
    image = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    kept = image.clone()
    assert gray255(image).shape == (1, 1, 9, 11) and torch.equal(image, kept)
    gray = image[:, :1]
    assert torch.equal(gray255(gray), torch.floor(kept[:, :1] * 255 + 0.5)) and torch.equal(image, kept)


def test_a_scenes_metrics_share_its_luminance_and_score_as_each_alone() -> None:
    """fusion_metrics converts each image to 0..255 luminance once for all its metrics (converted_once):
    every score equals its metric's alone, to the bit, on RGB sources, a fused image and ground truth, so
    no metric changed the shared luminance in place; a tensor changed in place is converted again."""
    generator = torch.Generator().manual_seed(7)
    a, b, fused, gt = (torch.rand(2, 3, 40, 48, generator=generator, dtype=torch.float64) for _ in range(4))
    scores = fusion_metrics(a, b, fused, gt, extra=EXTRA_NAMES)
    alone = {"EN": entropy(fused), "SF": spatial_frequency(fused), "SD": standard_deviation(fused), "CC": correlation_coefficient(a, b, fused),
             "QABF": qabf(a, b, fused), "MSSSIM": fusion_msssim(a, b, fused), "PSNR": psnr(fused, gt), "SSIM": ssim(fused, gt),
             "QMI": qmi(a, b, fused), "QNCIE": qncie(a, b, fused), "QM": qm(a, b, fused), "QSF": qsf(a, b, fused), "QP": qp(a, b, fused),
             "QY": qy(a, b, fused), "QCB": qcb(a, b, fused)}
    assert set(scores) == set(alone)
    for name, value in alone.items():
        assert torch.equal(scores[name], value), name
    with converted_once():
        first = gray255(fused)
        assert gray255(fused) is first
        fused.mul_(0.5)
        assert torch.equal(gray255(fused), gray255(fused * 1)) and gray255(fused) is not first
    assert gray255(fused) is not gray255(fused)  # outside it, each call converts anew
    with torch.inference_mode():  # a baseline's output, fused under inference mode, keeps no version counter
        made = fused * 1
    with converted_once():
        assert gray255(made) is gray255(made)
    assert torch.equal(fusion_metrics(a, b, made)["QABF"], qabf(a, b, made))


def test_only_the_metrics_named_are_scored_each_as_in_the_full_set() -> None:
    a, b, gt = textured(4), textured(5), textured(6)
    every = fusion_metrics(a, b, a, gt, extra=["QY"])
    assert tuple(fusion_metrics(a, b, a, gt, extra=["QY"], only=["QY", "PSNR"])) == ("PSNR", "QY")  # the table's order, not the request's
    assert float(fusion_metrics(a, b, a, only=["QABF"])["QABF"][0]) == float(every["QABF"][0])
    with pytest.raises(MetricInputError, match=r"^no metric PSNR among those scored here: EN, SF, SD, CC, QABF, MSSSIM$"):
        fusion_metrics(a, b, a, only=["PSNR"])  # no ground truth: nothing to score it against


def test_a_sequences_scores_weigh_every_source_as_its_pairs_do() -> None:
    """Over three sources Q sums each source's weighted edge preservation: the pairs (A, A), (B, B) and
    (A, B) give each source's own Q and the ratio of their edge weights, which predict Q(A, B, B). CC
    and MS-SSIM average over the sources, so (A, B, C) is the mean of the three pairs; EN, SF, SD and
    PSNR read no source. A pair's scores stay what they were."""
    a, b, c, f, gt = (textured(seed) for seed in (4, 5, 6, 7, 8))
    q = {pair: float(sources_qabf(pair_sources, f)[0]) for pair, pair_sources in (("aa", [a, a]), ("bb", [b, b]), ("ab", [a, b]))}
    weight_ratio = (q["bb"] - q["ab"]) / (q["ab"] - q["aa"])  # Q_ab = (Q_aa w_a + Q_bb w_b) / (w_a + w_b)
    predicted = (q["aa"] * weight_ratio + 2 * q["bb"]) / (weight_ratio + 2)
    assert float(sources_qabf([a, b, b], f)[0]) == pytest.approx(predicted, abs=1e-6)
    assert float(sources_qabf([a, b], f)[0]) == float(qabf(a, b, f)[0])
    triple = fusion_metrics(a, b, f, gt, more=[c])
    pairs = [fusion_metrics(x, y, f, gt) for x, y in ((a, b), (a, c), (b, c))]
    for name in ("CC", "MSSSIM"):
        assert float(triple[name][0]) == pytest.approx(sum(float(pair[name][0]) for pair in pairs) / 3, abs=1e-12)
    for name in ("EN", "SF", "SD", "PSNR", "SSIM"):
        assert float(triple[name][0]) == float(pairs[0][name][0])
    assert float(triple["QABF"][0]) != float(pairs[0]["QABF"][0])
    with pytest.raises(MetricInputError, match=r"^QMI score pairs; a focus sequence of 3 sources is scored on EN, SF, SD, CC, QABF, MSSSIM$"):
        fusion_metrics(a, b, f, extra=["QMI"], more=[c])


def test_a_metric_of_any_number_of_sources_scores_a_pair_through_that_form_and_one_of_neither_is_refused() -> None:
    a, b, f = textured(4), textured(5), textured(7)
    cc = CorrelationCoefficient()  # defines only per_image_sources
    cc.update(a, b, f)
    r = [float(np.corrcoef(x.flatten().double().numpy(), f.flatten().double().numpy())[0, 1]) for x in (a, b)]
    assert float(cc.compute()) == pytest.approx(sum(r) / 2, abs=1e-9)  # gray255 of a one-channel image is the image x 255
    with pytest.raises(TypeError, match="^Blank must define per_image or per_image_sources$"):
        type("Blank", (PerImageMean,), {})


def test_all_stands_for_every_extra_metric_each_once_in_the_order_asked() -> None:
    assert expand(["all"], EXTRA_NAMES) == list(EXTRA_NAMES)
    assert expand(["QY", "all", "QMI"], EXTRA_NAMES) == ["QY", "QMI", "QNCIE", "QM", "QSF", "QP", "QCB"]
    assert expand(["QS", "QS"], EXTRA_NAMES) == ["QS"]  # left for unknown to refuse
    assert unknown(["QY", "QS", "QZ"], EXTRA_NAMES, "metric") == "no metric QS, QZ; choose from QMI, QNCIE, QM, QSF, QP, QY, QCB or all"
    assert unknown(["QY"], EXTRA_NAMES, "metric") is None
    a, b = textured(4), textured(5)
    assert tuple(fusion_metrics(a, b, a, extra=["all"])) == METRIC_NAMES + EXTRA_NAMES


# ---------------------------------------------------------------- MS-SSIM
@pytest.mark.parametrize(
    ("side", "scales"),
    [(3000, 5), (176, 5), (175, 4), (99, 4), (98, 3), (80, 3), (44, 3), (43, 2), (22, 2), (21, 1), (11, 1)],
)  # 5 at most, Wang's, however large the image
def test_msssim_scales_keep_a_whole_window_at_the_coarsest_scale(side: int, scales: int) -> None:
    assert msssim_scales(side, side + 7) == scales


def test_msssim_refuses_images_smaller_than_the_window() -> None:
    with pytest.raises(MetricInputError, match="11x11"):
        msssim_scales(10, 300)


@pytest.mark.parametrize("side", [176, 99, 44, 22, 11])
def test_msssim_of_an_image_with_itself_is_one_at_every_scale_count(side: int) -> None:
    a = textured(side, (1, 1, side, side + 1))
    assert fusion_msssim(a, a, a).item() == pytest.approx(1.0, abs=1e-12)


def test_five_scale_msssim_is_torchmetrics_with_wangs_weights() -> None:
    x, y = (gray255(textured(s, (1, 1, 180, 190))) for s in (8, 9))
    expected = multiscale_structural_similarity_index_measure(x, y, data_range=255.0, reduction="none")
    # The same float64 arithmetic, the window as two passes and summed in another order.
    assert torch.allclose(msssim(x, y), expected, rtol=0, atol=1e-8)


def test_reference_ssim_is_torchmetrics_ssim() -> None:
    """The same map, averaged the same way (its borders over a reflected image), in float64."""
    fused, gt = textured(11, (2, 1, 40, 57)), textured(12, (2, 1, 40, 57)) * 0.5 + 0.2
    expected = structural_similarity_index_measure(gray255(fused), gray255(gt), data_range=255.0, reduction="none")
    assert torch.allclose(ssim(fused, gt), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("border", ["reflect", "zeros", "valid"])
def test_window_sums_are_the_same_on_and_off_the_cpu(border: str) -> None:
    """On the CPU OpenCV's separable filter; elsewhere (a GPU's training loop) torch's padding and
    convolutions: one map, to float64 rounding."""
    x = gray255(textured(10, (2, 1, 37, 52)))
    taps = gaussian_taps(11, 1.5, torch.float64, x.device)
    on_cpu, through_torch = window_sums(x, taps, border), convolved_sums(x, taps, border)
    assert on_cpu.shape == through_torch.shape == ((2, 1, 27, 42) if border == "valid" else (2, 1, 37, 52))
    assert torch.allclose(on_cpu, through_torch, rtol=0, atol=1e-10)


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """scikit-image's SSIM of two (1, 1, H, W) luminances with torchmetrics' conventions.

    Gaussian sigma 1.5 truncated at 3.5 sigma (11 taps), population covariances, K1 0.01, K2 0.03.
    torchmetrics averages the SSIM map over every pixel, border windows reading a torch "reflect"
    padding, where skimage keeps only windows inside the image: padding by 5 the same way first
    makes skimage's inside windows exactly torchmetrics' map.
    """
    pad = [np.pad(t[0, 0].numpy(), 5, mode="reflect") for t in (x, y)]
    return structural_similarity(*pad, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def test_fusion_msssim_averages_the_scores_against_both_sources() -> None:
    a = textured(8, (1, 1, 180, 180))
    fused = 0.5 * a + 0.25  # correlated with A, but not A
    # B = F, so MS-SSIM(B, F) = 1 and the score is (1 + MS-SSIM(A, F)) / 2; MS-SSIM(A, F) is torchmetrics'
    # 5-scale default with Wang's weights, in float64 as msssim computes it.
    m_af = multiscale_structural_similarity_index_measure(gray255(a), gray255(fused), data_range=255.0).item()
    assert 0.5 < m_af < 0.95
    _warn_fewer_scales.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 180 px hold all 5 scales: no warning about fewer
        got = fusion_msssim(a, fused, fused).item()
    assert got == pytest.approx((1 + m_af) / 2, abs=1e-9)


def test_one_scale_msssim_is_renormalised_ssim_and_fewer_scales_warn() -> None:
    a = textured(8, (1, 1, 15, 15))
    x, y = gray255(a), gray255(0.5 * a + 0.25)  # correlated: SSIM about 0.8, not clamped to 0
    _warn_fewer_scales.cache_clear()
    with pytest.warns(UserWarning, match="1 of Wang's 5 scales"):
        got = msssim(x, y).item()
    # Weights renormalised to Wang's total 0.0448 + 0.2856 + 0.3001 + 0.2363 + 0.1333 = 1.0001: one scale is SSIM ** 1.0001.
    ssim_value = _skimage_ssim(x, y)
    assert ssim_value > 0.5
    assert got == pytest.approx(ssim_value**1.0001, abs=1e-5)


# ---------------------------------------------------------------- PSNR / SSIM against ground truth
def test_reference_psnr_and_ssim_by_hand() -> None:
    gt = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    fused = torch.full_like(gt, 10 / 255)  # MSE = 100 grey levels squared
    # torchmetrics takes log(data_range) in float32, hence 1e-7 relative, not float64 precision.
    assert psnr(fused, gt).item() == pytest.approx(10 * math.log10(255**2 / 100), rel=1e-7)
    assert ssim(gt, gt).item() == pytest.approx(1.0, abs=1e-12)
    # On flat images SSIM is C1 / (mu_x^2 + mu_y^2 + C1) with C1 = (K1 * 255)^2, K1 = 0.01: it pins K1 and the range.
    c1 = (0.01 * 255) ** 2
    assert ssim(fused, gt).item() == pytest.approx(c1 / (100 + c1), abs=1e-9)


def test_reference_ssim_matches_scikit_image_on_a_textured_pair() -> None:
    gt = textured(20)
    fused = (gt + textured(21)) / 2  # SSIM about 0.68: sigma, K2 and the window all move it
    assert ssim(fused, gt).item() == pytest.approx(_skimage_ssim(gray255(fused), gray255(gt)), abs=1e-10)


# ---------------------------------------------------------------- the collection
def _batches() -> list[tuple[torch.Tensor, ...]]:
    """Batches of differing sizes, odd and RGB among them, each with a ground truth."""
    shapes = [(2, 1, 24, 24), (1, 3, 33, 29), (3, 1, 21, 40)]
    return [tuple(textured(10 * i + k, s) for k in range(4)) for i, s in enumerate(shapes)]


def test_compute_is_the_mean_of_the_per_image_functional_values_over_batches() -> None:
    metrics = FusionMetrics(with_reference=True)
    per_image: dict[str, list[torch.Tensor]] = {}
    for a, b, fused, gt in _batches():
        metrics.update(a, b, fused, gt)
        for name, values in fusion_metrics(a, b, fused, gt).items():
            assert values.shape == (a.shape[0],) and values.dtype == torch.float64
            per_image.setdefault(name, []).append(values)
    result = metrics.compute()
    assert set(result) == set(METRIC_NAMES + REFERENCE_NAMES)  # MetricCollection sorts its keys
    for name, value in result.items():
        assert value.item() == pytest.approx(torch.cat(per_image[name]).mean().item(), abs=1e-12), name
    metrics.reset()
    a, b, fused, gt = _batches()[0]
    metrics.update(a, b, fused, gt)
    assert metrics.compute()["SD"].item() == pytest.approx(standard_deviation(fused).mean().item(), abs=1e-12)


def test_forward_returns_the_batch_means_and_keeps_accumulating() -> None:
    (a1, b1, f1, g1), (a2, b2, f2, g2) = _batches()[:2]
    metrics = FusionMetrics(with_reference=True)
    batch = metrics(a1, b1, f1, g1)
    assert batch["QABF"].item() == pytest.approx(qabf(a1, b1, f1).mean().item(), abs=1e-12)
    metrics.update(a2, b2, f2, g2)
    expected = torch.cat([psnr(f1, g1), psnr(f2, g2)]).mean().item()
    assert metrics.compute()["PSNR"].item() == pytest.approx(expected, abs=1e-12)


def test_members_with_equal_first_states_are_not_merged() -> None:
    # A black first batch gives EN = SF = SD = CC = 0; compute groups, formed on the collection's first
    # update (the with-gt path), would then merge those members into one shared state.
    metrics = FusionMetrics(with_reference=True)
    a, b = textured(0, (1, 1, 24, 24)), textured(1, (1, 1, 24, 24))
    metrics.update(a, b, torch.zeros_like(a), gt=b)
    metrics.update(a, b, a, gt=b)
    result = metrics.compute()
    # By hand on A's levels: SF divides the squared differences by M*N; SD is numpy's population SD; means over 2 images.
    y = (a[0, 0] * 255).numpy()
    sf = math.sqrt(((np.diff(y, axis=1) ** 2).sum() + (np.diff(y, axis=0) ** 2).sum()) / y.size)
    assert result["SF"].item() == pytest.approx(sf / 2, abs=1e-12)
    assert result["SD"].item() == pytest.approx(np.std(y) / 2, abs=1e-12)


def test_without_reference_keys_are_the_six_and_pairs_without_gt_skip_the_reference() -> None:
    a, b, fused, gt = _batches()[0]
    plain = FusionMetrics()
    plain.update(a, b, fused)
    assert set(plain.compute()) == set(METRIC_NAMES)
    assert tuple(fusion_metrics(a, b, fused)) == METRIC_NAMES  # the paper's column order, for CSV rows
    assert tuple(fusion_metrics(a, b, fused, gt)) == METRIC_NAMES + REFERENCE_NAMES
    real_pairs = FusionMetrics(with_reference=True)
    real_pairs.update(a, b, fused)  # e.g. Lytro: no ground truth exists
    assert set(real_pairs.compute()) == set(METRIC_NAMES)
    real_pairs.update(a, b, fused, gt)
    assert set(real_pairs.compute()) == set(METRIC_NAMES + REFERENCE_NAMES)


def test_two_simulated_processes_give_the_single_process_means() -> None:
    batches = _batches()
    single = FusionMetrics(with_reference=True)
    rank0, rank1 = FusionMetrics(with_reference=True), FusionMetrics(with_reference=True)
    for i, batch in enumerate(batches):
        single.update(*batch)
        (rank0 if i % 2 == 0 else rank1).update(*batch)

    for name, metric in rank0.items():
        peer = rank1[name]

        def all_gather(tensor: torch.Tensor, group: object = None, _m=metric, _p=peer) -> list[torch.Tensor]:
            state = next(k for k in _m._reductions if getattr(_m, k) is tensor)
            return [tensor, getattr(_p, state)]

        # What DDP does on compute(): gather every state from every rank, reduce with dist_reduce_fx.
        metric.dist_sync_fn = all_gather
        metric.distributed_available_fn = lambda: True
    synced, expected = rank0.compute(), single.compute()
    for name in expected:
        assert synced[name].item() == pytest.approx(expected[name].item(), abs=1e-12), name
    assert rank0["EN"].count.item() == 2 + 3  # local state restored after compute: rank 0's own batches 0 and 2


# ---------------------------------------------------------------- real images
def _choose_max_gradient(a: torch.Tensor, b: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Per pixel, the source whose mean squared gradient over a window is larger."""

    def activity(x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=1, keepdim=True)
        energy = F.pad(y.diff(dim=-1) ** 2, (0, 1)) + F.pad(y.diff(dim=-2) ** 2, (0, 0, 0, 1))
        return F.avg_pool2d(energy, window, stride=1, padding=window // 2, count_include_pad=False)

    return torch.where(activity(a) >= activity(b), a, b)


def _average_and_choose_max_qabf(a_int: np.ndarray, b_int: np.ndarray) -> tuple[float, float]:
    a, b = levels(a_int), levels(b_int)
    average = levels((a_int + b_int + 1) // 2)  # saved as uint8, rounded half up: no ties left to the metric
    return qabf(a, b, average).item(), qabf(a, b, _choose_max_gradient(a, b)).item()


@pytest.mark.slow
def test_lytro_averaging_is_plausible_and_choose_max_gradient_beats_it(lytro_pairs: Path) -> None:
    q_average, q_choose = _average_and_choose_max_qabf(
        read(lytro_pairs / "lytro-01-A.jpg"), read(lytro_pairs / "lytro-01-B.jpg")
    )
    assert 0.5 <= q_average <= 0.75
    assert q_choose > q_average + 0.05


@pytest.mark.slow
def test_odd_sized_grayscale_pair_scores_finite_values_and_ranks_fusions(grayscale_pairs: Path) -> None:
    a_int, b_int = (np.asarray(Image.open(grayscale_pairs / f"g09-{s}.png"), dtype=np.int64) for s in "AB")
    assert a_int.shape == (234, 322)
    a, b = levels(a_int), levels(b_int)
    scores = fusion_metrics(a, b, levels((a_int + b_int + 1) // 2))
    assert all(torch.isfinite(v).all() for v in scores.values())
    q_average, q_choose = _average_and_choose_max_qabf(a_int, b_int)
    assert q_choose > q_average
    # The toolbox's loops are too slow for the whole pair: an odd-sized 65x93 crop of it against the literal port.
    a_crop, b_crop = a_int[100:165, 150:243], b_int[100:165, 150:243]
    f_crop = (a_crop + b_crop + 1) // 2
    assert qabf(levels(a_crop), levels(b_crop), levels(f_crop)).item() == pytest.approx(_qabf_reference(a_crop, b_crop, f_crop), abs=1e-12)
