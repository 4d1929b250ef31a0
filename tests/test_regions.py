"""Small regions of a decision map (gipc.regions) against regions labelled and voted by hand with scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from gipc.regions import remove_small_regions


def test_only_small_regions_without_evidence_join_their_surroundings_under_region_margin() -> None:
    """A flat patch (margin 0) and a backed speck (margin 2), both under 1 % of a 40x40 map, and a speck
    in a corner (its bounding box at the image's edge): region_margin 1 returns the flat ones to A, inf all."""
    labels = torch.zeros(1, 1, 40, 40, dtype=torch.uint8)
    labels[..., 30:] = 1
    labels[..., 8:11, 5:8] = 1  # flat patch
    labels[..., 20:23, 5:8] = 1  # backed by its evidence
    labels[..., :2, :2] = 1  # flat, in the corner
    margins = torch.zeros(1, 1, 40, 40)
    margins[..., 20:23, 5:8] = 2.0
    kept = remove_small_regions(labels, 2, 0.01, margins, region_margin=1.0)
    assert kept[0, 0, 8:11, 5:8].eq(0).all() and kept[0, 0, :2, :2].eq(0).all()  # the flat ones went back to A
    assert kept[0, 0, 20:23, 5:8].eq(1).all()  # the backed speck stays B's
    assert torch.equal(kept[..., 25:], labels[..., 25:])  # B's half (30 % of the map) is not small
    every = remove_small_regions(labels, 2, 0.01, margins, region_margin=float("inf"))
    assert torch.equal(every, remove_small_regions(labels, 2, 0.01)) and every[0, 0, 20:23, 5:8].eq(0).all()
    assert torch.equal(remove_small_regions(labels, 2, 0.01, margins, region_margin=0.0), labels)  # no mean is under 0
    # a focus sequence: a flat patch of the third source inside the second one's third goes to the second
    labels3 = torch.zeros(1, 1, 40, 60, dtype=torch.uint8)
    labels3[..., 20:40], labels3[..., 40:] = 1, 2
    labels3[..., 10:13, 25:28] = 2
    three = remove_small_regions(labels3, 3, 0.01, torch.zeros(1, 1, 40, 60), 1.0)
    labels3[..., 10:13, 25:28] = 1
    assert torch.equal(three, labels3)


def test_small_regions_by_size_8_connectivity_mean_margin_and_their_borders_majority() -> None:
    """40 x 40 px at min_region 0.01 (16 px): a region of 15 px joins its surroundings; one of 16 stays, as
    do two 3x3 blocks touching at a corner (one region of 18) and a 3x3 block whose mean margin equals
    region_margin (only those under it join, as one of mean margin 0.5 does). Of three sources, a speck takes the source that holds
    most of its border (9 of 16 pixels), not the one it meets first."""
    labels = torch.zeros(1, 1, 40, 40, dtype=torch.uint8)
    labels[..., 30:] = 1
    labels[..., 2:6, 2:6] = 1  # 16 px
    labels[..., 2:5, 10:15] = 1  # 15 px
    labels[..., 10:13, 2:5] = 1  # 9 + 9 px, corners (12, 4) and (13, 5) touching
    labels[..., 13:16, 5:8] = 1
    labels[..., 20:23, 2:5] = 1  # 9 px, mean margin 1
    labels[..., 26:29, 10:13] = 1  # 9 px, mean margin 0.5: under region_margin, so it joins
    margins = torch.zeros(1, 1, 40, 40)
    margins[..., 20:23, 2:5] = 1.0
    margins[..., 26:29, 10:13] = 0.5
    expected = labels.clone()
    expected[..., 2:5, 10:15] = 0
    expected[..., 26:29, 10:13] = 0
    assert torch.equal(remove_small_regions(labels, 2, 0.01, margins, region_margin=1.0), expected)
    labels3 = torch.ones(1, 1, 40, 60, dtype=torch.uint8)
    labels3[..., 30:] = 2
    labels3[..., 10:13, 29:32] = 0  # its border: columns 28 and 29 of source 1, 30 to 32 of source 2
    expected3 = labels3.clone()
    expected3[..., 10:13, 29:32] = 2
    assert torch.equal(remove_small_regions(labels3, 3, 0.01), expected3)


def test_a_speck_whose_border_two_sources_hold_equally_takes_the_lower_one() -> None:
    """A 2x2 speck of source 0 has a border of 12 pixels: 6 of source 2 on its left, 6 of source 1
    on its right. A tie goes to the lower source, whichever side it lies on."""
    labels = torch.full((1, 1, 40, 60), 2, dtype=torch.uint8)
    labels[..., 31:] = 1
    labels[..., 10:12, 30:32] = 0  # border: rows 9-12 x columns 29-32, columns 29-30 of source 2
    cleaned = remove_small_regions(labels, 3, 0.01)
    expected = labels.clone()
    expected[..., 10:12, 30:32] = 1
    assert torch.equal(cleaned, expected)


def _border_majority_by_region(labels: torch.Tensor, count: int, min_region: float, margins: torch.Tensor, region_margin: float) -> torch.Tensor:
    """remove_small_regions of one (1, 1, H, W) label image written out a region at a time: each
    small region's border made by dilating its own mask (scipy's, not the OpenCV the code uses), its
    sources counted, in turn."""
    image, strength = labels[0, 0].numpy().copy(), margins[0, 0].numpy()
    limit = min_region * image.size
    eight = np.ones((3, 3), dtype=bool)
    for source in range(count):
        regions, number = ndimage.label(image == source, structure=eight)
        for region in range(1, number + 1):
            inside = regions == region
            if inside.sum() >= limit or strength[inside].mean() >= region_margin:
                continue
            border = ndimage.binary_dilation(inside, structure=eight) & ~inside
            votes = np.bincount(image[border], minlength=count)
            votes[source] = -1
            if votes.max() > 0:
                image[inside] = votes.argmax()
    return torch.from_numpy(image)[None, None]


@pytest.mark.parametrize("count", [3, 4, 6])
def test_small_regions_of_a_stack_take_the_majority_of_their_borders_as_a_region_by_region_pass_does(count: int) -> None:
    """Blocks of ``count`` sources strewn with specks (hundreds of small regions, many touching
    several sources): the same labels as handing each region over in turn."""
    generator = torch.Generator().manual_seed(count)
    blocks = torch.randint(0, count, (1, 1, 8, 10), generator=generator, dtype=torch.uint8)
    labels = blocks.repeat_interleave(9, dim=2).repeat_interleave(9, dim=3)[..., :70, :85].contiguous()
    specks = torch.rand(labels.shape, generator=generator) < 0.15
    labels[specks] = torch.randint(0, count, (int(specks.sum()),), generator=generator, dtype=torch.uint8)
    margins = torch.rand(labels.shape, generator=generator)
    for region_margin in (math.inf, 0.6):
        expected = _border_majority_by_region(labels, count, 0.01, margins, region_margin)
        assert not torch.equal(expected, labels)
        assert torch.equal(remove_small_regions(labels, count, 0.01, margins, region_margin), expected)
