"""gipc.color against values derived by hand: BT.601 luma, JPEG's full-range CbCr, MFF-GAN's saturation rule."""

from __future__ import annotations

import pytest
import torch

import gipc.color

from gipc.color import check_fusion_sources, from_net, fuse_chroma, fuse_color, luma, merge_luma, split_luma, stored_as, to_net, unit_range
from gipc.errors import UserError

BT601 = (0.299, 0.587, 0.114)


def _pixel(*values: float) -> torch.Tensor:
    """A (1, C, 1, 1) image of one pixel."""
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)


@pytest.mark.parametrize("rgb", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.2, 0.6, 0.9), (0.4, 0.4, 0.4)],
                         ids=["red", "green", "blue", "mixed", "gray"])
def test_split_luma_is_bt601_with_jpeg_chroma(rgb: tuple[float, float, float]) -> None:
    """Y = 0.299 R + 0.587 G + 0.114 B; Cb = 0.5 + (B - Y) / 1.772, Cr = 0.5 + (R - Y) / 1.402 (kornia rounds
    1/1.772 and 1/1.402 to 0.564 and 0.713: at most 3e-4 off over colour differences below 0.9)."""
    r, _, b = rgb
    y = sum(w * c for w, c in zip(BT601, rgb))
    got_y, got_cbcr = split_luma(_pixel(*rgb))
    assert float(got_y) == pytest.approx(y, abs=1e-9)
    assert float(luma(_pixel(*rgb))) == pytest.approx(y, abs=1e-9)
    assert float(luma(_pixel(*rgb)[0])) == pytest.approx(y, abs=1e-9)  # (C, H, W), no batch axis
    assert got_cbcr.flatten().tolist() == pytest.approx([0.5 + (b - y) / 1.772, 0.5 + (r - y) / 1.402], abs=5e-4)


def test_luma_alone_is_split_lumas_y_to_the_bit() -> None:
    rgb = torch.rand(2, 3, 33, 41, generator=torch.Generator().manual_seed(1))
    assert torch.equal(luma(rgb), split_luma(rgb)[0])


@pytest.mark.parametrize("dtype, top", [(torch.uint8, 255), (torch.uint16, 65535)])
def test_luma_of_a_stored_image_is_the_luma_of_its_floats_to_the_bit(dtype: torch.dtype, top: int) -> None:
    """Straight from a decoded frame (no float copy of its three channels): the Y kornia gives for the
    floats a decoder gives, value / 255 or / 65535; a gray frame's Y is those floats."""
    stored = torch.randint(0, top + 1, (2, 3, 33, 41), generator=torch.Generator().manual_seed(2)).to(dtype)
    floats = stored.double().div(top).float()
    assert torch.equal(luma(stored), split_luma(floats)[0])
    assert luma(stored).dtype == torch.float32 and stored.dtype == dtype  # the frame is left as it was
    assert torch.equal(luma(stored[:, :1]), floats[:, :1])
    assert float(luma(torch.tensor([top, 0, 0], dtype=dtype).view(1, 3, 1, 1))) == pytest.approx(BT601[0], abs=1e-7)


@pytest.mark.parametrize("dtype, top", [(torch.uint8, 255), (torch.uint16, 65535)])
def test_stored_as_gives_every_stored_level_back_and_rounds_to_the_nearest(dtype: torch.dtype, top: int) -> None:
    levels = torch.arange(top + 1).to(dtype)
    assert torch.equal(stored_as(unit_range(levels), dtype), levels)
    between = torch.tensor([0.4, 0.6, 254.4, 254.6]) / 255  # in 8-bit steps
    assert stored_as(between, torch.uint8).tolist() == [0, 1, 254, 255]
    assert torch.equal(stored_as(between, torch.float64), between.double())


@pytest.mark.parametrize("channels", [2, 4])
def test_luma_refuses_images_neither_gray_nor_rgb(channels: int) -> None:
    """An RGBA image is not read as its first three channels (kornia's rgb_to_y refused it too)."""
    with pytest.raises(ValueError, match=rf"luma takes .* got \(1, {channels}, 5, 7\)"):
        luma(torch.rand(1, channels, 5, 7))


@pytest.mark.parametrize("shape", [(2, 1, 5, 7), (1, 5, 7)], ids=["batch", "one-image"])
def test_luma_of_a_gray_image_is_the_image(shape: tuple[int, ...]) -> None:
    gray = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(luma(gray), gray)


@pytest.mark.parametrize("a, b, expected", [
    (0.7, 0.4, (0.7 * 0.2 + 0.4 * 0.1) / 0.3),  # 0.6: the source twice as far from neutral weighs twice as much
    (0.1, 0.6, (0.1 * 0.4 + 0.6 * 0.1) / 0.5),  # 0.2
    (0.5, 0.3, 0.3),  # a neutral source has no say
    (0.2, 0.8, 0.5),  # equally saturated, opposite: they cancel
    (0.9, 0.9, 0.9),
    (0.5, 0.5, 0.5),  # both neutral: 0/0 is neutral, not NaN
], ids=["twice-as-saturated", "four-times", "one-neutral", "opposite", "equal", "both-neutral"])
def test_fuse_chroma_weighs_each_source_by_its_distance_from_neutral(a: float, b: float, expected: float) -> None:
    cbcr_a = torch.full((1, 2, 2, 3), a)
    fused = fuse_chroma(cbcr_a, torch.full((1, 2, 2, 3), b))
    assert fused.shape == cbcr_a.shape
    assert torch.allclose(fused, torch.full_like(fused, expected), atol=1e-6)


def test_fuse_chroma_is_per_pixel_and_per_plane() -> None:
    cbcr_a = torch.tensor([[[[0.7, 0.5]], [[0.5, 0.2]]]])  # Cb row, Cr row
    cbcr_b = torch.tensor([[[[0.4, 0.5]], [[0.3, 0.8]]]])
    assert fuse_chroma(cbcr_a, cbcr_b).flatten().tolist() == pytest.approx([0.6, 0.5, 0.3, 0.5], abs=1e-6)


def test_colour_fusion_passes_gradients_to_luminance_and_chroma() -> None:
    # A pure function others may train through: in-place steps must not break autograd. Expected
    # gradients: d/dC_A of (C_A w_A + C_B w_B) / (w_A + w_B), w = |C - 0.5|, by hand; Y passes 1 per
    # output channel where nothing clamps (R, G, B all move with Y).
    cbcr_a = torch.tensor([[[[0.7]], [[0.6]]]], requires_grad=True)
    cbcr_b = torch.tensor([[[[0.4]], [[0.55]]]])
    y = torch.tensor([[[[0.5]]]], requires_grad=True)
    merge_luma(y * 1.0, fuse_chroma(cbcr_a, cbcr_b)).sum().backward()

    def d_fused_d_a(a: float, b: float) -> float:  # quotient rule, a and b above 0.5 or below as given
        wa, wb = abs(a - 0.5), abs(b - 0.5)
        sign = 1.0 if a > 0.5 else -1.0
        return ((wa + a * sign) * (wa + wb) - (a * wa + b * wb) * sign) / (wa + wb) ** 2

    # dR/dCr = 1 / 0.713, dB/dCb = 1 / 0.564, dG/dCr and dG/dCb from Y's weights (kornia's exact inverse)
    to_r, to_b = 1 / 0.713, 1 / 0.564
    from_cr, from_cb = 0.299 / 0.587 * to_r, 0.114 / 0.587 * to_b
    expected = [(to_b - from_cb) * d_fused_d_a(0.7, 0.4), (to_r - from_cr) * d_fused_d_a(0.6, 0.55)]
    assert cbcr_a.grad.flatten().tolist() == pytest.approx(expected, rel=1e-4)
    assert y.grad.item() == pytest.approx(3.0)


def test_tall_images_take_their_colour_steps_in_bands_with_the_same_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    """fuse_color turns COLOUR_ROWS rows into colour at a time (a 12 MP pair's peak): bands of 8 rows,
    the last one short, give the whole image's result to the bit, as a float64 tensor when the fuser
    returns float64; the luminance fuser still sees the whole image once, with gradients through it."""
    generator = torch.Generator().manual_seed(11)
    a, b = torch.rand(2, 3, 30, 17, generator=generator), torch.rand(2, 3, 30, 17, generator=generator)
    calls = []

    def fuser(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        calls.append(ya.shape)
        return torch.maximum(ya, yb).double()

    whole = fuse_color(fuser, a, b)
    monkeypatch.setattr(gipc.color, "COLOUR_ROWS", 8)
    banded = fuse_color(fuser, a, b)
    assert calls == [(2, 1, 30, 17)] * 2 and banded.dtype == torch.float64 and torch.equal(banded, whole)
    weight = torch.tensor(0.5, requires_grad=True)
    fuse_color(lambda ya, yb: weight * ya + (1 - weight) * yb, a, b).sum().backward()
    assert weight.grad is not None and weight.grad.abs() > 0


@pytest.mark.parametrize("ycbcr, rgb", [
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # neutral chroma: gray at Y
    ((0.299, 0.5 - 0.299 / 1.772, 0.5 + 0.701 / 1.402), (1.0, 0.0, 0.0)),  # split_luma's red back
    # R = Y + (R - Y) = 0.9 + 0.701 clamps to 1; B - Y = 0; G = Y - 0.299 (R - Y) / 0.587 = 0.9 - 0.357
    ((0.9, 0.5, 0.5 + 0.701 / 1.402), (1.0, 0.9 - 0.299 * 0.701 / 0.587, 0.9)),
], ids=["neutral", "red", "clamped"])
def test_merge_luma_by_hand(ycbcr: tuple[float, float, float], rgb: tuple[float, float, float]) -> None:
    y, cb, cr = ycbcr
    merged = merge_luma(_pixel(y), _pixel(cb, cr))
    assert merged.flatten().tolist() == pytest.approx(rgb, abs=1e-3)


def test_merge_luma_inverts_split_luma() -> None:
    rgb = torch.rand(2, 3, 8, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(merge_luma(*split_luma(rgb)), rgb, atol=1e-6)


@pytest.mark.parametrize("x, net", [(0.0, -1.0), (0.25, -0.5), (0.5, 0.0), (1.0, 1.0)])
def test_network_range_by_hand(x: float, net: float) -> None:
    assert float(to_net(torch.tensor(x))) == net and float(from_net(torch.tensor(net))) == x


def test_from_net_clamps_to_the_image_range() -> None:
    assert from_net(torch.tensor([-1.5, 1.2])).tolist() == [0.0, 1.0]


def _take_a(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return ya


def _take_b(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return yb


RED, GRAY = _pixel(1.0, 0.0, 0.0), _pixel(0.5, 0.5, 0.5)
# Red's chroma on gray's luma 0.5: red's colour differences (R - Y, B - Y) = (0.701, -0.299) and G - Y = -0.299
# give (1.201 clamped, 0.201, 0.201).
RED_ON_GRAY = (1.0, 0.201, 0.201)


@pytest.mark.parametrize("fuse_y, a, b, expected", [
    (_take_a, RED, GRAY, (1.0, 0.0, 0.0)),  # A's luma and, B being neutral, A's chroma: red as it was
    (_take_b, RED, GRAY, RED_ON_GRAY),
    (_take_a, GRAY, RED, RED_ON_GRAY),  # A neutral (weight |0.5 - 0.5| = 0): B's chroma wins
    (_take_b, GRAY, RED, (1.0, 0.0, 0.0)),
], ids=["red-gray-luma-of-a", "red-gray-luma-of-b", "gray-red-luma-of-a", "gray-red-luma-of-b"])
def test_colour_fusion_keeps_the_saturated_sources_colour_on_the_fused_luma(fuse_y, a, b, expected) -> None:
    assert fuse_color(fuse_y, a, b).flatten().tolist() == pytest.approx(expected, abs=1e-3)


def test_gray_sources_give_the_fused_luma() -> None:
    """Neutral chroma on both sides: RGB gray in, R = G = B = the fused Y out; one-channel sources skip
    colour and are only clamped."""
    a, b = torch.full((1, 3, 2, 2), 0.2), torch.full((1, 3, 2, 2), 0.6)
    assert torch.allclose(fuse_color(torch.maximum, a, b), torch.full((1, 3, 2, 2), 0.6), atol=1e-6)
    assert fuse_color(lambda ya, yb: ya + yb + 0.5, a[:, :1], b[:, :1]).flatten().tolist() == [1.0] * 4


@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
def test_a_16_bit_source_fused_with_itself_keeps_every_level(channels: int) -> None:
    """16-bit sources arrive as float32 levels / 65535 (gipc.imaging.read_image). Fused with itself, one comes
    back to the level: two equal chromas are that chroma however close to neutral (a pixel one level off gray
    is 1e-5 from it, where an 8-bit-sized epsilon would pull it to gray), and Y -> RGB undoes RGB -> Y."""
    g = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 65536, (1, 1, 16, 16), generator=g)
    near_gray = (gray + torch.randint(-2, 3, (1, channels, 16, 16), generator=g)).clamp(0, 65535)
    levels = torch.cat([near_gray, torch.randint(0, 65536, (1, channels, 16, 16), generator=g)], dim=-1)
    image = levels.float() / 65535
    assert torch.equal((fuse_color(_take_a, image, image) * 65535).round().long(), levels)


def _straying(by: float) -> list[torch.Tensor]:
    """Two mid-gray RGB sources, one pixel of A ``by`` above 1 and one of B ``by`` below 0."""
    a, b = torch.full((2, 1, 3, 2, 2), 0.5)
    a[..., 0, 0], b[..., 1, 1] = 1 + by, -by
    return [a, b]


def test_sources_may_stray_half_a_grey_level_outside_0_1_and_no_further() -> None:
    """Resampling (alignment, interpolation) leaves values a hair outside [0, 1]: up to half an 8-bit grey level
    is rounding noise, further out a wrong-range input (0..255, or the network's [-1, 1])."""
    assert fuse_color(_take_a, *_straying(0.4 / 255)).shape == (1, 3, 2, 2)
    with pytest.raises(UserError, match=r"^sources must lie in \[0, 1\], got values in \[-0\.002353, 1\.002\]; divide 0\.\.255 images by 255"):
        fuse_color(_take_a, *_straying(0.6 / 255))


@pytest.mark.parametrize("value, shown", [
    (1 + 0.6 / 255, r"\[0\.5, 1\.002\]"),  # too bright alone: 0..255 values scaled wrongly
    (-0.6 / 255, r"\[-0\.002353, 0\.5\]"),  # too dark alone: the network's [-1, 1] range
], ids=["above", "below"])
def test_one_side_out_of_range_is_enough_to_refuse(value: float, shown: str) -> None:
    a, b = torch.full((2, 1, 3, 2, 2), 0.5)
    a[..., 0, 0] = value
    with pytest.raises(UserError, match=rf"^sources must lie in \[0, 1\], got values in {shown}"):
        fuse_color(_take_a, a, b)


def test_a_negative_zero_is_in_range_and_reads_0_in_the_line() -> None:
    a, b = torch.full((2, 1, 3, 2, 2), 0.5)
    b[..., 1, 1] = -0.0  # what negating a black image gives
    assert fuse_color(_take_a, a, b).shape == (1, 3, 2, 2)
    a[..., 0, 0] = 1 + 0.6 / 255
    with pytest.raises(UserError, match=r"^sources must lie in \[0, 1\], got values in \[0, 1\.002\];"):
        fuse_color(_take_a, a, b)


def test_a_fusion_needs_two_sources() -> None:
    with pytest.raises(UserError, match=r"^a fusion needs at least two sources, got 1$"):
        check_fusion_sources([torch.zeros(1, 3, 4, 4)])


@pytest.mark.parametrize("shape_a, shape_b, message", [
    ((1, 3, 4, 4), (1, 3, 4, 5), r"sources differ in shape: \(1, 3, 4, 4\) vs \(1, 3, 4, 5\)"),
    ((1, 2, 4, 4), (1, 2, 4, 4), "expected 1 .gray. or 3 .RGB. channels, got 2"),
], ids=["shape", "channels"])
def test_fuse_color_refuses_bad_sources(shape_a, shape_b, message: str) -> None:
    with pytest.raises(UserError, match=message):
        fuse_color(_take_a, torch.zeros(shape_a), torch.zeros(shape_b))
