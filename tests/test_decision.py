"""Decision-map fusion (gipc.decision, gipc.fusion, gipc-fuse --rule map / --save-maps) against hand-made expectations."""

from __future__ import annotations

import math
import re
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import png
from PIL import Image as PILImage
import pytest
import torch
import torch.nn.functional as F
import yaml
import kornia

from gipc.decision import (
    Compared, MapSettings, best_source, blend, box_counts, choose_each, closeness_scores, compared_sources, consistent, decide, detail, evidence,
    majority, map_image, margin, match_exposure, one_hot, plane_means, soften, _rounded_counts,
)
from gipc.cli.fuse import _fusion as fuse_fusion, _parser as fuse_parser, main as fuse_main
from gipc.color import luma
from gipc.errors import UserError
from gipc.fusion import Each, Fusion, default_rule, map_settings
from gipc.imaging import read_image
from gipc.inference import prepare
from gipc.metrics import map_accuracy, map_boundary_f
from gipc.pretrained import FORMAT
from gipc.regions import remove_small_regions
from gipc.tiling import tiled

from helpers import HARD_MAP, paper_generator, texture


def _halves(channels: int = 3, height: int = 48, width: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, B, all-in-focus): A sharp on the left half, B on the right, the rest blurred."""
    sharp = texture(channels, height, width)
    blurred = kornia.filters.gaussian_blur2d(sharp, (13, 13), (3.0, 3.0), border_type="reflect")
    left = torch.zeros(1, 1, height, width)
    left[..., : width // 2] = 1
    return left * sharp + (1 - left) * blurred, left * blurred + (1 - left) * sharp, sharp


def _repainting_fuser(sharp_y: torch.Tensor):
    """A stand-in network that found focus but repaints: the all-in-focus luminance, tone-shifted."""
    return lambda ya, yb: (0.95 * sharp_y + 0.03).to(ya)


def test_halves_give_a_map_of_one_left_zero_right_and_copy_the_sources_exactly() -> None:
    a, b, sharp = _halves()
    fusion = Fusion(_repainting_fuser(kornia.color.rgb_to_ycbcr(sharp)[:, :1]), "map", HARD_MAP)
    fused = fusion([a, b])
    margin = 7 // 2 + 15 // 2 + 1  # the closeness window and the majority window reach across the seam
    w_a = fused.weights[:, :1]
    assert torch.all(w_a[..., : 32 - margin] == 1) and torch.all(w_a[..., 32 + margin :] == 0)
    assert torch.equal(fused.image[..., : 32 - margin], a[..., : 32 - margin])
    assert torch.equal(fused.image[..., 32 + margin :], b[..., 32 + margin :])
    # the seam itself lands where it is, within the windows' reach
    assert map_accuracy(w_a, (torch.arange(64) < 32).float().expand(1, 1, 48, 64)) > 0.95


def _degenerate_sources() -> dict[str, list[torch.Tensor]]:
    """Sources the shipped settings' windows do not fit (smaller than the 61 px vote, one pixel of
    margin), or that give no evidence at all (flat, identical, black)."""
    g = torch.Generator().manual_seed(5)
    noise = [torch.rand(1, 3, h, w, generator=g) for h, w in ((2, 2), (3, 5), (2, 90), (90, 2), (63, 70))]
    flat = torch.full((1, 1, 20, 20), 0.5)
    same = torch.rand(1, 3, 30, 40, generator=g)
    return {
        **{f"noise {tuple(x.shape[-2:])}": [x, torch.rand(x.shape, generator=g)] for x in noise},
        "flat": [flat, flat.clone()],
        "identical": [same, same.clone()],
        "black and white": [torch.zeros(1, 3, 20, 20), torch.ones(1, 3, 20, 20)],
        "zeros": [torch.zeros(1, 1, 9, 9), torch.zeros(1, 1, 9, 9)],
        "three 4x4": [torch.rand(1, 3, 4, 4, generator=g) for _ in range(3)],
        "five 40x33 gray": [torch.rand(1, 1, 40, 33, generator=g) for _ in range(5)],
    }


@pytest.mark.parametrize("case", list(_degenerate_sources()))
def test_the_shipped_map_copies_each_pixel_from_one_source_even_where_its_windows_do_not_fit(case: str) -> None:
    images = _degenerate_sources()[case]
    fused = Fusion(lambda ya, yb: (ya + yb) / 2, "map", default_rule()[1])(images)
    assert fused.image.shape == images[0].shape
    assert set(fused.weights.unique().tolist()) <= {0.0, 1.0} and torch.equal(fused.weights.sum(1), torch.ones_like(fused.weights[:, 0]))
    chosen = fused.weights.argmax(1, keepdim=True)  # (1, 1, H, W): the one source each pixel copies
    expected = torch.stack(images).gather(0, chosen[None].expand(1, *images[0].shape))[0]
    assert torch.equal(fused.image, expected)


def test_the_direct_rule_repaints_and_the_map_rule_does_not() -> None:
    a, b, sharp = _halves(channels=1)
    net = _repainting_fuser(sharp)
    direct, mapped = Fusion(net)([a, b]).image, Fusion(net, "map", HARD_MAP)([a, b]).image
    assert (direct - sharp).abs().mean() > 0.01  # the tone shift
    assert (mapped - sharp).abs()[..., :20].max() == 0  # copied from A, where A is the sharp one


def test_focus_evidence_decides_where_the_fused_image_cannot() -> None:
    """A fused image halfway between the sources says nothing; the sources' own focus then picks the sharp half."""
    a, b, _ = _halves(channels=1)
    undecided = (a + b) / 2
    blind = best_source(evidence([a, b], undecided, replace(HARD_MAP, focus=0.0)))
    seeing = best_source(evidence([a, b], undecided, HARD_MAP))
    truth = (torch.arange(64) < 32).float().expand(1, 1, 48, 64)
    assert map_accuracy(blind.eq(0).float(), truth) < 0.75  # ties up to float rounding: a coin toss
    assert seeing[0, 0, :, :25].eq(0).all() and seeing[0, 0, :, 39:].eq(1).all()
    # the focus term reads the sources as they are: neither the fused image nor an exposure fit to it changes it
    focus_only = replace(HARD_MAP, closeness=0.0)
    assert torch.equal(evidence([a, b], undecided, replace(focus_only, match_exposure=True)), evidence([a, b], a, focus_only))


def test_evidence_is_the_weighted_sum_of_unit_free_terms() -> None:
    """By hand: A equals the fused image, B is it plus 0.1. The closeness is 0 for A and -0.01 for B,
    mean magnitude 0.005 over both: -2 in units, -1 at weight 0.5, -5 for two such terms at 0.5 and
    2; flat sources have no focus and no detail (a term of zeros stays zero), and a term of weight 0 is skipped."""
    fused = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    flat_a, flat_b = torch.full_like(fused, 0.4), torch.full_like(fused, 0.5)
    expected = torch.cat([torch.zeros_like(fused), -torch.ones_like(fused)], dim=1)
    settings = replace(HARD_MAP, window=1, detail=(0,), closeness=(0.5,), focus=(3.0,), focus_window=(5,))
    assert torch.allclose(evidence([flat_a, flat_b], flat_a, settings), expected)  # fused = A, flat: the focus term is 0
    # each weight goes with its own detail size: the 3 px detail of an offset is 0, so only the intensities' 0.5 counts
    assert torch.equal(evidence([flat_a, flat_b], flat_a, replace(settings, detail=(0, 3), closeness=(0.5, 2.0))), evidence([flat_a, flat_b], flat_a, settings))
    two = replace(settings, detail=(0, 0), closeness=(0.5, 2.0), focus=(0.0,))
    assert torch.allclose(evidence([fused, fused + 0.1], fused, two), 5 * expected, atol=1e-5)
    assert torch.allclose(evidence([fused, fused + 0.1], fused, replace(two, closeness=(0.0, 2.0))), 4 * expected, atol=1e-5)


def test_the_closeness_window_spreads_a_difference_over_its_box_in_each_images_own_units() -> None:
    """B differs from the fused image at one pixel, by 0.3 in the first image of a batch and 0.6 in the second:
    a 3 px window spreads the square over the 3x3 box around it (0.09 / 9 = 0.01), and the image's mean
    magnitude over both sources (9 x 0.01 / 162) makes that -18 in units, whatever the difference's size."""
    fused = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    b = fused.clone()
    b[0, 0, 4, 4] += 0.3
    b[1, 0, 4, 4] += 0.6
    expected = torch.zeros(2, 2, 9, 9)
    expected[:, 1, 3:6, 3:6] = -18.0
    settings = replace(HARD_MAP, window=3, detail=(0,), closeness=(1.0,), focus=(0.0,))
    torch.testing.assert_close(evidence([fused, b], fused, settings), expected, atol=1e-3, rtol=0)


def test_the_best_source_takes_the_highest_score_and_ties_go_to_the_earlier_source() -> None:
    scores = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 2.0, 0.5, 1.0], [0.0, 2.0, 1.0, 3.0]]).reshape(1, 3, 1, 4)  # pixels: 1 1 0, 0 2 2, 1 .5 1, 0 1 3
    assert best_source(scores).flatten().tolist() == [0, 1, 0, 2]


def test_a_pair_takes_the_higher_score_and_ties_go_to_a() -> None:
    scores = torch.tensor([[0.5, 0.2, -1.0, 0.0], [0.5, 0.3, -2.0, -0.0]]).reshape(1, 2, 1, 4)
    assert best_source(scores).flatten().tolist() == [0, 1, 0, 0]
    assert best_source(scores).dtype == torch.uint8


@pytest.mark.parametrize("count", [2, 3, 5])
def test_the_vote_takes_what_most_pixels_of_the_window_hold(count: int) -> None:
    """Counted pixel by pixel over the replicated border, against the vote's box filters."""
    labels = torch.randint(0, count, (1, 1, 12, 15), generator=torch.Generator().manual_seed(count), dtype=torch.uint8)
    padded = F.pad(labels.float(), (2, 2, 2, 2), mode="replicate")[0, 0].long()
    expected = torch.zeros_like(labels)
    for row in range(12):
        for col in range(15):
            votes = torch.bincount(padded[row : row + 5, col : col + 5].flatten(), minlength=count)
            expected[0, 0, row, col] = int(votes.argmax())  # 25 votes: ties only among 3 sources, to the earlier
    assert torch.equal(majority(labels, count, 5), expected)


def test_a_margin_exactly_decisive_keeps_its_source_through_the_vote() -> None:
    """A field leaning to A by 0.25 around a 3x3 speck for B by 0.5: a 7 px vote gives the speck to A unless
    its margin is at or above ``decisive``."""
    scores = torch.zeros(1, 2, 20, 20)
    scores[:, 0] = 0.25
    scores[:, 0, 8:11, 8:11] = 0.0
    scores[:, 1, 8:11, 8:11] = 0.5
    best, margins = best_source(scores), margin(scores)
    assert torch.equal(consistent(best, margins, 2, 7, 0.5), best)
    assert consistent(best, margins, 2, 7, 0.501).eq(0).all()


def test_clean_up_removes_an_isolated_wrong_speck() -> None:
    labels = torch.zeros(1, 1, 40, 40, dtype=torch.uint8)
    labels[..., 20:] = 1
    labels[..., 8:11, 5:8] = 1  # a 3x3 speck of B inside A's half
    for cleaned in (majority(labels, 2, 7), remove_small_regions(labels, 2, min_region=0.01)):
        assert cleaned[0, 0, 8:11, 5:8].eq(0).all()  # the speck went back to A
        assert torch.equal(cleaned[..., 15:25, :], labels[..., 15:25, :])  # the seam stays
    assert labels[0, 0, 8:11, 5:8].eq(1).all()  # the input is left as it was


def test_a_thin_structure_in_focus_survives_the_vote_where_its_evidence_is_decisive() -> None:
    """A 7 px stripe sharp in A across a field sharp in B: a 15 px vote erases it, unless decisive evidence keeps it."""
    sharp = texture(1, 48, 64)
    blurred = kornia.filters.gaussian_blur2d(sharp, (13, 13), (3.0, 3.0), border_type="reflect")
    stripe = torch.zeros(1, 1, 48, 64)
    stripe[..., 28:35] = 1
    a, b = stripe * sharp + (1 - stripe) * blurred, stripe * blurred + (1 - stripe) * sharp
    scores = evidence([a, b], sharp, HARD_MAP)
    voted = decide(scores, sharp, HARD_MAP)
    kept = decide(scores, sharp, replace(HARD_MAP, decisive=1.0))
    assert voted[0, 0].sum() == 0  # the vote gave the stripe to B
    assert kept[0, 0, :, 30:33].eq(1).all()  # decisive: the stripe's core keeps A (its edges see the field too)
    assert torch.equal(blend([a, b], kept)[..., 30:33], a[..., 30:33])
    assert torch.equal(kept[..., :, :24], voted[..., :, :24]) and torch.equal(kept[..., :, 40:], voted[..., :, 40:])  # the field as voted
    assert torch.equal(decide(scores, sharp, replace(HARD_MAP, decisive=0.0)), one_hot(best_source(scores), 2, scores.dtype))  # margin 0: no vote


@pytest.mark.parametrize(("focus_window", "focus", "chosen_source"), [((3,), 1.0, 0), ((3, 21), (1.0, 0.0), 0), ((21,), 1.0, 1), ((3, 21), (0.0, 1.0), 1)])
def test_the_focus_measure_has_its_own_window(focus_window: tuple[int, ...], focus: float | tuple[float, ...], chosen_source: int) -> None:
    """A 5 px stripe sharp in A across a field sharp in B, the fused image halfway between them (closeness
    is blind): a 3 px focus window sees the stripe; a 21 px one, mostly the field around it, gives it to B;
    of two windows, the one whose weight is not 0 decides."""
    sharp = texture(1, 48, 64)
    blurred = kornia.filters.gaussian_blur2d(sharp, (13, 13), (3.0, 3.0), border_type="reflect")
    stripe = torch.zeros(1, 1, 48, 64)
    stripe[..., 30:35] = 1
    a, b = stripe * sharp + (1 - stripe) * blurred, stripe * blurred + (1 - stripe) * sharp
    chosen = best_source(evidence([a, b], (a + b) / 2, replace(HARD_MAP, focus_window=focus_window, focus=focus)))
    assert chosen[0, 0, :, 31:34].eq(chosen_source).all() and chosen[0, 0, :, :24].eq(1).all()


def test_a_source_at_another_exposure_still_gets_its_sharp_half() -> None:
    """A faint texture around mid-grey, A sharp on the left, B sharp on the right and 10 % darker (taken
    separately). Compared as it is, B's offset outweighs A's blur and A takes B's half too; with B's
    exposure fitted to the fused image first, or with local tone removed (detail), each half goes to
    its sharp source."""
    sharp = 0.5 + 0.04 * (texture(1, 48, 64) - 0.5)
    blurred = kornia.filters.gaussian_blur2d(sharp, (13, 13), (3.0, 3.0), border_type="reflect")
    left = (torch.arange(64) < 32).float().expand(1, 1, 48, 64)
    a, b = left * sharp + (1 - left) * blurred, 0.9 * (left * blurred + (1 - left) * sharp)
    closeness = replace(HARD_MAP, focus=0.0)
    raw = best_source(evidence([a, b], sharp, closeness))
    assert raw[0, 0, :, 39:].eq(0).float().mean() > 0.9
    for robust in (replace(closeness, match_exposure=True), replace(closeness, detail=9)):
        chosen = best_source(evidence([a, b], sharp, robust))
        assert chosen[0, 0, :, :25].eq(0).all() and chosen[0, 0, :, 39:].eq(1).all()


def test_exposure_matching_and_detail_undo_a_gain_and_an_offset() -> None:
    x = texture(1, 32, 40)
    torch.testing.assert_close(match_exposure([0.8 * x + 0.05, x], x), [x, x], atol=1e-6, rtol=0)
    torch.testing.assert_close(detail(x + 0.2, 7), detail(x, 7), atol=1e-6, rtol=0)
    assert detail(torch.full((1, 1, 9, 9), 0.3), 5).abs().max() < 1e-6
    # a source whose detail runs against the fused image's is not turned upside down: its gain stops at 0, leaving the mean
    torch.testing.assert_close(match_exposure([1 - x], x)[0], torch.full_like(x, x.mean().item()), atol=1e-6, rtol=0)


def test_margin_is_the_gap_between_the_two_best_scores() -> None:
    scores = torch.tensor([[3.0, -1.0], [1.0, 2.5], [2.0, 2.0]]).reshape(1, 3, 1, 2)  # pixel 1: 3, 1, 2; pixel 2: -1, 2.5, 2
    torch.testing.assert_close(margin(scores), torch.tensor([1.0, 0.5]).reshape(1, 1, 1, 2))
    torch.testing.assert_close(margin(scores[:, :2]), torch.tensor([2.0, 3.5]).reshape(1, 1, 1, 2))


def test_soften_changes_only_pixels_near_a_boundary() -> None:
    a, b, sharp = _halves(channels=1)
    onehot = one_hot(best_source(closeness_scores([a, b], sharp, 7)), 2, torch.float32)
    soft = soften(onehot, sharp, radius=3, eps=0.1)
    changed = (soft != onehot).any(dim=1)[0]
    columns = changed.any(dim=0).nonzero().flatten()
    assert len(columns) and columns.min() >= 32 - 2 * 3 - 4 and columns.max() <= 32 + 2 * 3 + 4
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(1, 48, 64))
    # a guide whose edges the map does not follow (a ramp) makes the filter overshoot 0 and 1 by some per cent: clamped
    ramp = torch.linspace(0, 1, 16).expand(1, 1, 16, 16)
    steep = soften(one_hot((torch.arange(16) >= 8).to(torch.uint8).expand(1, 1, 16, 16), 2, torch.float32), ramp, radius=2, eps=1e-4)
    assert steep.min() == 0 and steep.max() == 1 and torch.allclose(steep.sum(dim=1), torch.ones(1, 16, 16))


def _box2(weights: torch.Tensor, radius: int) -> torch.Tensor:
    """A box blur of a box blur, 2 * radius + 1 px each: the guided filter where the guide is flat (He et al. 2013: a = 0, b = mean p)."""
    box = lambda x: kornia.filters.box_blur(x, 2 * radius + 1, border_type="replicate")  # noqa: E731
    return box(box(weights))


def test_soft_weights_are_the_hard_map_guided_by_the_fused_image_with_the_maps_radius_and_eps() -> None:
    """A network that returns grey gives a flat guide: the soft weights are the hard map's double box blur.
    An eps far above the guide's variance makes any guide flat; a small one lets the texture through."""
    a, b, sharp = _halves(channels=1)
    grey = lambda ya, yb: torch.full_like(ya, 0.5)  # noqa: E731
    focus_only = replace(HARD_MAP, closeness=0.0)  # the evidence then does not read the fused image
    hard = Fusion(grey, "map", focus_only)([a, b]).weights
    assert 0.4 < hard[:, 0].mean() < 0.6
    torch.testing.assert_close(Fusion(grey, "map", replace(focus_only, radius=3))([a, b]).weights, _box2(hard, 3), atol=1e-6, rtol=0)
    scores = evidence([a, b], sharp, HARD_MAP)
    blurred = _box2(decide(scores, sharp, HARD_MAP), 2)
    torch.testing.assert_close(decide(scores, sharp, replace(HARD_MAP, radius=2, eps=1e9)), blurred, atol=1e-6, rtol=0)
    assert (decide(scores, sharp, replace(HARD_MAP, radius=2, eps=1e-3)) - blurred).abs().max() > 0.1


def test_one_map_over_three_sources_picks_each_where_it_is_sharp() -> None:
    sharp = texture(1, 30, 90)
    blurred = kornia.filters.gaussian_blur2d(sharp, (13, 13), (3.0, 3.0), border_type="reflect")
    thirds = [(torch.arange(90) // 30 == k).float().expand(1, 1, 30, 90) for k in range(3)]
    sources = [t * sharp + (1 - t) * blurred for t in thirds]
    fused = Fusion(lambda x, y: sharp, "map", replace(HARD_MAP, clean=5))(sources)
    picked = fused.weights.argmax(dim=1)[0]
    assert torch.equal(picked[:, 5:25], torch.zeros(30, 20, dtype=torch.long))
    assert torch.equal(picked[:, 35:55], torch.ones(30, 20, dtype=torch.long))
    assert torch.equal(picked[:, 65:85], torch.full((30, 20), 2))
    shades = map_image(fused.weights)[0, 0]  # white: the first source, black: the last, grey between
    assert [shades[:, c:c + 20].unique().tolist() for c in (5, 35, 65)] == [[1.0], [0.5], [0.0]]


def test_a_sequences_map_compares_each_source_with_the_networks_fusion_of_all_in_turn() -> None:
    """A network that returns its second input fuses a sequence into the last source: every pixel is then
    closest to it, and the fused image is its copy in full colour."""
    sources = [texture(3, 16, 20, seed) for seed in range(3)]
    fused = Fusion(lambda f, y: y, "map", replace(HARD_MAP, focus=0.0))(sources)
    assert fused.weights[:, 2].eq(1).all() and torch.equal(fused.image, sources[2])


def _stack(count: int, seed: int = 0) -> list[torch.Tensor]:
    """``count`` RGB frames of one textured scene, frame k sharp in the k-th of ``count`` vertical bands,
    blurred by 1.5 px per band away from it (as benchmarks/bench_stack.py makes them)."""
    sharp = texture(3, 40, 23 * count, seed)
    band = torch.arange(23 * count) // 23
    frames = []
    for k in range(count):
        frame = sharp.clone()
        for other in range(count):
            if other != k:
                sigma = 1.5 * abs(other - k)
                blurred = kornia.filters.gaussian_blur2d(sharp, (2 * math.ceil(3 * sigma) + 1,) * 2, (sigma, sigma), border_type="reflect")
                frame[..., band == other] = blurred[..., band == other]
        frames.append(frame)
    return frames


@pytest.mark.parametrize("count", [2, 3, 5])
def test_choosing_one_source_at_a_time_gives_the_best_source_and_margin_of_the_whole_evidence(count: int) -> None:
    """The stack's evidence, to the bit, with each source read exactly twice (once for the units, once for the scores)."""
    settings = default_rule()[1]
    ys = [frame.mean(dim=1, keepdim=True) for frame in _stack(count)]
    fused = torch.stack(ys).amax(dim=0)  # any fused image: the terms compare the sources with it
    reads = [0] * count

    def read(i: int) -> torch.Tensor:
        reads[i] += 1
        return ys[i].clone()  # a source made anew: the stack path's sources are

    best, margins = choose_each(Each(count, read), fused, settings)
    scores = evidence(ys, fused, settings)
    assert torch.equal(best, best_source(scores)) and torch.equal(margins, margin(scores))
    assert reads == [2] * count
    assert 0 < margins.min() and len(best.unique()) == count  # every source wins somewhere, no ties


@pytest.mark.parametrize("change", [{}, {"radius": 2}, {"decisive": math.inf, "min_region": 0.05, "region_margin": math.inf}], ids=["default", "soft", "vote-all"])
@pytest.mark.parametrize("count", [3, 4])
def test_a_stacks_map_one_source_at_a_time_is_the_whole_tensor_map_to_the_bit(count: int, change: dict) -> None:
    """The map rule fuses N > 2 sources without holding N planes of evidence; what it gives must be what
    the whole-tensor functions (evidence, decide, blend) give together, image, weights and saved map."""
    settings = replace(default_rule()[1], **change)
    frames = _stack(count)
    net = lambda a, b: torch.maximum(a, b)  # noqa: E731  # a stand-in network that fuses in turn
    fused = Fusion(net, "map", settings)(frames)
    ys = [luma(frame) for frame in frames]
    fused_y = ys[0]
    for y in ys[1:]:
        fused_y = net(fused_y, y)
    compared = compared_sources(ys, fused_y, settings)
    scores = evidence(ys, fused_y, settings, compared)
    weights = decide(scores, fused_y, settings, compared)
    assert torch.equal(fused.weights, weights) and torch.equal(fused.image, blend(frames, weights).clamp(0, 1))
    assert torch.equal(fused.map_image(), map_image(weights))
    assert not torch.equal(weights.argmax(dim=1, keepdim=True).byte(), best_source(scores))  # the clean-up changed the map
    if not settings.radius:
        assert fused.labels is not None and fused.soft is None  # one byte a pixel, not N weights


def test_a_stack_of_300_frames_gets_labels_past_255_and_the_whole_tensor_map() -> None:
    """A microscope's stack may hold hundreds of frames: labels outgrow a byte (uint8 stopped at 256,
    with a traceback) and must still be the whole-tensor map's, seams and regions included."""
    count = 300
    texture = torch.rand(1, 1, 12, count, generator=torch.Generator().manual_seed(5))
    frames = [torch.where(torch.arange(count) == k, texture, 0.5) for k in range(count)]  # frame k: detail in column k alone: labels spread over the frames
    settings = replace(default_rule()[1], clean=1)  # no vote: each column may keep its frame
    fused = Fusion(lambda a, b: torch.maximum(a, b), "map", settings)(frames)
    fused_y = frames[0]
    for frame in frames[1:]:
        fused_y = torch.maximum(fused_y, frame)
    compared = compared_sources(frames, fused_y, settings)
    weights = decide(evidence(frames, fused_y, settings, compared), fused_y, settings, compared)
    assert fused.labels.dtype == torch.int16 and int(fused.labels.max()) > 255
    assert torch.equal(fused.weights, weights) and torch.equal(fused.image, blend(frames, weights))
    assert torch.equal(best_source(torch.arange(count, 0, -1.0).roll(280).view(1, count, 1, 1)), torch.full((1, 1, 1, 1), 280, dtype=torch.int16))


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("rule", ["map", "direct"])
def test_stored_8_and_16_bit_sources_fuse_as_their_values_over_255_or_65535(count: int, rule: str) -> None:
    """gipc-fuse hands the frames over as stored (uint8, uint16), a quarter or half of float32's memory."""
    frames = _stack(count)
    fusion = Fusion(lambda a, b: torch.maximum(a, b), rule, default_rule()[1])
    for dtype, top in ((torch.uint8, 255), (torch.uint16, 65535)):
        stored = [(frame * top).round().to(torch.int32).to(dtype) for frame in frames]
        as_floats = fusion([s.to(torch.int32).float() / top for s in stored])
        assert torch.equal(fusion(stored).image, as_floats.image)
        if rule == "map":
            assert torch.equal(fusion(stored).weights, as_floats.weights)


def test_a_map_heads_weights_over_a_sequence_scale_the_earlier_sources_by_each_step() -> None:
    """A head that gives the fused image so far 0.75 at each step: F = 0.75 (0.75 I1 + 0.25 I2) + 0.25 I3,
    weights 0.5625, 0.1875 and 0.25; with I = 1, 0, 0.5 that is 0.6875."""
    sources = [torch.full((1, 1, 4, 5), value) for value in (1.0, 0.0, 0.5)]
    fused = Fusion(lambda ya, yb: torch.full_like(ya, 0.75), head="weights")(sources)
    torch.testing.assert_close(fused.weights, torch.tensor([0.5625, 0.1875, 0.25]).view(1, 3, 1, 1).expand(1, 3, 4, 5))
    torch.testing.assert_close(fused.image, torch.full((1, 1, 4, 5), 0.6875))


def test_the_map_rule_needs_map_settings() -> None:
    with pytest.raises(ValueError, match="^the map rule needs map settings$"):
        Fusion(lambda ya, yb: ya, "map")


def test_tiled_network_gives_the_same_map_and_image_as_whole() -> None:
    torch.manual_seed(0)
    network = prepare(paper_generator(width=4).eval(), None)
    a, b, _ = _halves(channels=3, height=130, width=170)
    settings = default_rule()[1]  # as shipped: the exposure fit and the detail read the whole fused image
    whole = network.fusion("map", settings)([a, b])
    tiled_fusion = replace(network.fusion("map", settings), net=tiled(network.fuse_y, 64, 32))
    parts = tiled_fusion([a, b])
    assert (whole.weights != parts.weights).float().mean() < 1e-3  # a float-rounding tie may flip a pixel
    assert (whole.image - parts.image).abs().mean() < 1e-4


def test_weights_head_blends_the_sources_and_starts_from_an_image_generator() -> None:
    torch.manual_seed(1)
    gen = paper_generator(width=4, head="weights").eval()
    a, b = torch.rand(1, 1, 20, 24) * 2 - 1, torch.rand(1, 1, 20, 24) * 2 - 1
    w = gen.weight(a, b)
    assert w.min() >= 0 and w.max() <= 1
    torch.testing.assert_close(gen(a, b), w * a + (1 - w) * b)
    with pytest.raises(ValueError, match=r"^model\.generator\.head must be one of .*, got 'mask'$"):
        paper_generator(head="mask")
    with pytest.raises(ValueError, match=r"^only a generator with head='weights' outputs weights"):
        paper_generator(width=4).weight(a, b)


def test_a_map_heads_clean_up_judges_the_margin_of_its_weights() -> None:
    """A head's scores are w and 1 - w, so its margin is |2w - 1|: with ``decisive`` 0.5 a confident
    speck (w = 0.03, margin 0.94) keeps its source through the vote while the unsure field around it
    (w near 0.53, margin near 0.06) is voted on; with ``inf`` the vote takes the speck too."""
    w = 0.53 + 0.02 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    w[..., 9:14, 9:14] = 0.55  # a ring for A, so that no unsure pixel joins the speck's region
    w[..., 10:13, 10:13] = 0.03  # a confident 3x3 speck for B inside a field that leans to A
    assert ((w > 0.5) != (w[..., :1, :1] > 0.5)).any()  # the field is noisy: its own choice is not uniform
    a, b = torch.ones(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    head = lambda ya, yb: w  # noqa: E731
    speck = torch.zeros(32, 32, dtype=torch.bool)
    speck[10:13, 10:13] = True
    kept = Fusion(head, "map", replace(HARD_MAP, clean=7, decisive=0.5), head="weights")([a, b]).weights
    assert kept[0, 1][speck].eq(1).all() and kept[0, 0][~speck].eq(1).all()
    voted = Fusion(head, "map", replace(HARD_MAP, clean=7), head="weights")([a, b]).weights
    assert voted[0, 0].eq(1).all()
    # without a vote, small regions join their surroundings only where their mean margin is under region_margin:
    # the field's unsure specks for B go, the confident one stays
    unvoted = Fusion(head, "map", replace(HARD_MAP, clean=1, min_region=0.01, region_margin=0.5), head="weights")([a, b]).weights
    assert torch.equal(unvoted, kept)
    assert torch.equal(Fusion(head, "map", replace(HARD_MAP, clean=1), head="weights")([a, b]).weights[:, :1], (w > 0.5).float())


def test_a_map_heads_soft_weights_follow_its_own_fused_image() -> None:
    """A map head's guide is its blend w A + (1 - w) B: here flat grey (A is grey where w = 1, B where w = 0),
    so the soft weights are the hard map's double box blur, though each source alone is textured."""
    detailed = texture(1, 24, 32)
    left = (torch.arange(32) < 16).float().expand(1, 1, 24, 32)
    a, b = left * 0.5 + (1 - left) * detailed, left * detailed + (1 - left) * 0.5
    fused = Fusion(lambda ya, yb: left, "map", replace(HARD_MAP, radius=2), head="weights")([a, b])
    torch.testing.assert_close(fused.weights, _box2(torch.cat([left, 1 - left], dim=1), 2), atol=1e-6, rtol=0)


def test_a_map_heads_settings_are_head_map_over_map() -> None:
    """conf/fusion/default.yaml, read here without gipc: ``head_map``'s keys replace ``map``'s for a
    weights head only; an unknown key is refused in one line."""
    config = yaml.safe_load((Path(__file__).parents[1] / "conf" / "fusion" / "default.yaml").read_text())
    image, head = default_rule()[1], default_rule("weights")[1]
    assert config["head_map"] and image == MapSettings(**config["map"])
    assert head == replace(image, **config["head_map"])
    with pytest.raises(UserError, match="no setting claen"):
        map_settings({"map": config["map"], "head_map": {"claen": 3}}, "weights")


def test_gipc_fuse_cleans_a_map_heads_weights_with_its_own_settings(tmp_path: Path) -> None:
    """Without flags a map head gets head_map's clean-up and an image generator map's; a flag given
    sets that one value for either."""
    file = tmp_path / "head.pt"
    torch.save({"format": FORMAT, "generator": {"width": 4, "head": "weights"}, "state_dict": paper_generator(width=4, head="weights").state_dict()}, file)
    args = ["a.png", "b.png", "--out", "f.png", "--backend", "torch"]
    head, image = default_rule("weights")[1], default_rule()[1]
    assert head != image
    assert fuse_fusion(fuse_parser().parse_args(args + ["--ckpt", str(file)]))[0].settings == head
    assert fuse_fusion(fuse_parser().parse_args(args + ["--ckpt", str(file), "--clean", "5"]))[0].settings == replace(head, clean=5)
    assert fuse_fusion(fuse_parser().parse_args(args + ["--clean", "5"]))[0].settings == replace(image, clean=5)


def test_map_scores_against_a_hand_made_true_map() -> None:
    true = torch.zeros(1, 1, 20, 40)
    true[..., :20] = 1
    shifted = torch.zeros(1, 1, 20, 40)
    shifted[..., :21] = 1  # one column off: 20 of 800 pixels wrong, boundary within tolerance
    far = torch.zeros(1, 1, 20, 40)
    far[..., :30] = 1  # ten columns off: no boundary pixel within 2 px
    assert map_accuracy(shifted, true).item() == pytest.approx(1 - 20 / 800)
    assert map_boundary_f(shifted, true).item() == 1.0
    assert map_boundary_f(far, true).item() == 0.0
    assert map_boundary_f(torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 8)).item() == 1.0


@pytest.mark.parametrize("bad, message", [
    ({"window": 4}, "map window must be an odd number of pixels >= 1, got 4"),
    ({"focus_window": 2}, "map focus_window must be an odd number of pixels >= 1, got 2"),
    ({"focus_window": "5,11"}, "map focus_window must be a number or a list of numbers, got '5,11'"),
    ({"clean": 0}, "map clean must be an odd number of pixels >= 1, got 0"),
    ({"radius": -1}, "map radius must be an integer >= 0 (0: hard map), got -1"),
    ({"min_region": 1.5}, "map min_region must be a fraction of the image in [0, 1), got 1.5"),
    ({"min_region": 1.0}, "map min_region must be a fraction of the image in [0, 1), got 1.0"),
    ({"radius": 1.5}, "map radius must be an integer >= 0 (0: hard map), got 1.5"),
    ({"region_margin": float("nan")}, "map region_margin must be an evidence margin >= 0 (inf: every small region joins its surroundings), got nan"),
    ({"eps": 0.0}, "map eps must be > 0, got 0.0"),
    ({"focus": -1.0}, "map focus weights must be >= 0, got [-1.0]"),
    ({"closeness": -1.0}, "map closeness weights must be >= 0, got [-1.0]"),
    ({"focus": (1.0, 1.0)}, "map focus needs one weight per focus window: got 2 for focus_window [7]"),
    ({"detail": (0, 3)}, "map closeness needs one weight per detail size: got 1 for detail [0, 3]"),
    ({"closeness": 0.0, "focus": 0.0}, "map closeness and focus weights are all 0: the map would have no evidence"),
    ({"decisive": -0.5}, "map decisive must be an evidence margin >= 0 (inf: the vote decides every pixel), got -0.5"),
    ({"detail": 4}, "map detail must be 0 (compare intensities) or an odd number of pixels, got 4"),
    ({"detail": -1}, "map detail must be 0 (compare intensities) or an odd number of pixels, got -1"),
    ({"region_margin": -1.0}, "map region_margin must be an evidence margin >= 0 (inf: every small region joins its surroundings), got -1.0"),
    ({"seam": -1}, "map seam must be an integer >= 0 (pixels a boundary may move; 0: where the vote left it), got -1"),
    ({"seam": 1.5}, "map seam must be an integer >= 0 (pixels a boundary may move; 0: where the vote left it), got 1.5"),
    ({"seam_evidence": -0.1}, "map seam_evidence must be a weight >= 0, got -0.1"),
], ids=["window-even", "focus_window-even", "focus_window-string", "clean-0", "radius-negative", "min_region-1.5", "min_region-1", "radius-fraction", "region_margin-nan", "eps-0", "focus-negative", "closeness-negative", "focus-count", "closeness-count", "no-evidence", "decisive-negative", "detail-even", "detail-negative", "region_margin-negative", "seam-negative", "seam-fraction", "seam_evidence-negative"])
def test_bad_map_settings_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        replace(HARD_MAP, **bad)


@pytest.mark.parametrize("edge", [
    {"seam": 0}, {"seam_evidence": 0.0}, {"radius": 0}, {"min_region": 0.0}, {"region_margin": 0.0}, {"region_margin": math.inf},
    {"decisive": 0.0}, {"decisive": math.inf}, {"clean": 1}, {"detail": 0}, {"closeness": 0.0},
], ids=lambda edge: "-".join(f"{k}-{v}" for k, v in edge.items()))
def test_the_edges_of_each_settings_range_are_accepted(edge: dict) -> None:
    """The documented ends (0: a step off, inf: everywhere, 1 px: no vote) are settings, not errors."""
    settings = replace(HARD_MAP, **edge)  # no error
    assert {k: getattr(settings, k) for k in edge} == {k: (v,) if k in ("detail", "closeness") else v for k, v in edge.items()}


def _png16(path: Path, pixels: torch.Tensor) -> Path:
    array = (pixels[0, 0] * 65535).round().to(torch.int64).numpy().astype(np.uint16)
    png.from_array(array, "L;16").save(str(path))
    return path


def test_gipc_fuse_map_rule_keeps_16_bit_and_copies_source_values(tmp_path: Path) -> None:
    a, b, _ = _halves(channels=1)
    pa, pb = _png16(tmp_path / "s-A.png", a), _png16(tmp_path / "s-B.png", b)
    out = tmp_path / "out" / "f.png"
    assert fuse_main([str(pa), str(pb), "--out", str(out), "--rule", "map", "--precision", "fp32"]) == 0
    fused, source_a = read_image(out), read_image(pa)
    assert fused.bit_depth == 16
    # the shipped network finds the sharp half of this texture: its left columns are A's, value for value
    assert torch.equal(fused.pixels[..., :, :12], source_a.pixels[..., :, :12])


def test_save_maps_writes_one_map_per_pair_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name, seed in (("p1", 1), ("p2", 2)):
        a, b, _ = _halves(channels=1)
        _png16(pairs / f"{name}-A.png", a.roll(seed, dims=-1))
        _png16(pairs / f"{name}-B.png", b.roll(seed, dims=-1))
    out, maps = tmp_path / "fused", tmp_path / "maps"
    args = ["--pairs", str(pairs), "--out", str(out), "--save-maps", str(maps), "--rule", "map"]
    assert fuse_main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("gipc-fuse: rule map") and err[-1] == f"gipc-fuse: wrote 2 images to {out} and their maps to {maps}"
    one = ["--out", str(tmp_path / "one.png"), "--save-maps", str(tmp_path / "one-map"), "--rule", "map"]
    assert fuse_main([str(pairs / "p1-A.png"), str(pairs / "p1-B.png"), *one]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == f"gipc-fuse: wrote {tmp_path / 'one.png'} and its map to {tmp_path / 'one-map'}"
    written = sorted(p.name for p in maps.iterdir())
    assert written == ["p1-map.png", "p2-map.png"]
    decision = read_image(maps / "p1-map.png")
    assert decision.bit_depth == 8 and decision.pixels.shape == (1, 48, 64) and set(decision.pixels.unique().tolist()) <= {0.0, 1.0}
    before = (maps / "p1-map.png").read_bytes()
    assert fuse_main(["--pairs", str(pairs), "--out", str(tmp_path / "fused2"), "--save-maps", str(maps)]) == 2
    assert "not empty" in capsys.readouterr().err and (maps / "p1-map.png").read_bytes() == before
    assert not (tmp_path / "fused2").exists()


def test_a_stack_of_8_bit_files_is_copied_from_its_frames_and_its_map_has_a_grey_per_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """gipc-fuse on four frames, each sharp in its own band: every output pixel is its map's frame's pixel,
    bit for bit, and the saved map shades the frames 255, 170, 85 and 0 (white the first, black the last)."""
    frames = [(frame * 255).round().byte()[0] for frame in _stack(4)]
    paths = []
    for k, frame in enumerate(frames):
        paths.append(tmp_path / f"frame{k}.png")
        PILImage.fromarray(frame.permute(1, 2, 0).numpy()).save(paths[-1])
    assert fuse_main([*map(str, paths), "--out", str(tmp_path / "out"), "--save-maps", str(tmp_path / "maps")]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == f"gipc-fuse: wrote {tmp_path / 'out' / 'frame0-fused.png'} and its map to {tmp_path / 'maps'}"
    fused = torch.from_numpy(np.array(PILImage.open(tmp_path / "out" / "frame0-fused.png"))).permute(2, 0, 1)
    shades = torch.from_numpy(np.array(PILImage.open(tmp_path / "maps" / "frame0-map.png")))
    assert set(shades.unique().tolist()) == {255, 170, 85, 0}
    chosen = torch.stack(frames).gather(0, (3 - shades.long() // 85).expand(1, 3, *shades.shape))[0]
    assert torch.equal(fused, chosen)
    assert [int(shades[:, 23 * k + 11].float().mean().round()) for k in range(4)] == [255, 170, 85, 0]  # each band's centre from its frame


def test_save_maps_needs_a_map_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, _ = _halves(channels=1)
    pa, pb = _png16(tmp_path / "s-A.png", a), _png16(tmp_path / "s-B.png", b)
    assert fuse_main([str(pa), str(pb), "--out", str(tmp_path / "f.png"), "--rule", "direct", "--save-maps", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "gipc-fuse: error: --save-maps needs a rule that makes a map: add --rule map"
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "m").exists()


def test_save_maps_wants_a_folder_not_a_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, _ = _halves(channels=1)
    pa, pb = _png16(tmp_path / "s-A.png", a), _png16(tmp_path / "s-B.png", b)
    maps = tmp_path / "map.png"
    assert fuse_main([str(pa), str(pb), "--out", str(tmp_path / "f.png"), "--rule", "map", "--save-maps", str(maps)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"gipc-fuse: error: --save-maps {maps}: give a folder; each fusion's map is written into it"
    assert not (tmp_path / "f.png").exists() and not maps.exists()


def test_every_map_setting_is_a_gipc_fuse_flag_and_a_switch_turns_both_ways() -> None:
    parse = fuse_parser().parse_args
    default = parse(["a.png", "b.png", "--out", "f.png"])
    assert all(getattr(default, f.name) is None for f in fields(MapSettings))  # the network's head picks the defaults
    on, off = (parse(["a.png", "b.png", "--out", "f.png", flag, "--detail", "5"]) for flag in ("--match-exposure", "--no-match-exposure"))
    assert on.match_exposure is True and off.match_exposure is False and on.detail == off.detail == (5,)
    terms = parse(["a.png", "b.png", "--out", "f.png", "--focus-window", "5,11", "--focus", "0.5,0.25"])
    assert terms.focus_window == (5, 11) and terms.focus == (0.5, 0.25)


def test_the_rules_description_says_what_the_map_does() -> None:
    net = lambda ya, yb: ya  # noqa: E731
    robust = Fusion(net, "map", replace(HARD_MAP, match_exposure=True, detail=(31, 11), closeness=(0.5, 0.25), decisive=1.0)).describe()
    assert "(window 7, exposure matched; detail 31 x 0.5, detail 11 x 0.25) + focus (window 7 x 1)" in robust
    assert "majority 15 where the margin is under 1" in robust
    plain = Fusion(net, "map", replace(HARD_MAP, decisive=0.0)).describe()
    assert "exposure" not in plain and "detail" not in plain and "no vote" in plain and "majority" not in plain
    assert "min region 0.01 where its mean margin is under 0.5," in Fusion(net, "map", replace(HARD_MAP, min_region=0.01, region_margin=0.5)).describe()
    assert "min region 0.01," in Fusion(net, "map", replace(HARD_MAP, min_region=0.01)).describe()
    assert "seams moved up to 2 px to where the sources agree" in Fusion(net, "map", replace(HARD_MAP, seam=2)).describe()
    assert "seams" not in plain
    head = Fusion(net, "map", replace(HARD_MAP, seam=2, decisive=0.5), head="weights").describe()
    assert head.startswith("rule map (the map head's weights; majority 15 where the margin is under 0.5,") and "seams moved up to 2 px" in head


def test_decide_and_blend_are_exact_for_hard_maps() -> None:
    a, b, sharp = _halves(channels=3)
    weights = decide(closeness_scores([a.mean(1, keepdim=True), b.mean(1, keepdim=True)], sharp.mean(1, keepdim=True), 7), sharp[:, :1], HARD_MAP)
    assert set(weights.unique().tolist()) == {0.0, 1.0}
    out = blend([a, b], weights)
    assert torch.equal(torch.where(weights[:, :1] == 1, a, b), out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["opencv", "torch"])
def test_plane_means_are_each_planes_exact_mean_in_float64(dtype: torch.dtype) -> None:
    x = torch.rand(2, 3, 41, 60, generator=torch.Generator().manual_seed(3), dtype=dtype)[..., 2:, 5:]  # a non-contiguous view
    means = plane_means(x)
    exact = torch.tensor([math.fsum(plane.double().flatten().tolist()) / plane.numel() for plane in x.reshape(-1, 39, 55)], dtype=torch.float64)
    assert means.dtype == torch.float64 and means.shape == (2, 3, 1, 1)
    torch.testing.assert_close(means.flatten(), exact, rtol=1e-9 if dtype == torch.float32 else 1e-15, atol=0)  # float32's step: 6e-8


def test_exposure_matching_passes_gradients() -> None:
    """With gradients the means are torch's: matched = (s - mean s) * gain + mean f, d(sum)/d f = n * (1/n) = 1 per matched pixel."""
    source = torch.rand(1, 1, 9, 11, generator=torch.Generator().manual_seed(4))
    fused = torch.rand(1, 1, 9, 11, generator=torch.Generator().manual_seed(5), requires_grad=True)
    (matched,) = match_exposure([source], fused)
    matched.sum().backward()
    # sum(matched) = n * mean(f) + gain * sum(s - mean s) = n * mean(f): the gain's terms cancel
    torch.testing.assert_close(fused.grad, torch.ones_like(fused), rtol=1e-4, atol=1e-5)


def test_compared_one_source_at_a_time_fits_each_source_once_to_match_exposures_floats() -> None:
    """A stack's map compares each source three times and fits its exposure on the first: the same
    floats as match_exposure, and a later read of that index under the fit kept (a source twice as
    bright is then scaled by the first one's gain: 2 s - mean s, times the gain, plus mean f)."""
    generator = torch.Generator().manual_seed(6)
    fused = torch.rand(1, 1, 23, 31, generator=generator)
    sources = [0.7 * fused + 0.1 + 0.05 * torch.rand(1, 1, 23, 31, generator=generator) for _ in range(3)]
    compare = Compared(fused, replace(HARD_MAP, match_exposure=True))
    for index in (2, 0, 1, 2):
        assert torch.equal(compare(index, sources[index]), match_exposure([sources[index]], fused)[0])
    (mean, gain), target = compare.fits[1], fused.mean()
    assert float(gain) == pytest.approx(1 / 0.7, rel=0.05)
    torch.testing.assert_close(compare(1, 2 * sources[1]), (2 * sources[1] - mean) * gain + target, rtol=0, atol=1e-6)
    assert not torch.allclose(compare(1, 2 * sources[1]), match_exposure([2 * sources[1]], fused)[0], atol=1e-3)
    assert Compared(fused, HARD_MAP)(0, sources[0]) is sources[0]  # no exposure matching: the source itself


@pytest.mark.parametrize("size", [1, 3, 15, 41])
def test_box_counts_are_the_set_pixels_of_each_window_with_replicated_borders(size: int) -> None:
    """The vote's counts, exact integers: a brute-force count over a replicate-padded mask."""
    mask = (torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(2)) > 0.6).to(torch.uint8)
    padded = torch.nn.functional.pad(mask.double(), (size // 2,) * 4, mode="replicate")
    expected = torch.nn.functional.avg_pool2d(padded, size, stride=1, divisor_override=1).int()
    counts = box_counts(mask, size)
    assert counts.dtype == torch.int32 and torch.equal(counts, expected)
    # the GPU's path, run here on the CPU: float32 means (OpenCV's here, summed-area tables there) times the area
    assert torch.equal(_rounded_counts(mask, size), expected)
