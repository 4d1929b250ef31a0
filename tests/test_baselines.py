"""Classic fusion baselines: exact identities, hand-computed coefficients, and focus properties on real pairs."""

from __future__ import annotations

from pathlib import Path

import cv2
import kornia
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data

from gipc.baselines import BASELINES, get_baseline
from gipc.baselines.dsift import dsift_map
from gipc.baselines.dwt import haar_analysis, haar_synthesis
from gipc.baselines.gff import _normalized, saliency as gff_saliency
from gipc.baselines.gfdf import focus as gfdf_focus
from gipc.baselines.gfdf import gfdf_map, gfdf_weight
from gipc.baselines.laplacian_energy import laplacian_energy_decision, modified_laplacian
from gipc.baselines.laplacian_pyramid import laplacian_decompose, laplacian_reconstruct
from gipc.baselines.mwgf import (
    _MEDIAN_ROWS, _soft_max, _square, clear_edge_runs, mix_gradients, mwgf_weight, ordered_median, reconstruct, resize, saliency,
)
from gipc.baselines.rules import area_activity, area_open, choose_max_abs, disk_strel, fitting_levels, majority_filter, pad_even, without_small_areas
from gipc.windows import guided_filter
from gipc.color import fuse_chroma, fuse_color, luma, merge_luma, split_luma
from gipc.errors import BaselineInputError, UnknownBaselineError
from gipc.metrics import qabf

NON_AVERAGE = [name for name in BASELINES if name != "average"]


def _load(path: Path) -> torch.Tensor:
    """(1, C, H, W) float in [0, 1] from an 8-bit image file."""
    arr = np.array(Image.open(path), dtype=np.float32) / 255.0
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def _gradient_energy(y: torch.Tensor) -> float:
    return kornia.filters.sobel(y).mean().item()


@pytest.fixture(scope="module")
def camera() -> torch.Tensor:
    """A textured all-in-focus image I, 128x128 in [0, 1]."""
    img = torch.from_numpy(data.camera()).float()[None, None] / 255.0
    return torch.nn.functional.interpolate(img, size=(128, 128), mode="area")


@pytest.fixture(scope="module")
def half_blurred(camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A blurred on its left half, B on its right half (equations 18-19 with a half-plane map)."""
    blurred = kornia.filters.gaussian_blur2d(camera, (9, 9), (2.0, 2.0), border_type="reflect")
    right = torch.zeros_like(camera)
    right[..., 64:] = 1.0
    return right * camera + (1 - right) * blurred, (1 - right) * camera + right * blurred


def _majority(pick: np.ndarray, size: int) -> np.ndarray:
    """Consistency verification with scipy: the ``size`` x ``size`` vote over the last two axes of a binary map, edges replicated."""
    return ndimage.uniform_filter(pick.astype(np.float64), (*[1] * (pick.ndim - 2), size, size), mode="nearest") > 0.5


def test_registry_names_the_nine_methods() -> None:
    assert list(BASELINES) == ["average", "laplacian_energy", "laplacian_pyramid", "gff", "dwt", "gfdf", "dsift", "mwgf", "bf"]
    assert get_baseline("gff") is BASELINES["gff"]


def test_unknown_method_lists_the_valid_names() -> None:
    with pytest.raises(UnknownBaselineError, match="choose one of: average, laplacian_energy"):
        get_baseline("median")
    assert issubclass(UnknownBaselineError, ValueError)


@pytest.mark.parametrize("name", [name for name in BASELINES if name not in ("mwgf", "bf")])  # mwgf, bf (8-bit outputs): their own tests below
def test_fusing_an_image_with_itself_returns_it(name: str, camera: torch.Tensor) -> None:
    torch.testing.assert_close(BASELINES[name](camera, camera), camera, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(37, 53), (16, 16)])
@pytest.mark.parametrize("name", list(BASELINES))
def test_any_size_gives_same_shape_in_range(name: str, size: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, *size, generator=gen), torch.rand(2, 1, *size, generator=gen)
    fused = BASELINES[name](a, b)
    assert fused.shape == a.shape
    assert fused.dtype == a.dtype
    assert fused.min() >= 0 and fused.max() <= 1


@pytest.mark.parametrize("name", list(BASELINES))
def test_double_precision_is_kept(name: str, camera: torch.Tensor) -> None:
    x = camera[..., :40, :40].double()
    assert BASELINES[name](x, x.flip(-1)).dtype == torch.float64


def test_average_is_the_mean() -> None:
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.6)
    torch.testing.assert_close(BASELINES["average"](a, b), torch.full((1, 1, 16, 16), 0.4))


@pytest.mark.parametrize("name", list(BASELINES))
def test_bad_inputs_fail_with_one_clear_error(name: str) -> None:
    with pytest.raises(BaselineInputError, match="differ in shape"):
        BASELINES[name](torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 17))
    with pytest.raises(BaselineInputError, match="fuse_color"):
        BASELINES[name](torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))


def test_even_window_is_rejected() -> None:
    a = torch.rand(1, 1, 16, 16)
    with pytest.raises(BaselineInputError, match="window must be a positive odd integer, got 4"):
        BASELINES["laplacian_energy"](a, a, window=4)


@pytest.mark.parametrize("name", NON_AVERAGE)
def test_recovers_the_sharp_image_better_than_averaging(name: str, camera, half_blurred) -> None:
    a, b = half_blurred
    mse_avg = torch.mean((BASELINES["average"](a, b) - camera) ** 2)
    mse = torch.mean((BASELINES[name](a, b) - camera) ** 2)
    assert mse < 0.5 * mse_avg


def test_decision_picks_the_sharp_source_away_from_the_boundary(half_blurred) -> None:
    a, b = half_blurred
    decision = laplacian_energy_decision(a, b)
    assert decision[..., 8:-8, 76:-8].min() == 1  # A is sharp on the right
    assert decision[..., 8:-8, 8:52].max() == 0  # B is sharp on the left


def test_modified_laplacian_of_a_parabola_is_its_second_difference() -> None:
    cols = torch.arange(20, dtype=torch.float64)
    x = (cols**2 / 400).expand(1, 1, 12, 20).contiguous()  # d2/dx2 = 2/400 everywhere inside, d2/dy2 = 0
    ml = modified_laplacian(x)
    torch.testing.assert_close(ml[..., 1:-1], torch.full_like(ml[..., 1:-1], 2 / 400))


def test_modified_laplacian_equals_the_1_minus2_1_convolutions_with_replicated_borders() -> None:
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate").reshape(6, 1, 19, 25)
    d2 = torch.tensor([1.0, -2.0, 1.0])
    dx = torch.nn.functional.conv2d(padded, d2.view(1, 1, 1, 3))[:, :, 1:-1, :]
    dy = torch.nn.functional.conv2d(padded, d2.view(1, 1, 3, 1))[:, :, :, 1:-1]
    torch.testing.assert_close(modified_laplacian(x), (dx.abs() + dy.abs()).reshape(2, 3, 17, 23))


def test_modified_laplacian_on_the_cpu_gives_the_shifted_views_bits() -> None:
    # float32 on the CPU takes OpenCV's filters; a tensor that needs gradients takes torch's shifted views
    x = torch.rand(2, 3, 31, 17, generator=torch.Generator().manual_seed(1))
    fast = modified_laplacian(x[:, :, 3:, 1:])  # a non-contiguous view
    reference = modified_laplacian(x[:, :, 3:, 1:].clone().requires_grad_()).detach()
    assert torch.equal(fast, reference)


def test_choose_max_abs_keeps_the_larger_magnitude() -> None:
    a, b = torch.tensor([0.5, -0.9, 0.1, -0.3]), torch.tensor([-0.7, 0.2, 0.1, 0.3])
    torch.testing.assert_close(choose_max_abs(a, b), torch.tensor([-0.7, -0.9, 0.1, -0.3]))


def test_area_activity_is_the_largest_magnitude_in_the_window() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = -0.8
    x[0, 0, 0, 4] = 0.3
    expected = torch.zeros(5, 5)
    expected[:2, 3:] = 0.3  # within one pixel of the corner spike
    expected[1:4, 1:4] = 0.8  # the 3x3 block around the centre spike wins over the corner's 0.3
    torch.testing.assert_close(area_activity(x, 3)[0, 0], expected)
    wide = torch.full((5, 5), 0.8)  # a 5x5 window around any pixel of the 5x5 image reaches the centre spike
    torch.testing.assert_close(area_activity(x, 5)[0, 0], wide)
    corner = torch.zeros(1, 1, 7, 7)
    corner[0, 0, 0, 0] = 1.0
    reach = torch.zeros(7, 7)
    reach[:3, :3] = 1.0  # a 5x5 window reaches 2 px
    torch.testing.assert_close(area_activity(corner, 5)[0, 0], reach)


def test_majority_filter_removes_isolated_decisions_and_keeps_regions() -> None:
    decision = torch.zeros(1, 1, 9, 9)
    decision[..., :, 5:] = 1.0  # a region of A
    decision[..., 2, 2] = 1.0  # one stray pick of A
    decision[..., 6, 7] = 0.0  # one stray pick of B
    expected = torch.zeros(1, 1, 9, 9)
    expected[..., :, 5:] = 1.0
    torch.testing.assert_close(majority_filter(decision, 3), expected)


@pytest.mark.parametrize(("levels", "size", "expected"), [(4, (520, 520), 4), (4, (16, 16), 1), (4, (37, 53), 2), (3, (8, 40), 0)])
def test_levels_shrink_so_the_coarsest_band_keeps_8_pixels(levels: int, size: tuple[int, int], expected: int) -> None:
    assert fitting_levels(levels, *size) == expected


def test_haar_coefficients_of_one_block() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    approx, details = haar_analysis(x)
    torch.testing.assert_close(approx.flatten(), torch.tensor([5.0]))  # (1+2+3+4)/2
    torch.testing.assert_close(details.flatten(), torch.tensor([-2.0, -1.0, 0.0]))  # (1+2-3-4)/2, (1-2+3-4)/2, (1-2-3+4)/2
    torch.testing.assert_close(haar_synthesis(approx, details), x)


def test_laplacian_pyramid_reconstructs_odd_sizes_exactly() -> None:
    x = torch.rand(1, 1, 37, 53, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bands = laplacian_decompose(x, 2)
    assert [tuple(t.shape[-2:]) for t in bands] == [(37, 53), (19, 27), (10, 14)]
    torch.testing.assert_close(laplacian_reconstruct(bands), x)


@pytest.mark.parametrize("folder, name, channels, factor", [
    ("lytro_pairs", "lytro-01-{}.jpg", 3, 1.2),
    ("lytro_pairs", "lytro-13-{}.jpg", 3, 1.2),
    ("grayscale_pairs", "g05-{}.png", 1, 1.0),
], ids=["lytro-01", "lytro-13", "gray-g05"])
def test_real_pair_fusion_is_sharper_than_averaging(request: pytest.FixtureRequest, folder: str, name: str, channels: int, factor: float) -> None:
    """Every focus-choosing baseline keeps more Sobel gradient in the fused luminance than averaging (on the
    colour pairs a fifth more), through the colour path for RGB and directly for gray."""
    root = request.getfixturevalue(folder)
    a, b = (_load(root / name.format(letter)) for letter in "AB")
    assert a.shape[1] == channels
    floor = _gradient_energy(luma(fuse_color(BASELINES["average"], a, b)))
    for method in NON_AVERAGE:
        fused = fuse_color(BASELINES[method], a, b)
        assert fused.shape == a.shape
        assert _gradient_energy(luma(fused)) > factor * floor, method


@pytest.mark.slow
def test_lytro_01_qabf_beats_averaging(lytro_pairs: Path) -> None:
    """Edge preservation (Q^AB/F, docs/paper.md section 7): choosing the focused source must keep more source edges."""
    a, b = _load(lytro_pairs / "lytro-01-A.jpg"), _load(lytro_pairs / "lytro-01-B.jpg")
    fused = torch.cat([fuse_color(fn, a, b) for fn in BASELINES.values()])
    n = fused.shape[0]
    scores = dict(zip(BASELINES, qabf(a.expand(n, -1, -1, -1), b.expand(n, -1, -1, -1), fused).tolist()))
    for name in NON_AVERAGE:
        assert scores[name] > scores["average"] + 0.05, (name, scores)


def test_pad_even_replicates_the_last_row_and_column() -> None:
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]])
    expected = torch.tensor([[[[1.0, 2.0, 3.0, 3.0], [4.0, 5.0, 6.0, 6.0], [7.0, 8.0, 9.0, 9.0], [7.0, 8.0, 9.0, 9.0]]]])
    torch.testing.assert_close(pad_even(x), expected)


def test_laplacian_energy_decision_matches_scipy(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """SML over 5x5, then an 11x11 majority vote: the module's defaults, rebuilt with numpy and scipy."""
    a, b = (x.double() for x in half_blurred)

    def sml(x: torch.Tensor) -> np.ndarray:
        p = np.pad(x[0, 0].numpy(), 1, mode="edge")
        ml = np.abs(p[1:-1, :-2] - 2 * p[1:-1, 1:-1] + p[1:-1, 2:]) + np.abs(p[:-2, 1:-1] - 2 * p[1:-1, 1:-1] + p[2:, 1:-1])
        return ndimage.uniform_filter(ml, 5, mode="nearest")

    expected = _majority(sml(a) >= sml(b), 11)
    decision = laplacian_energy_decision(a, b)
    np.testing.assert_array_equal(decision[0, 0].numpy(), expected)
    torch.testing.assert_close(BASELINES["laplacian_energy"](a, b), torch.where(decision > 0, a, b))


def test_laplacian_pyramid_fuses_four_bands_by_choose_max_and_averages_the_base(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Burt & Kolczynski's rule on the module's decomposition (itself checked above): 4 detail bands
    choose-max, the 8x8 base band averaged."""
    a, b = (x.double() for x in half_blurred)
    bands_a, bands_b = laplacian_decompose(a, 4), laplacian_decompose(b, 4)
    assert bands_a[-1].shape[-2:] == (8, 8)
    fused = [torch.where(da.abs() >= db.abs(), da, db) for da, db in zip(bands_a[:-1], bands_b[:-1])]
    expected = laplacian_reconstruct([*fused, (bands_a[-1] + bands_b[-1]) / 2]).clamp(0, 1)
    torch.testing.assert_close(BASELINES["laplacian_pyramid"](a, b), expected)


def test_dwt_follows_li_manjunath_mitra_with_scipy_filters(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """4 Haar levels (128 -> 8 px), each detail band: 3x3 max-magnitude activity, choose-max, 3x3 majority vote;
    approximation averaged. The Haar steps are the module's (checked by hand above), the rule is scipy's."""
    sources = [x.double() for x in half_blurred]
    a, b = sources
    details = []
    for _ in range(4):
        a, det_a = haar_analysis(a)
        b, det_b = haar_analysis(b)
        act_a, act_b = (ndimage.maximum_filter(d.abs().numpy(), size=(1, 1, 3, 3), mode="nearest") for d in (det_a, det_b))
        details.append(torch.where(torch.from_numpy(_majority(act_a >= act_b, 3)), det_a, det_b))
    expected = (a + b) / 2
    for det in reversed(details):
        expected = haar_synthesis(expected, det)
    torch.testing.assert_close(BASELINES["dwt"](*sources), expected.clamp(0, 1))


def _gff_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Li, Kang & Hu 2013 in numpy/scipy with the paper's parameters: 31x31 mean base layer, 4-neighbour
    Laplacian saliency smoothed by an 11x11 Gaussian of sigma 5, guided filters r1 = 45, eps1 = 0.3
    (base) and r2 = 7, eps2 = 1e-6 (detail), each source guiding its own map; edges replicated."""

    def box(x: np.ndarray, r: int) -> np.ndarray:
        return ndimage.uniform_filter(x, 2 * r + 1, mode="nearest")

    def guided(i: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:  # He, Sun & Tang 2013, algorithm 1
        mean_i, mean_p = box(i, r), box(p, r)
        slope = (box(i * p, r) - mean_i * mean_p) / (box(i * i, r) - mean_i**2 + eps)
        return box(slope, r) * i + box(mean_p - slope * mean_i, r)

    def saliency(x: np.ndarray) -> np.ndarray:
        high = np.abs(ndimage.convolve(x, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float), mode="nearest"))
        return ndimage.gaussian_filter(high, 5.0, truncate=1.0, mode="nearest")  # radius 5: 11 taps

    pick = (saliency(a) >= saliency(b)).astype(np.float64)

    def weight(r: int, eps: float) -> np.ndarray:
        w_a, w_b = guided(a, pick, r, eps).clip(0), guided(b, 1 - pick, r, eps).clip(0)
        return w_a / (w_a + w_b)

    base_a, base_b = box(a, 15), box(b, 15)
    w_base, w_detail = weight(45, 0.3), weight(7, 1e-6)
    fused = w_base * base_a + (1 - w_base) * base_b + w_detail * (a - base_a) + (1 - w_detail) * (b - base_b)
    return fused.clip(0, 1)


def test_gff_matches_the_paper_rebuilt_in_scipy(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = (x.double() for x in half_blurred)
    expected = _gff_reference(a[0, 0].numpy(), b[0, 0].numpy())
    np.testing.assert_allclose(BASELINES["gff"](a, b)[0, 0].numpy(), expected, rtol=0, atol=1e-9)


def test_gff_saliency_through_opencv_is_kornias_to_float32_rounding(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """On CPUs in float32 the saliency (|Laplacian|, then the 11 x 11 Gaussian of sigma 5, replicated
    borders) comes from OpenCV, a plane at a time; float64 takes kornia's path: the two agree to float32
    rounding, on two images of a batch at once."""
    x = torch.cat(half_blurred).float()
    fast, exact = gff_saliency(x), gff_saliency(x.double())
    assert fast.dtype == torch.float32 and fast.shape == x.shape
    torch.testing.assert_close(fast.double(), exact, rtol=1e-5, atol=1e-7)


def test_gff_weight_share_clamps_overshoot_and_splits_where_both_vanish() -> None:
    w_a, w_b = torch.tensor([0.2, -0.1, 0.0, -0.2]), torch.tensor([0.6, 0.3, 0.0, -0.1])
    # 0.2 / 0.8; a negative weight counts as 0; nothing left on either side: half each.
    torch.testing.assert_close(_normalized(w_a, w_b), torch.tensor([0.25, 0.0, 0.5, 0.5]))


def _bwareaopen(mask: np.ndarray, area: int) -> np.ndarray:
    """Matlab's ``bwareaopen`` as 8-connected labelling in scipy: the regions of ``area`` pixels or more."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    return (np.bincount(labels.ravel()) >= area)[labels] & mask


def _gfdf_release(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Qiu et al.'s Matlab release (main.m, guidedfilter_LKH.m, boxfilter.m) line by line in numpy and
    scipy, on (H, W) luminance: the cumulative-sum box filter, bwareaopen as 8-connected labelling."""

    def boxfilter(x: np.ndarray, r: int) -> np.ndarray:
        hei, wid = x.shape
        out = np.zeros_like(x)
        cum = np.cumsum(x, axis=0)
        out[: r + 1] = cum[r : 2 * r + 1]
        out[r + 1 : hei - r] = cum[2 * r + 1 :] - cum[: hei - 2 * r - 1]
        out[hei - r :] = cum[hei - 1] - cum[hei - 2 * r - 1 : hei - r - 1]
        cum = np.cumsum(out, axis=1)
        out[:, : r + 1] = cum[:, r : 2 * r + 1]
        out[:, r + 1 : wid - r] = cum[:, 2 * r + 1 :] - cum[:, : wid - 2 * r - 1]
        out[:, wid - r :] = cum[:, [wid - 1]] - cum[:, wid - 2 * r - 1 : wid - r - 1]
        return out

    def guidedfilter(i: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
        n = boxfilter(np.ones_like(i), r)
        mean_i, mean_p = boxfilter(i, r) / n, boxfilter(p, r) / n
        cov_ip = boxfilter(i * p, r) / n - mean_i * mean_p
        var_i = boxfilter(i * i, r) / n - mean_i * mean_i
        slope = cov_ip / (var_i + eps)
        return boxfilter(slope, r) / n * i + boxfilter(mean_p - slope * mean_i, r) / n

    sm_a = np.abs(a - ndimage.uniform_filter(a, 7, mode="nearest"))  # imfilter(fspecial('average', 7), 'replicate')
    sm_b = np.abs(b - ndimage.uniform_filter(b, 7, mode="nearest"))
    wmap = guidedfilter(a, sm_a, 5, 0.3) > guidedfilter(b, sm_b, 5, 0.3)
    area = int(np.ceil(0.01 * a.size))
    wmap = ~_bwareaopen(~_bwareaopen(wmap, area), area)
    gmap = guidedfilter(wmap * a + ~wmap * b, wmap.astype(np.float64), 5, 0.3)
    return gmap * a + (1 - gmap) * b


def test_gfdf_matches_the_authors_release_rebuilt_in_numpy(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """On the half-blurred pair and on a pair with a speck of B's focus inside A's half (the release's
    small-region removal must take it back); the fused values agree where the release's are in [0, 1]."""
    a, b = (x.double() for x in half_blurred)
    speck = b.clone()
    speck[..., 30:36, 90:96] = a[..., 30:36, 90:96] + 0.3 * torch.sin(torch.arange(6.0, dtype=torch.float64))  # sharper than A there
    for first, second in ((a, b), (a, speck.clamp(0, 1))):
        expected = _gfdf_release(first[0, 0].numpy(), second[0, 0].numpy())
        np.testing.assert_allclose(BASELINES["gfdf"](first, second)[0, 0].numpy(), expected.clip(0, 1), rtol=0, atol=1e-12)


def test_gfdf_map_takes_the_sharp_half_and_drops_a_small_speck() -> None:
    """A 256 x 256 scene, A sharp on the right, B on the left; a 2 x 2 checker in B inside A's half
    wins the raw map over a few hundred pixels (the guided filter spreads it), under 1 % of the
    image (655 px), so the map gives them back to A."""
    camera = torch.from_numpy(data.camera()).double()[None, None] / 255.0
    camera = torch.nn.functional.interpolate(camera, size=(256, 256), mode="area")
    blurred = kornia.filters.gaussian_blur2d(camera, (9, 9), (2.0, 2.0), border_type="reflect")
    right = (torch.arange(256) >= 128).double()
    a, b = right * camera + (1 - right) * blurred, (1 - right) * camera + right * blurred
    take_a = gfdf_map(a, b)
    assert take_a[..., 8:-8, 140:-8].all() and not take_a[..., 8:-8, 8:116].any()
    speck = b.clone()
    speck[..., 60:62, 180:182] = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    raw = guided_filter(speck, gfdf_focus(speck), 5, 0.3, "inside") > guided_filter(a, gfdf_focus(a), 5, 0.3, "inside")
    assert 100 < raw[..., 40:84, 160:204].sum() < 655  # B's speck wins before the clean-up ...
    assert gfdf_map(a, speck)[..., 8:-8, 140:-8].all()  # ... and is gone after it


def _dsift_release(a: np.ndarray, b: np.ndarray, scale: int = 48, blocksize: int = 8) -> np.ndarray:
    """Liu et al.'s Matlab release (DSIFT_Fusion.m with matching, img_extend.m, DenseSIFT.m,
    generate_initmap.m, DSIFTNormalization.m, refine_withmatching.m, SF.m) line by line in numpy and
    scipy, 1-based indices kept where the release loops, on (H, W) luminance."""
    from scipy.signal import convolve2d, correlate2d

    def img_extend(img: np.ndarray, r: int) -> np.ndarray:  # in the release's order of fills
        m, n = img.shape
        imgm = np.zeros((m + 2 * r, n + 2 * r))
        imgm[r : m + r, r : n + r] = img
        imgm[:r, r : n + r] = np.tile(img[0, :], (r, 1))
        imgm[: m + r, n + r - 1 : n + 2 * r] = np.tile(imgm[: m + r, [n + r - 1]], (1, r + 1))
        imgm[m + r : m + 2 * r, r - 1 : n + 2 * r] = np.tile(imgm[m + r - 1, r - 1 : n + 2 * r], (r, 1))
        imgm[:, :r] = np.tile(imgm[:, [r]], (1, r))
        return imgm

    def dense_sift(image: np.ndarray, patch: int) -> np.ndarray:
        image = image / image.max()
        x = np.arange(-2.0, 3.0)
        g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 2)
        g /= g.sum()  # fspecial('gaussian', 5, 1)
        gx, gy = np.gradient(g, axis=1), np.gradient(g, axis=0)
        gx, gy = gx * 2 / np.abs(gx).sum(), gy * 2 / np.abs(gy).sum()
        vertical, horizontal = correlate2d(image, gx, mode="same"), correlate2d(image, gy, mode="same")  # filter2
        magnitude, theta = np.sqrt(vertical**2 + horizontal**2), np.arctan2(horizontal, vertical)
        n_row, n_col = image.shape
        loc_x, loc_y = np.arange(patch / 2, n_col - patch / 2 + 2).astype(int), np.arange(patch / 2, n_row - patch / 2 + 2).astype(int)
        weight = np.abs(np.arange(1, patch + 1) - (patch / 2 - 0.5)) / (patch / 4)
        weight = (1 - weight) * (weight <= 1)
        half = int(np.ceil((patch - 1) / 2))
        orientation = np.zeros((n_row, n_col, 8))
        for index in range(1, 9):
            angle = (index - 1) * 2 * np.pi / 8
            tmp = (np.cos(theta) * np.cos(angle) + np.sin(theta) * np.sin(angle)) ** 9
            full = convolve2d(convolve2d(tmp * (tmp > 0) * magnitude, weight[:, None]), weight[None, :])  # conv2(w, w', X)
            orientation[:, :, index - 1] = full[half : half + n_row, half : half + n_col]  # 'same'
        sample_x, sample_y = np.meshgrid(np.linspace(1, patch + 1, 5), np.linspace(1, patch + 1, 5))
        sample_x = sample_x[:4, :4].flatten(order="F") - patch / 2
        sample_y = sample_y[:4, :4].flatten(order="F") - patch / 2
        sift = np.zeros((loc_y.size, loc_x.size, 128))
        for n in range(16):
            rows, cols = (loc_y + sample_y[n]).astype(int) - 1, (loc_x + sample_x[n]).astype(int) - 1
            sift[:, :, n * 8 : n * 8 + 8] = orientation[np.ix_(rows, cols)]
        return sift

    def generate_initmap(d1: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s1, s2 = d1.sum(axis=2), d2.sum(axis=2)
        h, w = s1.shape
        score1, score2, cnt = np.zeros((h, w)), np.zeros((h, w)), np.zeros((h, w))
        for xx in range(w - blocksize + 1):
            for yy in range(h - blocksize + 1):
                block = np.s_[yy : yy + blocksize, xx : xx + blocksize]
                va, vb = s1[block].sum(axis=0).sum(), s2[block].sum(axis=0).sum()
                score1[block] += va > vb
                score2[block] += vb > va
                cnt[block] += 1
        cnt[cnt < 1] = 1
        maps = []
        for score in (score1, score2):
            init = score / cnt > 0.99
            maps.append(~_bwareaopen(~_bwareaopen(init, 3600), 3600))
        return maps[0], maps[1]

    def normalization(sift: np.ndarray) -> np.ndarray:
        flat = sift.reshape(-1, 128).copy()
        tmp = np.sqrt((flat**2).sum(axis=1))
        index = np.flatnonzero(tmp > 1)
        normed = flat[index] / tmp[index, None]
        normed[normed > 0.2] = 0.2
        flat[index] = normed / np.sqrt((normed**2).sum(axis=1))[:, None]
        return flat.reshape(sift.shape)

    def sf(patch_: np.ndarray) -> float:
        m, n = patch_.shape
        mean_c = ((patch_[1:, :] - patch_[:-1, :]) ** 2).sum(axis=0).sum() / (m * n)
        mean_r = ((patch_[:, 1:] - patch_[:, :-1]) ** 2).sum(axis=0).sum() / (m * n)
        return np.sqrt(mean_c + mean_r)

    d1, d2 = (dense_sift(img_extend(x, scale // 4 - 1), scale // 2) for x in (a, b))
    init1, init2 = generate_initmap(d1, d2)
    n1, n2 = normalization(d1), normalization(d2)
    h, w = a.shape
    fmap = 1 * init1 + 0.5 * (1 - init1.astype(float) - init2)
    r = r2 = 3
    for j in range(1, h + 1):  # 1-based, as the release loops
        for i in range(1, w + 1):
            if fmap[j - 1, i - 1] == 0.5 and r < j < h - r + 1 and r < i < w - r + 1:
                v1, v2 = n1[j - 1, i - 1], n2[j - 1, i - 1]
                dis1 = ((n2[j - 1 - r : j + r, i - 1 - r : i + r] - v1) ** 2).sum(axis=2)
                dis2 = ((n1[j - 1 - r : j + r, i - 1 - r : i + r] - v2) ** 2).sum(axis=2)
                first1 = np.flatnonzero((dis1 == dis1.min()).flatten(order="F"))[0]  # find(): column order
                first2 = np.flatnonzero((dis2 == dis2.min()).flatten(order="F"))[0]
                p12y, p12x = j - r + first1 % 7, i - r + first1 // 7
                p21y, p21x = j - r + first2 % 7, i - r + first2 // 7
                if all(r2 < v < lim - r2 + 1 for v, lim in ((p12y, h), (p12x, w), (p21y, h), (p21x, w))):
                    fm1 = sf(a[j - 1 - r2 : j + r2, i - 1 - r2 : i + r2])
                    fm1_2 = sf(b[p12y - 1 - r2 : p12y + r2, p12x - 1 - r2 : p12x + r2])
                    fm2 = sf(b[j - 1 - r2 : j + r2, i - 1 - r2 : i + r2])
                    fm2_1 = sf(a[p21y - 1 - r2 : p21y + r2, p21x - 1 - r2 : p21x + r2])
                    if fm1 > fm1_2 and fm2 < fm2_1:
                        fmap[j - 1, i - 1] = 1
                    if fm1 < fm1_2 and fm2 > fm2_1:
                        fmap[j - 1, i - 1] = 0
    return a * fmap + b * (1 - fmap)


def test_dsift_matches_the_authors_release_rebuilt_in_numpy(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """On the half-blurred pair, on one with a speck of B's focus inside A's half (its initial map's
    region is under 3600 px: removed) and on one with a flat band where neither source wins (the
    matching settles what it can, the rest averages); fused values to 1e-12."""
    a, b = (x.double() for x in half_blurred)
    speck, flat_a, flat_b = b.clone(), a.clone(), b.clone()
    speck[..., 30:42, 90:102] = a[..., 30:42, 90:102] + 0.3 * torch.sin(torch.arange(12.0, dtype=torch.float64))
    flat_a[..., 56:72], flat_b[..., 56:72] = 0.5, 0.5
    for first, second in ((a, b), (a, speck.clamp(0, 1)), (flat_a, flat_b)):
        expected = _dsift_release(first[0, 0].numpy(), second[0, 0].numpy())
        np.testing.assert_allclose(BASELINES["dsift"](first, second)[0, 0].numpy(), expected, rtol=0, atol=1e-12)


def test_dsift_map_is_a_then_b_across_the_halves_with_undecided_pixels_averaged(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A is sharp on the right half: the map is 1 there and 0 on the left more than 24 px (a
    descriptor's patch) from the seam (in the cameraman's flat sky it strays up to 16 px), only 1, 0
    and 0.5 anywhere; a scale that is no multiple of 8 is refused in one line."""
    decision = dsift_map(*half_blurred)
    assert decision[..., :, 88:].eq(1).all() and decision[..., :, :40].eq(0).all()
    assert set(decision.unique().tolist()) <= {0.0, 0.5, 1.0}
    with pytest.raises(BaselineInputError, match="scale must be a positive multiple of 8"):
        dsift_map(*half_blurred, scale=20)


def test_without_small_areas_drops_small_regions_then_fills_small_holes() -> None:
    """At 10 px a 4-px speck goes, a 4-px hole in the large region is filled, a 36-px hole and the
    region stay (bwareaopen, then on the complement), as two scipy passes give it."""
    mask = np.zeros((20, 30), bool)
    mask[1:3, 1:3] = True  # speck
    mask[5:15, 5:25] = True
    mask[8:10, 8:10] = False  # small hole
    mask[7:13, 14:20] = False  # large hole, enclosed
    expected = ~_bwareaopen(~_bwareaopen(mask, 10), 10)
    assert not expected[1:3, 1:3].any() and expected[8:10, 8:10].all() and not expected[7:13, 14:20].any()
    assert expected[5:15, 5:14].all()
    got = without_small_areas(torch.from_numpy(mask)[None, None], 10)[0, 0].numpy()
    np.testing.assert_array_equal(got, expected)


def test_area_open_keeps_regions_from_the_given_size() -> None:
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    mask[..., 0, 0] = True  # 1 pixel
    mask[..., 2:4, 2:4] = True  # 4 pixels
    mask[..., 4, 4] = True  # touches the square diagonally: one 8-connected region of 5
    assert area_open(mask, 5).sum() == 5 and not area_open(mask, 5)[..., 0, 0]
    assert area_open(mask, 6).sum() == 0


# ---------------------------------------------------------------- MWGF
def test_mwgf_of_an_8bit_image_with_itself_keeps_it_inside_and_moves_its_borders(camera: torch.Tensor) -> None:
    """The release reconstructs from gradients it zeroes on the outer rows and columns: 20 px in, an
    8-bit image is a fixed point of its steps (the Laplacian of its integers is its gradients'
    divergence); its last rows and columns drift towards their neighbours."""
    levels = (camera * 255).round() / 255
    moved = (BASELINES["mwgf"](levels, levels) - levels).abs()[0, 0] * 255
    assert moved[20:-20, 20:-20].max() < 1e-3
    assert moved[-1].max() > 10


def test_matlab_disk_strel_is_the_octagon_its_documentation_shows() -> None:
    """strel('disk', 5) as Matlab displays it: 9 x 9, corners cut two and one pixels deep."""
    row = [[0, 0, 1, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1, 1, 0]] + [[1] * 9] * 5 + [[0, 1, 1, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1, 0, 0]]
    np.testing.assert_array_equal(disk_strel(5), np.array(row, np.uint8))
    nine = disk_strel(9)
    assert nine.shape == (17, 17) and (nine == nine.T).all() and (nine == nine[::-1]).all()


def test_an_even_square_erodes_as_matlabs_with_its_origin_left_of_centre() -> None:
    """strel('square', 6) has its origin at the 3rd pixel (1-based): a pixel's window runs 2 up and left,
    3 down and right, so one hole at (10, 10) empties rows and columns 7..12; outside counts as filled."""
    image = np.ones((20, 20), np.uint8)
    image[10, 10] = 0
    expected = np.ones((20, 20), np.uint8)
    expected[7:13, 7:13] = 0
    np.testing.assert_array_equal(cv2.erode(image, **_square(6), borderType=cv2.BORDER_CONSTANT, borderValue=1), expected)


def test_ordfilt2_median_counts_the_zeros_outside() -> None:
    """A 3 x 3 window at a corner holds 4 ones and 5 zeros of padding (5th smallest: 0), along an edge 6 ones."""
    expected = np.ones((4, 5))
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 0
    np.testing.assert_array_equal(ordered_median(np.ones((4, 5))), expected)


def test_ordfilt2_median_in_bands_of_rows_is_each_windows_median() -> None:
    """Over several bands of rows, each pixel's value is the median of its 3 x 3 window (zeros outside),
    across the bands' joins too."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * _MEDIAN_ROWS + 5, 7))
    padded = np.pad(x, 1)
    expected = np.median(np.stack([padded[i : i + x.shape[0], j : j + x.shape[1]] for i in range(3) for j in range(3)]), axis=0)
    np.testing.assert_array_equal(ordered_median(x), expected)


def test_mwgf_reconstruction_is_the_releases_update_step_by_step() -> None:
    """``f += 0.1 (laplacian(round(f)) - div(g))``, clipped to 0..255, written as the release writes it
    (new planes each step, borders replicated by padding): the same floats to the bit, clipping included."""
    rng = np.random.default_rng(1)
    start, dx, dy = rng.uniform(0, 255, (23, 31)), rng.normal(0, 150, (23, 31)), rng.normal(0, 150, (23, 31))
    divergence = np.zeros_like(dx)
    divergence[:, :-1] += dx[:, 1:]
    divergence[:-1, :] += dy[1:, :]
    divergence -= dx + dy
    f = start.copy()
    for _ in range(30):
        r = np.pad(np.floor(f + 0.5), 1, mode="edge")
        f = np.clip(f + 0.1 * (r[:-2, 1:-1] + r[2:, 1:-1] + r[1:-1, :-2] + r[1:-1, 2:] - 4 * r[1:-1, 1:-1] - divergence), 0.0, 255.0)
    assert (f == 0).any() and (f == 255).any()  # the clip is exercised
    np.testing.assert_array_equal(reconstruct(start, dx, dy, 30), f)


def test_mwgf_reports_its_reconstruction_steps_and_other_methods_ignore_a_progress_display() -> None:
    """get_baseline(name, steps=...) wraps mwgf's 500 steps of each RGB channel (a 12 MP pair takes a
    minute); the output is the same, and a method without long loops comes back as it is."""
    seen: list[tuple[int, str]] = []

    def steps(items, what):
        seen.append((len(items), what))
        return items

    rng = torch.Generator().manual_seed(2)
    a, b = torch.rand(1, 3, 24, 20, generator=rng), torch.rand(1, 3, 24, 20, generator=rng)
    assert torch.equal(fuse_color(get_baseline("mwgf", steps=steps), a, b), fuse_color(BASELINES["mwgf"], a, b))
    assert seen == [(500, f"mwgf, reconstruction of channel {k} of 3") for k in (1, 2, 3)]
    seen.clear()
    get_baseline("mwgf", steps=steps)(a[:, :1], b[:, :1])
    assert seen == [(500, "mwgf, reconstruction")]
    assert get_baseline("dsift", steps=steps) is BASELINES["dsift"] and get_baseline("dwt", steps=steps) is BASELINES["dwt"]


def test_matlab_imresize_to_a_quarter_keeps_constants_and_samples_a_ramp_where_it_maps() -> None:
    """Matlab maps output pixel x (1-based) to input 4 x - 1.5 and its cubic kernel keeps linear
    functions: inside the image a ramp I(i) = i comes out as 4 x - 1.5; a constant stays itself."""
    ramp = np.tile(np.arange(1.0, 41.0)[:, None], (1, 9))
    out = resize(ramp, 0.25)
    assert out.shape == (10, 3)
    np.testing.assert_allclose(out[3:7, 1], 4 * np.arange(4, 8) - 1.5, atol=1e-12)
    np.testing.assert_allclose(resize(np.full((13, 22), 7.0), 0.25), np.full((4, 6), 7.0), atol=1e-12)


def test_edge_runs_are_cleared_as_the_releases_deleteline_clears_them() -> None:
    """From the first pixel a run ending before the 13th (1-based) goes with the zero after it; to the
    last pixel a run of under 13 goes with the zero before it; longer runs stay."""
    column = np.zeros((40, 1), np.uint8)
    for start, stop, cleared in ((0, 11, True), (0, 12, False), (28, 40, True), (27, 40, False)):
        line = column.copy()
        line[start:stop] = 1
        assert (clear_edge_runs(line) == 0).all() == cleared, (start, stop)


def test_saliency_of_a_constant_gradient_and_the_mix_of_two() -> None:
    """A gradient (c, 0) everywhere has the eigenvalues c^2 and 0: sqrt(c^2 + 0.5 c^2). Two parallel
    gradients (3, 4), (6, 8) at weights 0.5 mix to their direction at length sqrt(1.5^2 + 2^2 + 3^2 + 4^2),
    pointing as their weighted mean: away from (3, 4) once the second is (-6, -8)."""
    np.testing.assert_allclose(saliency(np.full((9, 9), 2.0), np.zeros((9, 9)), 1.0), np.full((9, 9), 2.0 * np.sqrt(1.5)), rtol=1e-12)
    one = np.ones((1, 1))
    length = np.sqrt(1.5**2 + 2**2 + 3**2 + 4**2)
    for sign in (1, -1):
        gx, gy = mix_gradients(3 * one, 4 * one, sign * 6 * one, sign * 8 * one, 0.5 * one, 0.5 * one)
        np.testing.assert_allclose([gx[0, 0], gy[0, 0]], [sign * 0.6 * length, sign * 0.8 * length], rtol=1e-12)


def test_mwgf_soft_max_is_the_releases_where_finite_and_its_limit_where_the_release_overflows() -> None:
    lead, other = np.array([-3.0, 0.5, 40.0]), np.array([0.7, -0.2, 1.0])
    np.testing.assert_allclose(_soft_max(lead, other), (1 + np.exp(lead)) / (1 + np.exp(lead) + np.exp(other)), rtol=1e-14)
    with np.errstate(over="raise"):
        assert _soft_max(np.array([1e300]), np.array([1.0]))[0] == 1.0


def test_mwgf_weights_the_sharp_half_of_each_source(half_blurred: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A is sharp on the right: its weight is 1 there away from the seam, below the sky's flat top
    rows, where the two sources are the same and the release keeps the second; 0 on the left."""
    a, b = (x[0, 0].double().numpy() * 255 for x in half_blurred)
    weight = mwgf_weight(a, b)
    assert weight[40:-8, 80:-8].min() == 1 and weight[8:-8, 8:48].max() == 0
    assert float((half_blurred[0] - half_blurred[1])[0, 0, :16, 80:].abs().max()) < 2 / 255  # the sky: the same in both


# ---------------------------------------------------------------- colour as the releases fuse it
@pytest.fixture(scope="module")
def colour_half_blurred() -> tuple[torch.Tensor, torch.Tensor]:
    """An RGB photo, blurred on its left half in A and on its right half in B."""
    sharp = torch.nn.functional.interpolate(torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255, size=(128, 128), mode="area")
    blurred = kornia.filters.gaussian_blur2d(sharp, (9, 9), (2.0, 2.0), border_type="reflect")
    right = torch.zeros(1, 1, 128, 128)
    right[..., 64:] = 1.0
    return right * sharp + (1 - right) * blurred, (1 - right) * sharp + right * blurred


@pytest.mark.parametrize("name", ["laplacian_energy", "dsift"])
def test_a_decision_map_method_copies_each_rgb_pixel_of_the_source_it_picks(name: str, colour_half_blurred) -> None:
    """Its map drawn from the luminance blends every channel, so a pixel it takes from A is A's
    colour to the bit (the chroma rule would mix in B's chroma)."""
    a, b = colour_half_blurred
    decision = {"laplacian_energy": laplacian_energy_decision, "dsift": dsift_map}[name](luma(a), luma(b)).expand_as(a)
    fused = fuse_color(BASELINES[name], a, b)
    assert torch.equal(fused[decision == 1], a[decision == 1]) and torch.equal(fused[decision == 0], b[decision == 0])
    assert (decision[..., 80:] == 1).float().mean() > 0.8 and (decision[..., :48] == 0).float().mean() > 0.8  # both sources are copied from


def test_each_weighing_method_blends_rgb_by_its_luminance_weights_and_the_transforms_keep_the_chroma_rule(colour_half_blurred) -> None:
    a, b = colour_half_blurred
    torch.testing.assert_close(fuse_color(BASELINES["average"], a, b), (a + b) / 2, rtol=0, atol=0)
    weight = gfdf_weight(luma(a), luma(b))
    torch.testing.assert_close(fuse_color(BASELINES["gfdf"], a, b), (weight * a + (1 - weight) * b).clamp(0, 1), rtol=0, atol=0)
    for name in ("laplacian_pyramid", "dwt"):  # coefficients of the luminance: the fused Y, chroma by the rule
        assert not hasattr(BASELINES[name], "fuse_rgb")
        ya, ca = split_luma(a)
        yb, cb = split_luma(b)
        torch.testing.assert_close(fuse_color(BASELINES[name], a, b), merge_luma(BASELINES[name](ya, yb), fuse_chroma(ca, cb)))


@pytest.mark.slow
def test_the_ported_releases_score_their_published_lytro_qabf(lytro_pairs: Path) -> None:
    """DSIFT, GFF and MWGF as the MFIF benchmark lists them on the 20 Lytro pairs (0.7617, 0.7598,
    0.7475; docs/paper.md section 8), through the same colour path and metric as every method here."""
    published = {"dsift": 0.7617, "gff": 0.7598, "mwgf": 0.7475}
    scores: dict[str, list[float]] = {name: [] for name in published}
    for path in sorted(lytro_pairs.glob("lytro-*-A.jpg")):
        a, b = _load(path), _load(path.with_name(path.name.replace("-A.", "-B.")))
        for name in published:
            scores[name].append(float(qabf(a, b, fuse_color(BASELINES[name], a, b))[0]))
    assert all(len(values) == 20 for values in scores.values())
    means = {name: sum(values) / 20 for name, values in scores.items()}
    assert means == pytest.approx(published, abs=2e-4), means


def _bf_release(img1: np.ndarray, img2: np.ndarray, sw_sz: int = 7, scales: int = 5, b_sz: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The BF release's ``boundary_finding`` (decision map and fused image) rebuilt line by line on 0..255
    planes, each Matlab function written out with scipy and loops: region by region, box by box,
    pixel by pixel, 1-based bounding boxes as ``regionprops`` gives them, ``bwdist`` by brute force.
    Thinning and the watershed's flooding are scikit-image's calls here as in the port."""
    from skimage.morphology import reconstruction, thin
    from skimage.segmentation import watershed

    four, eight = ndimage.generate_binary_structure(2, 1), ndimage.generate_binary_structure(2, 2)

    def multiscale_morph(img: np.ndarray) -> np.ndarray:
        fm = np.zeros_like(img)
        for ii in range(1, scales + 1):
            se = disk_strel(2 * ii + 1).astype(bool)
            g = ndimage.grey_dilation(img, footprint=se, mode="constant", cval=-np.inf) - ndimage.grey_erosion(img, footprint=se, mode="constant", cval=np.inf)
            fm = fm + 1 / (2 * ii + 1) * g
        return fm

    def imfilter0(x: np.ndarray) -> np.ndarray:
        return ndimage.correlate(x, np.ones((sw_sz, sw_sz)), mode="constant", cval=0.0)

    def decision_map_detection(L: np.ndarray, fm1: np.ndarray, fm2: np.ndarray, conn: np.ndarray) -> np.ndarray:
        conn_reg, num = ndimage.label(L, structure=conn)
        decision_map = conn_reg.copy()
        for ii in range(1, num + 1):
            tag = conn_reg == ii
            s1, s2 = np.sum(fm1 * tag), np.sum(fm2 * tag)
            decision_map[tag] = 2 if s2 > s1 else (1 if s2 < s1 else 0)
        return decision_map

    def bwareaopen(bw: np.ndarray, p: int) -> np.ndarray:
        lab, num = ndimage.label(bw, structure=four)
        sizes = ndimage.sum(bw, lab, range(1, num + 1))
        return np.isin(lab, 1 + np.flatnonzero(np.asarray(sizes) >= p))

    def nearest_filter(map_: np.ndarray) -> np.ndarray:
        yy, xx = map_.shape
        tmap = map_ == 0
        lab, _ = ndimage.label(tmap, structure=eight)
        tl = np.zeros_like(map_)
        for ii, (rows, cols) in enumerate(ndimage.find_objects(lab), start=1):
            x, y = np.fix(cols.start + 1 - 0.5), np.fix(rows.start + 1 - 0.5)  # BoundingBox(1:2): 1-based corner - 0.5
            w, h = cols.stop - cols.start, rows.stop - rows.start
            left, right = max(1, x - 2), min(x + w + 1, xx)
            top, bottom = max(1, y - 2), min(y + h + 1, yy)
            region = map_[int(top) - 1 : int(bottom), int(left) - 1 : int(right)]
            n1, n2 = np.sum(region == 1), np.sum(region == 2)
            if n1 != n2:
                tl[lab == ii] = 1 if n1 > n2 else 2
        return map_ + tl * tmap

    def refine_boundary(decision_map: np.ndarray, boundary: np.ndarray) -> np.ndarray:
        refined = decision_map.copy()
        pad = np.pad(decision_map, 1, mode="symmetric")
        for x, y in zip(*np.nonzero(boundary)):
            box = pad[x : x + 3, y : y + 3]
            has1, has2 = (box == 1).any(), (box == 2).any()
            refined[x, y] = 1 if has1 and not has2 else (2 if has2 and not has1 else 0)
        return refined

    def boundary_reconstruction(decision_map: np.ndarray, boundary: np.ndarray, block_sz: int) -> np.ndarray:
        newmap = bwareaopen(decision_map == 1, block_sz) + 2 * bwareaopen(decision_map == 2, block_sz)
        return refine_boundary(nearest_filter(newmap - boundary.astype(int)), boundary)

    def maker_watershed(img: np.ndarray, marker_img: np.ndarray) -> np.ndarray:
        gmag = np.hypot(ndimage.correlate(img, np.array([[1.0, 0, -1]] * 3), mode="nearest"), ndimage.correlate(img, np.array([[1.0, 0, -1]] * 3).T, mode="nearest"))
        h = (gmag.max() - gmag.min()) * 0.001 or 0.1  # imimposemin on a double image, in its own words:
        fm = np.where(marker_img, -1e300, 1e300)  # fm(BW) = -Inf, fm(~BW) = Inf
        imposed = 1 - reconstruction(1 - fm, 1 - np.minimum(gmag + h, fm), method="dilation")  # imcomplement(imreconstruct(imcomplement(...)))
        labels, _ = ndimage.label(marker_img, structure=eight)
        basins = np.pad(watershed(imposed, labels, connectivity=2), 1, constant_values=np.iinfo(np.int32).max)
        lines = np.zeros(img.shape, bool)  # a basin's pixels with an 8-neighbour in a lower-labelled basin
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                lines |= basins[1 + dr : 1 + dr + img.shape[0], 1 + dc : 1 + dc + img.shape[1]] < basins[1:-1, 1:-1]
        return lines

    def fusion_image(decision_map: np.ndarray) -> np.ndarray:
        return np.floor((decision_map == 1) * img1 + (decision_map == 2) * img2 + (decision_map < 1) * (img1 + img2) / 2 + 0.5)

    fm1, fm2 = multiscale_morph(img1), multiscale_morph(img2)
    sum1, sum2 = imfilter0(fm1), imfilter0(fm2)
    sum_max = imfilter0(np.maximum(fm1, fm2))
    dif_max_min_sum = np.maximum(sum1, sum2) - np.minimum(sum1, sum2)
    dfmap = (dif_max_min_sum >= 0.8 * (sum_max - (sum1 + sum2 - sum_max))) & (dif_max_min_sum >= sw_sz**2)
    p1, p2 = img1.shape
    large = np.zeros((p1 + 4, p2 + 4), bool)
    large[2:-2, 2:-2] = dfmap
    line_map = thin(~large)[2:-2, 2:-2]
    lab, num = ndimage.label(line_map, structure=eight)
    area = np.asarray(ndimage.sum(line_map, lab, range(1, num + 1)))
    th = np.mean(np.sort(area)[::-1][: int(np.ceil(num * 0.2))]) if num else np.nan
    L = ~np.isin(lab, 1 + np.flatnonzero(area >= th))
    decision_map = decision_map_detection(L, fm1, fm2, four)
    smallsz = int(np.floor(p1 * p2 / 40 + 0.5))
    decision_map0 = boundary_reconstruction(decision_map, decision_map == 0, smallsz)
    marker_img = ndimage.grey_erosion(decision_map0, footprint=disk_strel(b_sz).astype(bool), mode="constant", cval=10**9) > 0
    b1, b2 = maker_watershed(fm1, marker_img), maker_watershed(fm2, marker_img)
    dm1, dm2 = decision_map_detection(~b1, fm1, fm2, four), decision_map_detection(~b2, fm1, fm2, four)
    better = np.mean(multiscale_morph(fusion_image(dm1))) > np.mean(multiscale_morph(fusion_image(dm2)))
    decision_map = boundary_reconstruction(dm1 if better else dm2, b1 if better else b2, smallsz)
    eroded = ndimage.grey_erosion(decision_map, footprint=disk_strel(3).astype(bool), mode="constant", cval=10**9)
    map1, map2 = eroded == 1, eroded == 2

    def bwdist(mask: np.ndarray) -> np.ndarray:  # brute force; Inf everywhere where the mask is empty
        return ndimage.distance_transform_bf(~mask, metric="euclidean") if mask.any() else np.full(mask.shape, np.inf)

    d1, d2 = bwdist(map1), bwdist(map2)
    eps = np.finfo(np.float64).eps
    with np.errstate(invalid="ignore"):  # Inf / Inf: the release's NaN, which uint8 makes 0
        coeff1, coeff2 = d2 / (d1 + d2 + eps), d1 / (d1 + d2 + eps)
        band = np.nan_to_num(np.floor((img1 * coeff1 + img2 * coeff2) * (eroded == 0) + 0.5), nan=0.0)
    return decision_map, np.floor(map1 * img1 + map2 * img2 + 0.5) + band


def _bf_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """0..255 planes of scikit-image's brick texture (128 x 128) and of the camera, one source sharp where
    the other is blurred (sigma 2): A sharp on the right half, or inside a disc (radius 35, A's region
    a quarter of the image: step 3 removes regions under a fortieth)."""
    pairs = {}
    for name, photo in (("brick", data.brick()), ("camera", data.camera())):
        image = torch.nn.functional.interpolate(torch.from_numpy(photo.astype(np.float32))[None, None], size=(128, 128), mode="area")[0, 0]
        image = image.double().numpy()
        blurred = ndimage.gaussian_filter(image, 2.0, mode="reflect")
        rows, cols = np.indices(image.shape)
        for shape, sharp in (("half", cols >= 64), ("disc", (rows - 70) ** 2 + (cols - 54) ** 2 < 35**2)):
            pairs[f"{name} {shape}"] = np.where(sharp, image, blurred), np.where(sharp, blurred, image)
    return pairs


def test_bf_matches_the_authors_release_rebuilt_in_numpy() -> None:
    """The port's map and fused plane equal the release's rebuilt line by line: on the brick's and the
    camera's pairs, one pair swapped, and on one where BF finds no region of A (the camera's disc: its
    flat sky; the blend's band is then empty, so the release's NaN never shows)."""
    from gipc.baselines.bf import bf_map, bf_weights

    pairs = _bf_pairs()
    for first, second in [*pairs.values(), pairs["brick half"][::-1]]:
        decision, fused = _bf_release(first, second)
        port = bf_map(first, second)
        np.testing.assert_array_equal(port, decision)
        w1, w2 = bf_weights(port)
        np.testing.assert_allclose(np.floor(w1 * first + w2 * second + 0.5), fused, rtol=0, atol=1e-12)
    assert (bf_map(*pairs["camera disc"]) == 2).all()


def test_bf_puts_each_source_where_it_is_sharp_and_copies_it_there() -> None:
    """On texture (the brick), the map is A's over the sharp half of A, B's over the other half, away
    from the boundary, and A's inside the disc; the fused image copies A's pixels there, rounded to 8 bits."""
    from gipc.baselines.bf import bf_map

    pairs = _bf_pairs()
    decision = bf_map(*pairs["brick half"])
    assert (decision[:, 72:] == 1).all() and (decision[:, :56] == 2).all()
    a, b = (torch.from_numpy(x / 255)[None, None] for x in pairs["brick half"])
    fused = BASELINES["bf"](a, b)[0, 0].numpy() * 255
    np.testing.assert_allclose(fused[:, 76:], np.floor(pairs["brick half"][0][:, 76:] + 0.5), atol=1e-9)  # past the blend's 3 px band
    rows, cols = np.indices(decision.shape)
    disc = bf_map(*pairs["brick disc"])
    assert ((disc == 1) == ((rows - 70) ** 2 + (cols - 54) ** 2 < 35**2)).mean() > 0.95


def test_bf_of_an_8bit_image_with_itself_is_that_image(camera: torch.Tensor) -> None:
    """Equal sources leave every region undecided; the release's blend is then NaN (no region to measure
    distances to), the port's takes the first source: the 8-bit image itself, as for the other methods."""
    levels = (camera * 255).round() / 255
    torch.testing.assert_close(BASELINES["bf"](levels, levels), levels, rtol=0, atol=1e-7)


def test_bf_gives_a_removed_region_the_majority_of_its_releases_lopsided_box() -> None:
    """``Nearest_Filter`` grows a region's bounding box by 3 px up and left and 1 px down and right (its
    ``fix`` of regionprops' half-pixel corner, less 2): rows 1-6 and columns 1-6 around a 2 x 2 hole
    at rows and columns 4-5 hold 18 ones (rows 1-3) against 14 twos, so the hole takes 1, where a box
    grown 2 px each way (rows and columns 2-6: 10 ones, 11 twos) would give it 2. By hand."""
    from gipc.baselines.bf import nearest_filter

    decision = np.full((10, 10), 2)
    decision[:4] = 1
    decision[4:6, 4:6] = 0
    filtered = nearest_filter(decision)
    assert (filtered[4:6, 4:6] == 1).all() and np.array_equal(filtered[decision != 0], decision[decision != 0])
