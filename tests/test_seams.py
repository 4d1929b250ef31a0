"""The seam step of a decision map (gipc.seams): cuts checked against hand-placed seams and exhaustive searches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

import gipc.seams
from gipc.decision import decide, one_hot
from gipc.fusion import Each
from gipc.seams import place_seams

from helpers import HARD_MAP, texture


def _columns(labels: list[int], height: int = 12) -> torch.Tensor:
    """The (1, 1, height, W) label image of a map whose column x holds source ``labels[x]``."""
    return torch.tensor(labels, dtype=torch.uint8).expand(1, 1, height, len(labels))


def test_a_seam_moves_within_its_reach_to_where_the_sources_agree() -> None:
    """A and B differ by 0.2 left of column 28 and agree right of it; the vote put the boundary between
    columns 24 and 25. Crossing between two differing columns costs 0.2 per row, between 27 and 28 0.1,
    from 28 on only the step: within reach 4 the seam goes to 28 | 29, the cheapest place nearest the
    vote's (each pixel moved costs a little evidence); within reach 2 every place it can reach costs
    0.2, so it stays; with evidence dearer than any saving it stays too."""
    b = texture(1, 12, 40)
    a = b.clone()
    a[..., :28] += 0.2
    voted = _columns([0] * 25 + [1] * 15)
    margins = torch.ones(1, 1, 12, 40)
    assert torch.equal(place_seams(voted, [a, b], margins, 4, 0.001), _columns([0] * 29 + [1] * 11))
    assert torch.equal(place_seams(voted, [a, b], margins, 2, 0.001), voted)
    assert torch.equal(place_seams(voted, [a, b], margins, 4, 1.0), voted)  # 4 px x 1.0 > the 0.2 saved per row
    assert torch.equal(place_seams(voted, [a, b], margins, 0, 0.001), voted)
    # decide runs the same step with the map's seam and seam_evidence, on the margin of its scores (here 1)
    scores = torch.cat([voted.eq(0), voted.eq(1)], dim=1).float() - 0.5
    seams = replace(HARD_MAP, clean=1, seam=4)
    assert torch.equal(decide(scores, b, replace(seams, seam_evidence=0.001), [a, b]), one_hot(_columns([0] * 29 + [1] * 11), 2, torch.float32))
    assert torch.equal(decide(scores, b, replace(seams, seam_evidence=1.0), [a, b]), one_hot(voted, 2, torch.float32))


def test_a_map_of_one_source_has_no_seam_to_place_and_reads_no_source() -> None:
    """A stack's sources are made when read (minutes for a long one): where no boundary exists, none is made."""
    labels = torch.full((1, 1, 8, 9), 2, dtype=torch.uint8)
    unread = Each(3, lambda i: pytest.fail(f"source {i} read"))
    assert torch.equal(place_seams(labels, unread, torch.ones(1, 1, 8, 9), 3, 0.1), labels)


def test_seams_of_three_sources_each_move_to_where_their_two_sources_agree() -> None:
    """Sources 0 and 1 agree from column 14 on, 1 and 2 up to column 26: the 0 | 1 boundary (11 | 12)
    moves to 14 | 15 and the 1 | 2 boundary (29 | 30) to 25 | 26, the first places where a seam costs
    only the step (alpha-expansion; as in the pair above)."""
    s1 = texture(1, 12, 40)
    s0, s2 = s1.clone(), s1.clone()
    s0[..., :14] += 0.2
    s2[..., 27:] -= 0.2
    voted = _columns([0] * 12 + [1] * 18 + [2] * 10)
    moved = place_seams(voted, [s0, s1, s2], torch.ones(1, 1, 12, 40), 4, 0.001)
    assert torch.equal(moved, _columns([0] * 15 + [1] * 11 + [2] * 14))


@pytest.mark.parametrize("count", [2, 3])
def test_the_seam_step_priced_in_small_chunks_cuts_as_in_one(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph's pairs are priced a chunk of nodes at a time; chunks of 5 nodes, which cut through
    every row and leave every downward pair's head in a later chunk, give the map of one chunk, on
    blobs of 2 and 3 sources (seams moved: the test is not empty)."""
    g = torch.Generator().manual_seed(count)
    blobs = torch.nn.functional.interpolate(torch.rand(1, count, 6, 8, generator=g), size=(36, 48), mode="bilinear")
    labels = blobs.argmax(dim=1, keepdim=True).to(torch.uint8)
    sources = [texture(1, 36, 48, seed) for seed in range(count)]
    margins = torch.rand(1, 1, 36, 48, generator=g)
    whole = place_seams(labels, sources, margins, 3, 0.05)
    monkeypatch.setattr(gipc.seams, "_CHUNK", 5)
    assert torch.equal(place_seams(labels, sources, margins, 3, 0.05), whole) and not torch.equal(whole, labels)


@pytest.mark.parametrize("reach", [1, 2, 3, 6])
def test_the_seam_band_holds_the_pixels_within_reach_of_another_source(reach: int) -> None:
    """Against scipy's chessboard distance to the pixels that have a 4-neighbour of another source,
    on blobs that touch the image's borders and corners."""
    g = torch.Generator().manual_seed(reach)
    blobs = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 7, generator=g), size=(30, 41), mode="bilinear")
    image = blobs.argmax(dim=1)[0].to(torch.uint8).numpy()
    image[0, 0] = image[-1, -1] = 3  # lone corner pixels
    padded = np.pad(image, 1, mode="edge")
    edge = np.zeros(image.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy : dy + 30, dx : dx + 41] != image
    distance = ndimage.distance_transform_cdt(~edge, metric="chessboard")
    free, near = gipc.seams._bands(image, reach)
    assert np.array_equal(free, distance <= reach - 1) and np.array_equal(near, distance <= reach)
    assert 0 < free.sum() < near.sum() < image.size


def _seam_energies(stack: np.ndarray, original: np.ndarray, sources: np.ndarray, margins: np.ndarray, weight: float) -> np.ndarray:
    """The energy place_seams' docstring names, of each of a stack of labellings (K, H, W) of ``sources``
    (N, H, W), written apart from its graph: for each 4-neighbour pair of different sources p and q,
    the mean over its two pixels of |source p - source q| there, plus the step; for each pixel that
    left ``original``, ``weight`` times its margin."""
    sources = sources.astype(np.float64)[None]  # (1, N, H, W)
    energy = weight * (margins * (stack != original)).sum(axis=(1, 2))
    for axis in (1, 2):
        tail, head = (slice(None),) * axis + (slice(None, -1),), (slice(None),) * axis + (slice(1, None),)
        p, q = stack[tail][:, None].astype(np.intp), stack[head][:, None].astype(np.intp)  # (K, 1, h, w)
        step = sum(  # |p - q| at the pair's tail pixel and at its head pixel
            np.abs(np.take_along_axis(at, p, 1) - np.take_along_axis(at, q, 1))[:, 0]
            for at in (sources[(slice(None),) + tail], sources[(slice(None),) + head])
        ) / 2 + gipc.seams.SEAM_STEP
        energy += ((p != q)[:, 0] * step).sum(axis=(1, 2))
    return energy


def _every_move(image: np.ndarray, free: np.ndarray, alpha: int | None = None) -> np.ndarray:
    """(2^k, H, W): ``image`` with each of its k ``free`` pixels kept or changed (to ``alpha``; for a pair, to the other source)."""
    bits = ((np.arange(2 ** free.sum())[:, None] >> np.arange(free.sum())) & 1).astype(bool)
    stack = np.repeat(image[None], len(bits), axis=0)
    stack[:, free] = np.where(bits, 1 - image[free] if alpha is None else alpha, image[free])
    return stack


def test_the_seam_cut_of_a_pair_costs_the_least_an_exhaustive_search_finds() -> None:
    """For two sources the graph cut is exact: on jagged boundaries between random sources, no labelling
    of the pixels within reach 1 (every one of 2^k, k <= 16) costs less than the cut's, by an energy
    written apart from the graph; pixels out of reach keep their source."""
    moved = 0
    for seed in range(24):  # 6 let a graph that wired pixels outside the band to a node of it pass (seed 10 shows it)
        rng = np.random.default_rng(seed)
        height, width = 6, 8
        columns = rng.integers(3, 5, size=height)  # the boundary's column in each row
        labels = (np.arange(width)[None, :] >= columns[:, None]).astype(np.uint8)
        a, b = rng.random((2, height, width), dtype=np.float32)
        margins = rng.random((height, width), dtype=np.float32)
        weight = (0.02, 0.3)[seed % 2]
        cut = place_seams(torch.from_numpy(labels)[None, None], [torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]],
                          torch.from_numpy(margins)[None, None], 1, weight)[0, 0].numpy()
        free = gipc.seams._bands(labels, 1)[0]
        assert free.sum() <= 16 and np.array_equal(cut[~free], labels[~free])
        best = _seam_energies(_every_move(labels, free), labels, np.stack([a, b]), margins, weight).min()  # every labelling of the free pixels
        assert _seam_energies(cut[None], labels, np.stack([a, b]), margins, weight)[0] == pytest.approx(best, abs=1e-5), seed
        moved += not np.array_equal(cut, labels)
    assert moved >= 12  # the cut moved pixels on most of the pairs: the search had work to check


def test_each_expansion_among_three_sources_costs_the_least_of_its_moves() -> None:
    """For N sources each alpha-expansion is exact over its own moves (every free pixel keeps its label or
    takes alpha): on two jagged boundaries among three random sources, no such move of the pixels within
    reach 1 (every one of 2^k, k <= 12) costs less than the expansion's, by the energy written apart
    from the graph, whose seams between two sources read both at both ends."""
    moved = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        height, width = 3, 9
        columns = np.stack([rng.integers(2, 4, size=height), rng.integers(5, 7, size=height)])  # each boundary's column per row
        labels = (np.arange(width)[None, :] >= columns[:, :, None]).sum(axis=0).astype(np.uint8)
        sources = rng.random((3, height, width), dtype=np.float32)
        margins = rng.random((height, width), dtype=np.float32)
        weight = (0.02, 0.3)[seed % 2]
        free, near = gipc.seams._bands(labels, 1)
        assert free.sum() <= 12
        pixels = np.flatnonzero(near)
        values = np.stack([source.ravel()[pixels] for source in sources])
        image = labels.copy()
        image[free] = 0  # as place_seams starts
        for alpha in (1, 2):
            before = image.copy()
            gipc.seams._expand(image, labels, alpha, free, near, pixels, values, margins, weight)
            best = _seam_energies(_every_move(before, free, alpha), labels, sources, margins, weight).min()
            assert _seam_energies(image[None], labels, sources, margins, weight)[0] == pytest.approx(best, abs=1e-5), (seed, alpha)
        moved += not np.array_equal(image, labels)
    assert moved >= 4  # the expansions moved pixels on most of the images: the search had work to check
