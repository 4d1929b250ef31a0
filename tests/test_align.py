"""Registering a hand-held bracket: a known shift, turn and magnification undone, a registered pair
left as it is (also when the fit would move it without bringing its edges closer), failures refused
in one line, and ``gipc-fuse --align`` end to end."""

from __future__ import annotations

import math
import re
from pathlib import Path

import kornia
import numpy as np
import pytest
import skimage.data
import torch

import gipc.align
import gipc.color
from gipc.align import align, corner_moves
from gipc.cli.fuse import main
from gipc.errors import UserError
from gipc.imaging import read_image, write_image
from gipc.metrics import psnr


def _bracket() -> tuple[torch.Tensor, torch.Tensor]:
    """The astronaut photo (256 px) sharp on the left in A and on the right in B: a registered pair."""
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float()[None] / 255
    photo = torch.nn.functional.interpolate(photo, size=(256, 256), mode="area")
    blurred = kornia.filters.gaussian_blur2d(photo, (13, 13), (2.5, 2.5))
    left = torch.zeros(1, 1, 256, 256)
    left[..., :128] = 1.0
    return (photo * left + blurred * (1 - left))[0], (blurred * left + photo * (1 - left))[0]


def _moved(image: torch.Tensor) -> torch.Tensor:
    """``image`` as a hand-held shot with focus breathing: turned 0.6 degrees, magnified 1.5 %, moved (5, -3) px."""
    h, w = image.shape[-2:]
    m = kornia.geometry.get_rotation_matrix2d(torch.tensor([[w / 2, h / 2]]), torch.tensor([0.6]), torch.tensor([[1.015, 1.015]]))
    m[:, 0, 2] += 5.0
    m[:, 1, 2] -= 3.0
    return kornia.geometry.warp_affine(image[None], m, (h, w), padding_mode="reflection")[0]


def _shift(x: float = 0.0, y: float = 0.0) -> torch.Tensor:
    """The normalised transform that samples each pixel (x, y) half-widths and half-heights away: content moves by (-x, -y)."""
    return torch.tensor([[[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]]])


def _fitted(monkeypatch: pytest.MonkeyPatch, transform: torch.Tensor) -> None:
    """Every registration fits ``transform`` and finds that it brings the edges closer."""
    monkeypatch.setattr(gipc.align, "estimate", lambda moving, fixed, model: transform)
    monkeypatch.setattr(gipc.align, "improves_edges", lambda moving, fixed, transform: True)


def _place(frame: torch.Tensor, crop: torch.Tensor) -> tuple[int, int]:
    """Where ``crop`` (C, h, w) sits in ``frame`` (C, H, W): the top and left of the window it equals."""
    h, w = crop.shape[-2:]
    (place,) = [(y, x) for y in range(frame.shape[1] - h + 1) for x in range(frame.shape[2] - w + 1) if torch.equal(frame[:, y : y + h, x : x + w], crop)]
    return place


def test_a_moved_source_is_put_back_onto_the_first_and_both_are_cropped_alike() -> None:
    a, b = _bracket()
    aligned_a, aligned_b = align([a, _moved(b)])
    h, w = aligned_a.shape[-2:]
    assert aligned_b.shape == aligned_a.shape and 256 - 20 <= h < 256 and 256 - 20 <= w < 256
    top, left = _place(a, aligned_a)  # the first source is only cropped
    unmoved = b[None, :, top : top + h, left : left + w]
    assert float(psnr(aligned_b[None], unmoved)) > 37.0  # B moved and put back: 38.4 dB for the exact inverse, bicubic (bilinear: 35.6)
    assert float(psnr(_moved(b)[None, :, top : top + h, left : left + w], unmoved)) < 22.0  # what alignment undid


def _normalised(matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A (2, 3) pixel transform (kornia's warp_affine matrix: where each source pixel goes) as the
    normalised (1, 3, 3) one registration returns, which takes each aligned pixel to its place in the source."""
    pixel = torch.eye(3)
    pixel[:2] = matrix
    to_unit = torch.tensor([[2 / width, 0.0, 1 / width - 1], [0.0, 2 / height, 1 / height - 1], [0.0, 0.0, 1.0]])
    return (to_unit @ pixel @ torch.linalg.inv(to_unit))[None]


def _breathing_stack(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A hand-held stack of ``count`` 384 px frames, each sharp in its own vertical band and blurred
    elsewhere by 1.5 px more per band away, each magnified 0.4 % more, turned 0.1 degree more and moved
    (1.5, 0.75) px more than the last: (frame, its known normalised transform) each."""
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float()[None] / 255
    photo = torch.nn.functional.interpolate(photo, size=(384, 384), mode="area")
    band = torch.arange(384).expand(384, 384) * count // 384
    frames = []
    for k in range(count):
        frame = torch.zeros_like(photo)
        for j in range(count):
            sigma = 1.5 * abs(j - k)
            blurred = photo if sigma == 0 else kornia.filters.gaussian_blur2d(photo, (2 * math.ceil(3 * sigma) + 1,) * 2, (sigma, sigma))
            frame = torch.where(band == j, blurred, frame)
        m = kornia.geometry.get_rotation_matrix2d(torch.tensor([[192.0, 192.0]]), torch.tensor([0.1 * k]), torch.tensor([[1 + 0.004 * k] * 2]))
        m[:, 0, 2] += 1.5 * k
        m[:, 1, 2] += 0.75 * k
        frames.append((kornia.geometry.warp_affine(frame, m, (384, 384), padding_mode="border")[0], _normalised(m[0], 384, 384)))
    return frames


def _corner_error(fit: torch.Tensor, truth: torch.Tensor) -> float:
    """How far (px) ``fit`` puts the 384 px frame's farthest corner from where ``truth`` puts it."""
    return float((corner_moves(fit, 384, 384) - corner_moves(truth, 384, 384)).norm(dim=1).max())


def test_each_frame_of_a_breathing_stack_is_found_within_a_fraction_of_a_pixel() -> None:
    """Every frame of a 5-frame stack fitted onto the first puts its corners within 0.3 px of where the
    known transform puts them, though the last frame and the first share no sharp band."""
    (first, _), *rest = _breathing_stack(5)
    for frame, truth in rest:
        assert _corner_error(gipc.align.estimate(frame[None], first[None]), truth) < 0.3


def test_a_longer_stacks_chained_fits_stay_within_a_fraction_of_a_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 frames fitted each onto the one before and chained, as ``register`` does: the last frame's
    corners land within 0.5 px of the known transform's (0.37 px). Each link's detail lies in two
    bands, and an affine fit made a similarity by its mean linear part, the top-left corner kept,
    put it 0.66 px out: that projection moved the bands a little at every link, and the chain adds it up."""
    stack = _breathing_stack(8)
    chained: list[torch.Tensor] = []
    warp = gipc.align.warp
    monkeypatch.setattr(gipc.align, "warp", lambda image, transform, grid: chained.append(transform) or warp(image, transform, grid))
    gipc.align.register([frame for frame, _ in stack])
    errors = [_corner_error(fit, truth) for fit, (_, truth) in zip(chained, stack[1:], strict=True)]
    assert max(errors) < 0.5


def test_the_nearest_similarity_keeps_the_affine_fit_where_the_detail_is() -> None:
    """A shear x' = x + 0.02 y with all the detail in a 10 px column at x 90..99 of a 100 px plane: by hand,
    the centre (94.5, 49.5), moments sxx 8250 and syy 833250, so a rotation with sine -0.02 * 833250 /
    841500 and the centre kept; every detailed pixel then lands within 0.1 px of the shear's place
    (the mean linear part with the top-left corner kept: 1.4 px off at the column's foot). An exact
    similarity stays itself."""
    shear = np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    weights = np.zeros((100, 100))
    weights[:, 90:] = 1.0
    similarity = gipc.align.nearest_similarity(shear, weights)
    sine = -0.02 * 833250 / 841500
    assert similarity[:2, :2] == pytest.approx(np.array([[1.0, -sine], [sine, 1.0]]))
    centre = np.array([94.5, 49.5, 1.0])
    assert similarity @ centre == pytest.approx(shear @ centre)
    ys, xs = np.mgrid[0:100, 90:100]
    column = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    assert np.abs(similarity @ column - shear @ column).max() < 0.1
    turn = np.array([[0.99, -0.05, 3.0], [0.05, 0.99, -2.0], [0.0, 0.0, 1.0]])
    assert gipc.align.nearest_similarity(turn, weights) == pytest.approx(turn)


def test_each_source_is_fitted_onto_the_one_before_it_and_the_fits_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack's fits compose: each frame is fitted onto its neighbour (the frame that shares the most
    detail in focus with it), and three links of 2.56 px (0.02 of the half width) put the last frame
    7.68 px from the first."""
    frames = [torch.rand(1, 256, 256, generator=torch.Generator().manual_seed(k)) for k in range(4)]
    fitted: list[tuple[torch.Tensor, torch.Tensor]] = []
    monkeypatch.setattr(gipc.align, "estimate", lambda moving, fixed, model: fitted.append((moving, fixed)) or _shift(x=0.02))
    monkeypatch.setattr(gipc.align, "improves_edges", lambda moving, fixed, transform: True)
    registration = gipc.align.register(frames)
    assert [(torch.equal(moving[0], frames[k + 1]), torch.equal(fixed[0], frames[k])) for k, (moving, fixed) in enumerate(fitted)] == [(True, True)] * 3
    assert registration.moves == pytest.approx([2.56, 5.12, 7.68])


def test_features_of_unrelated_images_start_no_fit() -> None:
    """Two noise images share no feature: the features' fit is the identity, from which ECC starts."""
    noise = torch.rand(2, 1, 1, 200, 200, generator=torch.Generator().manual_seed(3))
    planes = [image[0, 0].numpy() for image in noise]
    assert (gipc.align._matched(*planes, "similarity") == np.eye(3, dtype=np.float32)).all()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16])
def test_sources_as_decoded_align_as_their_floats_and_stay_in_their_type(dtype: torch.dtype) -> None:
    """gipc-fuse --align hands over frames as decoded, made float one at a time, and gets them back
    in their type (a 12 MP frame: 36 MB in 8 bits against 144 MB in float32): the floats' output
    rounded to the nearest step, as writing the fused file rounds it."""
    scale = 255 if dtype == torch.uint8 else 65535
    a, b = _bracket()
    stored = [(image * scale).round().to(dtype) for image in (a, _moved(b))]
    as_floats = align([image.float() / scale for image in stored])
    as_decoded = align(stored)
    assert all(out.dtype == dtype for out in as_decoded)
    assert torch.equal(as_decoded[0].float() / scale, as_floats[0])  # the first frame is only cropped
    assert torch.equal(as_decoded[1], (as_floats[1] * scale).round().to(dtype))
    assert not torch.equal(as_decoded[1], stored[1][:, : as_decoded[1].shape[1], : as_decoded[1].shape[2]])  # B was moved back


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_a_source_warped_rows_at_a_time_is_the_whole_warp_to_the_bit(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """Warping a strip of rows at a time (a 12 MP frame's grids and float output: 0.6 GiB at once)
    changes no value: each row's sampling points are the whole grid's, bicubic, as kornia's
    homography warper places them."""
    monkeypatch.setattr(gipc.align, "WARP_ROWS", 7)  # 61 rows: 8 strips, the last one short
    image = torch.rand(3, 61, 45)
    image = image if dtype == torch.float32 else (image * 255).round().to(dtype)
    transform = torch.tensor([[[1.01, 0.02, 0.013], [-0.015, 0.995, -0.02], [0.001, -0.002, 1.0]]])
    grid = kornia.geometry.create_meshgrid(61, 45, normalized_coordinates=True, align_corners=False)
    warped, inside = gipc.align.warp(image, transform, grid)
    warper = kornia.geometry.HomographyWarper(61, 45, mode="bicubic", padding_mode="border", normalized_coordinates=True)
    expected = warper(gipc.color.unit_range(image)[None], transform).clamp(0.0, 1.0)[0]
    assert torch.equal(warped, expected if dtype == torch.float32 else (expected * 255).round().to(dtype))
    coverage = kornia.geometry.HomographyWarper(61, 45, normalized_coordinates=True)  # bilinear, zeros outside
    assert torch.equal(inside, coverage(torch.ones(1, 1, 61, 45), transform)[0, 0] > 0.999)
    assert 0 < int((~inside).sum()) < 61 * 45 // 4  # the warp uncovers a border, not the frame


def test_a_registered_pair_stays_as_it_is() -> None:
    a, b = _bracket()
    assert float(corner_moves(gipc.align.estimate(b[None], a[None]), 256, 256).norm(dim=1).max()) < gipc.align.MIN_MOVE
    said: list[str] = []
    aligned_a, aligned_b = align([a, b], report=said.append)  # not resampled: a fraction of a pixel would only soften B
    assert torch.equal(aligned_a, a) and torch.equal(aligned_b, b)
    assert said == ["source 2 left as it is; the whole frame kept"]


def test_a_fit_that_does_not_bring_the_edges_closer_is_not_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _bracket()
    magnify = torch.tensor([[[1.02, 0.0, 0.0], [0.0, 1.02, 0.0], [0.0, 0.0, 1.0]]])  # 2.6 px at the corners: how a fit to blurred light mimics defocus spread
    assert not gipc.align.improves_edges(b[None], a[None], magnify)
    monkeypatch.setattr(gipc.align, "estimate", lambda moving, fixed, model: magnify)
    aligned_a, aligned_b = align([a, b])
    assert torch.equal(aligned_a, a) and torch.equal(aligned_b, b)


def test_a_fit_is_judged_by_the_unblurred_edges() -> None:
    """A 2 px shift puts a smooth blob back in place but turns a fine 4 px checkerboard over it into its negative:
    the blob's edges come closer, the checkerboard's (the strongest edges, gone under the fit's blur) go farther."""
    rows, cols = torch.meshgrid(torch.arange(96), torch.arange(96), indexing="ij")
    blob = lambda x: 0.6 * torch.exp(-((cols - x) ** 2 + (rows - 48) ** 2) / (2 * 12.0**2)).expand(1, 3, 96, 96)  # noqa: E731
    checker = 0.3 * ((cols // 2 + rows // 2) % 2).float()
    back = _shift(x=4 / 95)  # 2 px: 2 / 95 of the half width between the outer pixel centres
    assert gipc.align.improves_edges(blob(50), blob(48), back)  # control: the blob alone is registered by it
    assert not gipc.align.improves_edges(blob(50) + checker, blob(48) + checker, back)


def test_gradient_correlation_reads_where_edges_are_not_how_strong() -> None:
    a, _ = _bracket()
    y = gipc.color.luma(a[None])
    everywhere = torch.ones_like(y)
    assert float(gipc.align.gradient_correlation(y, y, everywhere)) == pytest.approx(1.0)
    assert float(gipc.align.gradient_correlation(y, 0.3 * y + 0.2, everywhere)) == pytest.approx(1.0)  # contrast and tone do not count
    assert float(gipc.align.gradient_correlation(y, -y, everywhere)) == pytest.approx(-1.0)
    shifted = torch.roll(y, 3, dims=-1)
    assert float(gipc.align.gradient_correlation(y, shifted, everywhere)) < 0.6
    other_right = torch.cat([y[..., :128], torch.rand(1, 1, 256, 128, generator=torch.Generator().manual_seed(0))], dim=-1)
    left = (torch.arange(256) < 126).float().expand_as(y)  # the gradient of column 126 and right of it sees the other half
    assert float(gipc.align.gradient_correlation(y, other_right, left)) == pytest.approx(1.0)  # only the mask counts
    assert float(gipc.align.gradient_correlation(y, other_right, everywhere)) < 0.9


@pytest.mark.parametrize("model, moves", [
    ([[1.0, 0.0, 0.1], [0.0, 1.0, -0.05], [0.0, 0.0, 1.0]], [15.0, -5.0] * 4),  # a shift, normalised: 2 units per frame
    # perspective: (x, y) -> (x, y) / (x / 4 + 1), so the left corners go to (-4/3, -+4/3), the right ones to (0.8, -+0.8)
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.25, 0.0, 1.0]], [-50.0, -100 / 3, -30.0, 20.0, -50.0, 100 / 3, -30.0, -20.0]),
], ids=["shift", "perspective"])
def test_the_corners_move_as_the_transform_takes_them(model: list[list[float]], moves: list[float]) -> None:
    assert corner_moves(torch.tensor([model]), 200, 300).flatten().tolist() == pytest.approx(moves)


def test_a_registration_that_runs_away_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _bracket()
    with pytest.raises(UserError, match="alignment model must be one of similarity, homography, got 'affine'"):
        gipc.align.estimate(a[None], b[None], "affine")
    runaway = torch.tensor([[[1.0, 0.0, 0.6], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # 77 px of 256
    monkeypatch.setattr(gipc.align, "estimate", lambda moving, fixed, model: runaway)
    with pytest.raises(UserError, match=r"^cannot align source 2 to source 1: the estimate moves a corner by 77 px .*; fuse without --align$"):
        align([a, b])
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", b)
    assert main([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--align", "--out", str(tmp_path / "f.png")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # the pair named: in a folder of pairs "source 2" alone says too little
    assert error == f"gipc-fuse: error: {tmp_path / 'a.png'}, {tmp_path / 'b.png'}: cannot align source 2 to source 1: the estimate moves a corner by 77 px (the sources may show different scenes); fuse without --align"
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("shift, refused", [(0.28, False), (0.29, True)], ids=["35.8px", "37.1px"])
def test_a_fit_is_refused_only_past_a_tenth_of_the_diagonal(monkeypatch: pytest.MonkeyPatch, shift: float, refused: bool) -> None:
    """256 x 256: a tenth of the 362 px diagonal is 36.2 px (a tenth of a side would be 25.6)."""
    image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(0))
    _fitted(monkeypatch, _shift(x=shift))
    said: list[str] = []
    if refused:
        with pytest.raises(UserError, match="the estimate moves a corner by 37 px"):
            align([image, image])
    else:
        align([image, image], report=said.append)
        assert said[0].startswith("source 2 moved by up to 35.8 px; cropped to ")


@pytest.mark.parametrize("shift, refused", [(0.9, False), (1.25, True)], ids=["28.8px", "40px"])
def test_sources_that_would_share_under_half_the_frame_are_refused(monkeypatch: pytest.MonkeyPatch, shift: float, refused: bool) -> None:
    """A 512 x 64 frame: a vertical move under a tenth of its 516 px diagonal can still leave under half its 64 rows."""
    image = torch.rand(1, 64, 512, generator=torch.Generator().manual_seed(0))
    _fitted(monkeypatch, _shift(y=shift))
    if refused:  # 40 px: 24 rows of 64 left
        with pytest.raises(UserError, match="^the aligned sources share less than half the frame; fuse without --align$"):
            align([image, image])
    else:  # 28.8 px: 35 rows left
        assert align([image, image])[0].shape == (1, 35, 512)


def test_the_crop_keeps_only_pixels_every_warped_source_covers_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat grey source moved by 2.5 px: two columns of its frame uncovered and one half covered (half grey, half
    the black outside it) are all cut, and only grey is left."""
    grey = torch.full((1, 64, 64), 0.5)
    _fitted(monkeypatch, _shift(x=2.5 * 2 / 63))
    aligned_a, aligned_b = align([grey, grey])
    assert aligned_b.shape == aligned_a.shape == (1, 64, 61)
    torch.testing.assert_close(aligned_b, torch.full_like(aligned_b, 0.5))


def test_gipc_fuse_align_writes_the_moved_bracket_fused_without_ghosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _bracket()
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", _moved(b))
    assert main([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--align", "--out", str(tmp_path / "aligned.png")]) == 0
    assert main([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(tmp_path / "as-is.png")]) == 0
    aligned, as_is = read_image(tmp_path / "aligned.png").pixels, read_image(tmp_path / "as-is.png").pixels
    h, w = aligned.shape[-2:]
    report = re.search(r"^gipc-fuse: aligned\.png: source 2 moved by up to ([0-9.]+) px; cropped to (\d+)x(\d+) of 256x256$", capsys.readouterr().err, re.M)
    assert report is not None and (int(report[2]), int(report[3])) == (w, h)
    assert 5.0 < float(report[1]) < 12.0  # the corners of _moved: a 5.8 px shift plus 1.5 % of 181 px and a 0.6 degree turn
    assert h < 256 and w < 256 and as_is.shape[-2:] == (256, 256)
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float()[None] / 255
    truth = torch.nn.functional.interpolate(photo, size=(256, 256), mode="area")[0]
    best = lambda image: max(  # noqa: E731  (the crop's place in A's frame is found by its best fit)
        float(psnr(image[None], truth[None, :, y : y + image.shape[1], x : x + image.shape[2]]))
        for y in range(256 - image.shape[1] + 1) for x in range(256 - image.shape[2] + 1)
    )
    assert best(aligned) > best(as_is) + 3.0 and math.isfinite(best(aligned))


def test_align_fits_its_transform_under_a_callers_inference_mode_too() -> None:
    a, b = _bracket()
    expected = align([a, _moved(b)])
    with torch.inference_mode():  # as gipc-fuse and the test stage call it
        got = align([a.clone(), _moved(b)])
    assert all(torch.equal(x, y) for x, y in zip(expected, got))
