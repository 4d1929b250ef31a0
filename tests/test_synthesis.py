"""Equations 18-19, decision-map sources, the seeded split and the embedded set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.segmentation import morphological_chan_vese

from gipc.data.decision_maps import bars, blobs, disparity, from_file, make_map, region_competition
from gipc.data.embedded import CATALOGUE, embedded_set, load_photo
from gipc.data.scene import scene_generator, split_names, synthesize_scene
from gipc.data.synthesis import (
    blur_kernel_size, defocus_spread, disk_blur, disk_kernel, fit_longest_side, gaussian_blur, random_blobs, soften, synthesize_pair,
)
from gipc.errors import DataError
from gipc.imaging import write_image


def _image(seed: int = 0, shape: tuple[int, ...] = (1, 3, 40, 48)) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_blur_matches_scipy_gaussian_filter() -> None:
    """kornia 'reflect' is scipy 'mirror'; a +-3 sigma kernel is scipy's truncate=3."""
    image = _image(shape=(1, 1, 30, 34))
    ours = gaussian_blur(image, 2.0)[0, 0].numpy()
    ref = ndimage.gaussian_filter(image[0, 0].double().numpy(), 2.0, mode="mirror", truncate=3.0)
    assert blur_kernel_size(2.0) == 13
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("radius", [1.3, 4.0, 7.5])
def test_disk_kernel_is_a_normalized_pillbox_with_the_disk_variance(radius: float) -> None:
    """A uniform disk of radius r has per-axis variance r^2 / 4 and area pi r^2 (about which pixels hold it)."""
    kernel = disk_kernel(radius).double()
    half = kernel.shape[-1] // 2
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(kernel, kernel.flip(0)) and torch.equal(kernel, kernel.T)
    variance = (kernel.sum(dim=0) * coords**2).sum().item()  # per-axis variance at pixel centres
    assert variance == pytest.approx(radius**2 / 4 + 1 / 12, rel=0.04)  # Sheppard: grouping adds 1/12
    distance = (coords[:, None] ** 2 + coords[None, :] ** 2).sqrt()  # of each pixel's centre
    full = kernel.max()
    assert torch.all(kernel[distance < radius - math.sqrt(0.5)] == full)  # pixels wholly inside
    assert torch.all(kernel[distance > radius + math.sqrt(0.5)] == 0)  # pixels wholly outside
    rim = (distance > radius - math.sqrt(0.5)) & (distance < radius + math.sqrt(0.5))
    assert torch.all(kernel[rim] <= full) and 0 < kernel[rim].mean() < full  # partly covered


def test_disk_blur_keeps_flat_images_and_has_the_gaussians_std() -> None:
    """Same mean, same std (r = 2 sigma) as the Gaussian it replaces, but a flat top: a point spreads evenly."""
    flat = torch.full((1, 1, 20, 20), 0.3)
    torch.testing.assert_close(disk_blur(flat, 2.0), flat)
    point = torch.zeros(1, 1, 41, 41)
    point[..., 20, 20] = 1.0
    disk, gauss = disk_blur(point, 3.0)[0, 0], gaussian_blur(point, 3.0)[0, 0]
    coords = (torch.arange(41.0) - 20) ** 2
    assert (disk.sum(0) * coords).sum().item() == pytest.approx((gauss.sum(0) * coords).sum().item(), rel=0.05)
    assert disk[20, 20].item() == pytest.approx(disk[20, 23].item(), rel=1e-5)  # flat inside the rim
    assert gauss[20, 20] > 1.5 * gauss[20, 23]
    with pytest.raises(ValueError, match="too large"):
        disk_blur(torch.rand(1, 1, 8, 8), 5.0)  # radius 10 px


def test_pair_is_image_where_focused_and_blur_elsewhere() -> None:
    image = _image()
    focus = torch.zeros(1, 1, 40, 48)
    focus[..., :, :20] = 1.0
    a, b = synthesize_pair(image, focus, sigma=1.5)
    blurred = gaussian_blur(image, 1.5)
    torch.testing.assert_close(a[..., :20], image[..., :20])
    torch.testing.assert_close(a[..., 20:], blurred[..., 20:])
    torch.testing.assert_close(b[..., :20], blurred[..., :20])
    torch.testing.assert_close(b[..., 20:], image[..., 20:])


def test_pair_by_hand_on_a_point_with_a_soft_boundary() -> None:
    """Eq. 18-19 with a 3-tap kernel of sigma 1, taps (e^-1/2, 1, e^-1/2) / (1 + 2 e^-1/2), on a point of light at (3, 3)
    whose column the map holds at F = 0.25 (1 to its left, 0 to its right)."""
    point = torch.zeros(1, 1, 7, 7)
    point[..., 3, 3] = 1.0
    focus = torch.tensor([1.0, 1.0, 1.0, 0.25, 0.0, 0.0, 0.0]).expand(1, 1, 7, 7)
    a, b = synthesize_pair(point, focus, sigma=1.0, kernel_size=3)
    centre, side = 1 / (1 + 2 * math.exp(-0.5)), math.exp(-0.5) / (1 + 2 * math.exp(-0.5))
    by_hand = {  # (row, column): (A, B)
        (3, 3): (0.25 + 0.75 * centre**2, 0.25 * centre**2 + 0.75),  # the point, a quarter in focus in A
        (2, 3): (0.75 * centre * side, 0.25 * centre * side),  # its blur above it, mixed alike
        (3, 4): (centre * side, 0.0),  # right of it: blurred in A, sharp (dark) in B
        (3, 2): (0.0, centre * side),  # left of it: sharp in A, blurred in B
        (3, 5): (0.0, 0.0),  # two pixels away: beyond the 3-tap kernel
    }
    for (row, col), expected in by_hand.items():
        assert (a[0, 0, row, col].item(), b[0, 0, row, col].item()) == pytest.approx(expected, abs=1e-6), (row, col)


def test_pair_sums_to_image_plus_blur_for_any_soft_map() -> None:
    """Adding eq. 18 and eq. 19 cancels F: A + B = I + blur(I)."""
    image, focus = _image(1), _image(2, (1, 1, 40, 48))
    a, b = synthesize_pair(image, focus, sigma=2.0)
    torch.testing.assert_close(a + b, image + gaussian_blur(image, 2.0))


def test_defocus_spread_is_eq_18_19_away_from_the_boundary_and_halos_the_far_layer_beside_it() -> None:
    """Near layer left of column 24, blur sigma 1 (+-3 px): past 3 px from the edge both models agree;
    on the background side just right of it, B carries a blurred foreground halo eq. 19 lacks."""
    image = torch.zeros(1, 1, 32, 48)
    image[..., :24] = 1.0  # a bright near object on a black background
    focus = (torch.arange(48) < 24).float().expand(1, 1, 32, 48)
    blur = lambda x: gaussian_blur(x, 1.0)  # noqa: E731
    a, b = defocus_spread(image, focus, blur)
    a19, b19 = synthesize_pair(image, focus, sigma=1.0)
    far = torch.cat([torch.arange(0, 20), torch.arange(28, 48)])
    torch.testing.assert_close(a[..., far], a19[..., far])
    torch.testing.assert_close(b[..., far], b19[..., far])
    torch.testing.assert_close(a, a19)  # A: the sharp object over its blurred background is eq. 18 exactly
    assert b19[0, 0, 16, 24].item() == 0.0  # eq. 19: the sharp black background right of the edge
    halo = gaussian_blur(image, 1.0)[0, 0, 16, 24].item()  # the blurred object spread over it
    assert b[0, 0, 16, 24].item() == pytest.approx(halo, abs=1e-6) and halo > 0.3


def test_defocus_spread_far_layer_beside_the_boundary_is_the_blurred_near_layer_over_its_uncovered_share() -> None:
    """Eq. B = blur(F I) + (1 - blur(F)) I on a textured photo, each blur by scipy (kornia 'reflect' is scipy 'mirror',
    +-3 sigma is truncate=3): columns 22..25 straddle the edge at 24, where blur(F) is neither 0 nor 1."""
    image = _image(3, (1, 1, 32, 48))
    focus = (torch.arange(48) < 24).float().expand(1, 1, 32, 48)
    _, b = defocus_spread(image, focus, lambda x: gaussian_blur(x, 1.0))
    blur = lambda x: torch.from_numpy(ndimage.gaussian_filter(x[0, 0].double().numpy(), 1.0, mode="mirror", truncate=3.0))  # noqa: E731
    covered = blur(focus)
    w = [math.exp(-(k**2) / 2) for k in range(4)]  # the 7-tap Gaussian of sigma 1
    assert covered[16, 24].item() == pytest.approx((w[1] + w[2] + w[3]) / (w[0] + 2 * (w[1] + w[2] + w[3])))  # about 0.30
    expected = blur(focus * image) + (1 - covered) * image[0, 0].double()
    torch.testing.assert_close(b[0, 0, :, 22:26].double(), expected[:, 22:26], atol=1e-5, rtol=0)


@pytest.mark.parametrize("blur", [gaussian_blur, disk_blur], ids=["gaussian", "disk"])
def test_sigma_zero_is_no_blur_and_a_negative_one_is_refused(blur) -> None:
    """A recipe's range may start at 0 (in focus): the image comes back as it is, even one too small for any kernel."""
    image = _image(shape=(1, 1, 2, 3))
    out = blur(image, 0.0)
    assert torch.equal(out, image) and out is not image
    with pytest.raises(ValueError, match=r"^sigma must be >= 0, got -0.5$"):
        blur(image, -0.5)


def test_blur_keeps_a_constant_image_and_rejects_bad_sizes() -> None:
    flat = torch.full((1, 1, 20, 20), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 3.0), flat)
    with pytest.raises(ValueError, match="too large"):
        gaussian_blur(torch.rand(1, 1, 5, 5), 3.0)
    # sigma 1: a 7x7 kernel, whose 3 px of reflect padding need 4 px: a 3 px side is refused in one line, 4 px is blurred
    with pytest.raises(ValueError, match=r"^blur kernel 7x7 \(sigma 1.0\) is too large for a 40x3 image; use a smaller sigma or a larger image$"):
        gaussian_blur(torch.rand(1, 1, 3, 40), 1.0)
    four = _image(shape=(1, 1, 4, 40))
    ref = ndimage.gaussian_filter(four[0, 0].double().numpy(), 1.0, mode="mirror", truncate=3.0)
    np.testing.assert_allclose(gaussian_blur(four, 1.0)[0, 0].numpy(), ref, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected image \(B,C,H,W\) and map \(B,1,H,W\)"):
        synthesize_pair(flat, torch.ones(1, 3, 20, 20), 1.0)  # one map for every channel, not one per channel
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(flat, 1.0, kernel_size=4)
    with pytest.raises(ValueError, match="differ"):
        synthesize_pair(flat, torch.ones(1, 1, 20, 21), 1.0)


def test_soften_blurs_only_near_the_boundary_and_stays_antisymmetric() -> None:
    mask = torch.zeros(1, 40, 40)
    mask[..., 20:] = 1.0
    assert torch.equal(soften(mask, 0.0), mask)
    soft = soften(mask, 2.0)
    row = soft[0, 10]
    assert row[:14].max() == 0  # beyond the 3-sigma kernel radius (6 px): untouched
    torch.testing.assert_close(row[26:], torch.ones(14))
    assert 0 < row[19] < 0.5 < row[20] < 1
    torch.testing.assert_close(row[19] + row[20], torch.tensor(1.0))  # blurred step is point-symmetric


def test_soften_fits_its_kernel_to_a_map_smaller_than_it() -> None:
    """Width 2 wants a 13-tap kernel; a 6 px map's reflect padding holds 5 px, so 11 taps (+-2.5 sigma, scipy's
    truncate=2.5, kornia 'reflect' is scipy 'mirror')."""
    mask = torch.zeros(1, 6, 6)
    mask[..., 3:] = 1.0
    expected = ndimage.gaussian_filter(mask[0].double().numpy(), 2.0, mode="mirror", truncate=2.5)
    np.testing.assert_allclose(soften(mask, 2.0)[0].numpy(), expected, atol=1e-6)


def test_random_blobs_area_binary_and_seeded() -> None:
    first = random_blobs(96, 128, torch.Generator().manual_seed(3), blob_size=32, fraction=0.3)
    again = random_blobs(96, 128, torch.Generator().manual_seed(3), blob_size=32, fraction=0.3)
    other = random_blobs(96, 128, torch.Generator().manual_seed(4), blob_size=32, fraction=0.3)
    assert first.shape == (1, 96, 128)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert abs(first.mean().item() - 0.3) < 0.01
    assert torch.equal(first, again) and not torch.equal(first, other)
    _, components = ndimage.label(first[0].numpy())
    assert components <= 20  # smooth blobs, not salt-and-pepper noise


def test_bars_add_thin_straight_bars_to_the_seeds_blobs() -> None:
    image = torch.zeros(3, 120, 160)
    one = bars(image, torch.Generator().manual_seed(3), count=(1, 1), width=5, blob_size=40, fraction=0.25)
    blob_part = blobs(image, torch.Generator().manual_seed(3), blob_size=40, fraction=0.25)  # the same first draws
    assert set(one.unique().tolist()) <= {0.0, 1.0} and torch.equal(one, bars(image, torch.Generator().manual_seed(3), count=(1, 1), blob_size=40))
    extra = (one > blob_part)[0].numpy()
    assert extra.sum() > 5 * 20  # a bar of at least 20 px outside the blobs (seed 3)
    yy, xx = np.mgrid[-3:4, -3:4]
    assert not ndimage.binary_opening(extra, xx**2 + yy**2 <= 9).any()  # nothing 7 px wide: a bar, not a blob
    assert ndimage.binary_opening(extra, np.ones((3, 3), bool)).sum() > 0.5 * extra.sum()  # but wider than a line
    more = bars(image, torch.Generator().manual_seed(3), count=(6, 6), blob_size=40)
    assert torch.all(more >= blob_part) and more.sum() > one.sum()


def _disc(inverted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.meshgrid(torch.arange(120), torch.arange(160), indexing="ij")
    disc = ((rows - 60) ** 2 + (cols - 80) ** 2 < 35**2).float()
    image = 0.7 * (1 - disc if inverted else disc) + 0.15 + 0.05 * _image(5, (120, 160))
    return image.expand(3, -1, -1), disc


@pytest.mark.parametrize("inverted", [False, True])
def test_region_competition_finds_the_central_object(inverted: bool) -> None:
    image, disc = _disc(inverted)
    found = region_competition(image)[0]
    iou = (found * disc).sum() / ((found + disc) > 0).sum()
    assert iou > 0.9


@pytest.mark.parametrize("column", [53.5, 17.5], ids=["right", "left"])
def test_region_competition_keeps_the_phase_nearer_the_centre_when_chan_vese_labels_the_background(column: float) -> None:
    """A small object right (or, mirrored, left) of the centre of a 24x72 image (no resizing below 96 px): Chan-Vese's
    initial disk lies in the background, so with smoothing 1 its phase 1 grows over the background within 80 iterations
    and the object is phase 0. The object (mean distance from the centre about 0.25) lies nearer the centre than the
    background (0.38), on either side."""
    rows, cols = torch.meshgrid(torch.arange(24), torch.arange(72), indexing="ij")
    obj = ((rows - 11.5) ** 2 + (cols - column) ** 2 < 5**2).float()
    image = 0.7 * obj + 0.15 + 0.05 * _image(5, (24, 72))
    phase = morphological_chan_vese(image.double().numpy(), 80, init_level_set="disk", smoothing=1)
    assert (phase == 1 - obj.numpy()).mean() > 0.97  # control: the raw phase is the background
    found = region_competition(image.expand(3, -1, -1), iterations=80, smoothing=1)[0]
    assert (found * obj).sum() / ((found + obj) > 0).sum() > 0.9


def test_disparity_threshold_closed_form() -> None:
    depth = torch.arange(40.0).reshape(4, 10)
    depth[0, 0] = float("inf")  # an occlusion: never in focus
    image = torch.zeros(3, 4, 10)
    near = disparity(image, depth=depth)[0]  # valid 1..39: the 20th smallest, 20, is the cut
    assert near.flatten()[:21].sum() == 0 and near.flatten()[21:].all()
    far = disparity(image, depth=depth, nearer_is_larger=False)[0]
    assert far.sum() == 20 and far.flatten()[1:21].all()
    nearest_quarter = disparity(image, depth=depth, quantile=0.25)[0]  # round(0.25 * 39) = 10: the cut is 10
    assert nearest_quarter.flatten()[:11].sum() == 0 and nearest_quarter.flatten()[11:].all()
    with pytest.raises(DataError, match="needs a depth"):
        disparity(image)
    for quantile in (0.0, 1.0):
        with pytest.raises(DataError, match=rf"^disparity quantile must be in \(0, 1\), got {quantile}$"):
            disparity(image, depth=depth, quantile=quantile)
    with pytest.raises(DataError, match=r"^depth map \(4, 9\) does not match image \(4, 10\)$"):
        disparity(image, depth=depth[:, :9])


def test_file_source_reads_and_thresholds_a_mask(tmp_path) -> None:
    mask = torch.zeros(1, 8, 12)
    mask[:, 2:6, 3:9] = 0.8
    write_image(tmp_path / "m.png", mask)
    hard = make_map("file", torch.zeros(3, 8, 12), torch.Generator(), path=tmp_path / "m.png")
    assert torch.equal(hard, (mask > 0.5).float())
    soft = from_file(torch.zeros(3, 8, 12), path=tmp_path / "m.png", threshold=None)
    torch.testing.assert_close(soft, mask, atol=1 / 255, rtol=0)
    with pytest.raises(DataError, match="resize the mask"):
        from_file(torch.zeros(3, 9, 12), path=tmp_path / "m.png")
    with pytest.raises(DataError, match="unknown decision-map source"):
        make_map("drc", torch.zeros(3, 8, 12), torch.Generator())


def test_split_is_seeded_disjoint_and_order_free() -> None:
    names = [f"im{i:03d}" for i in range(120)]
    train, test = split_names(names, 0.25, seed=7)
    assert len(test) == 30 and len(train) == 90  # section 4.1: 90 train / 30 test
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(names)
    assert split_names(list(reversed(names)), 0.25, seed=7) == (train, test)
    assert split_names(names, 0.25, seed=8)[1] != test
    assert split_names(["x", "y"], 0.1, seed=0)[1] != []  # never an empty test set from >= 2 images
    assert split_names(names, 0.0, seed=0) == (sorted(names), [])  # unless none is asked for: train on all
    with pytest.raises(DataError):
        split_names(names, 1.0, seed=0)


def test_scene_generator_depends_on_seed_and_name_only() -> None:
    draw = lambda seed, name: torch.rand(3, generator=scene_generator(seed, name))  # noqa: E731
    assert torch.equal(draw(1, "a"), draw(1, "a"))
    assert not torch.equal(draw(1, "a"), draw(1, "b")) and not torch.equal(draw(1, "a"), draw(2, "a"))


def test_synthesize_scene_blobs_map_and_gt() -> None:
    image = _image(9, (3, 64, 64))
    made = synthesize_scene("x", image, "blobs", seed=1, sigma=1.0, soft=0.0, blob_size=16)
    focus = made.focus_map
    assert made.gt is image
    assert 0.2 < focus.mean() < 0.8 and set(focus.unique().tolist()) == {0.0, 1.0}  # both sides present, hard (soft 0)
    inside = focus.bool().expand(3, -1, -1)
    blurred = gaussian_blur(image[None], 1.0)[0]  # eq. 18-19: each source is the photo blurred where not in focus
    torch.testing.assert_close(made.a[inside], image[inside])
    torch.testing.assert_close(made.a[~inside], blurred[~inside])
    torch.testing.assert_close(made.b[~inside], image[~inside])
    torch.testing.assert_close(made.b[inside], blurred[inside])


def test_synthesize_scene_softens_the_map_and_mixes_by_it() -> None:
    """soft=2: the hard (soft=0) map of the same seed under a Gaussian of std 2 px, as scipy computes it (reflect
    padding is scipy 'mirror', +-3 sigma truncate=3); fractional at the boundary, and eq. 18 mixes by it."""
    image = _image(9, (3, 64, 64))
    hard = synthesize_scene("x", image, "blobs", seed=1, sigma=1.0, soft=0.0, blob_size=16).focus_map
    made = synthesize_scene("x", image, "blobs", seed=1, sigma=1.0, soft=2.0, blob_size=16)
    expected = torch.from_numpy(ndimage.gaussian_filter(hard[0].double().numpy(), 2.0, mode="mirror", truncate=3.0)).clamp(0, 1)
    torch.testing.assert_close(made.focus_map[0].double(), expected, atol=1e-5, rtol=0)
    assert ((made.focus_map > 0.05) & (made.focus_map < 0.95)).float().mean() > 0.05  # a band of partial focus
    blurred = gaussian_blur(image[None], 1.0)[0]
    torch.testing.assert_close(made.a, made.focus_map * image + (1 - made.focus_map) * blurred)


def test_fit_longest_side_rounds_to_the_nearest_size_and_averages_what_it_shrinks() -> None:
    assert fit_longest_side(torch.rand(3, 55, 70), 20).shape == (3, 16, 20)  # 55 * 20 / 70 = 15.7
    assert fit_longest_side(torch.rand(3, 70, 55), 20).shape == (3, 20, 16)
    stripes = (torch.arange(60) % 2).float().expand(1, 60, 60)  # one-pixel stripes, three per output pixel
    assert (fit_longest_side(stripes, 20) - 0.5).abs().max() < 0.06  # their grey, not every third stripe
    depth = (torch.arange(60) // 30).float().expand(1, 60, 60)
    assert set(fit_longest_side(depth, 20, nearest=True).unique().tolist()) == {0.0, 1.0}  # nearest: no depth in between


def test_embedded_photos_are_bundled_and_downscaled() -> None:
    photo = load_photo("motorcycle_left", max_side=128)
    assert photo.image.shape == (3, 86, 128) and photo.map_source == "disparity"
    assert photo.map_options["depth"].shape == (86, 128)
    assert load_photo("text", 1000).image.shape == (1, 172, 448)  # never upscaled
    assert len(CATALOGUE) >= 15
    with pytest.raises(DataError, match="unknown embedded photo"):
        load_photo("lena", 64)


def test_embedded_set_split_and_equations() -> None:
    built = embedded_set(seed=3, sigma=1.5, max_side=96, test_fraction=0.34, names=("text", "page", "coins"))
    assert len(built.train) == 2 and len(built.test) == 1
    assert {s.name for s in built.train}.isdisjoint({s.name for s in built.test})
    for scene in built.train + built.test:
        blurred = gaussian_blur(scene.gt[None], 1.5)[0]
        torch.testing.assert_close(scene.a, scene.focus_map * scene.gt + (1 - scene.focus_map) * blurred)
        assert 0.05 < scene.focus_map.mean() < 0.95
    assert embedded_set(seed=3, sigma=1.5, max_side=96, test_fraction=0.34, names=("text", "page", "coins")) is built


def test_random_blobs_boundaries_scale_inversely_with_blob_size_and_are_round() -> None:
    """Blobs twice as large have half the boundary per area: the share of pixels whose right (or lower)
    neighbour differs halves with each doubling of ``blob_size``; and blobs are as tall as wide, so both
    shares are alike (means over 6 seeds, within 15 %)."""

    def boundary(size: int) -> tuple[float, float]:
        maps = [random_blobs(192, 256, torch.Generator().manual_seed(seed), blob_size=size)[0] for seed in range(6)]
        across = sum(float((m[:, 1:] != m[:, :-1]).float().mean()) for m in maps)
        down = sum(float((m[1:] != m[:-1]).float().mean()) for m in maps)
        return across, down

    shares = [boundary(size) for size in (8, 16, 32)]
    for across, down in shares:
        assert across / down == pytest.approx(1.0, rel=0.15)
    totals = [sum(pair) for pair in shares]
    assert totals[0] / totals[1] == pytest.approx(2.0, rel=0.15) and totals[1] / totals[2] == pytest.approx(2.0, rel=0.15)
