"""Tile blending weights form a partition of unity that ignores tile margins; sequences fuse left to right.

The generator itself against whole-image inference: tests/test_fuse.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gipc.decision import MapSettings
from gipc.fusion import Fusion, default_rule
from gipc.tiling import DEFAULT_TILE, TILE_ALIGN, auto_tiling, axis_weights, fuse_sequence, remember_last, tiled


@pytest.mark.parametrize(("size", "tile", "overlap"), [(1000, 512, 64), (600, 256, 32), (100, 30, 8), (513, 512, 64), (7, 4, 1)])
def test_axis_weights_sum_to_one_and_cover_the_axis(size: int, tile: int, overlap: int) -> None:
    """As few tiles as tiles of ``tile`` advancing by ``tile - overlap`` need (one if the axis fits), all of one
    length, at most ``tile``, a multiple of TILE_ALIGN below it."""
    spans = axis_weights(size, tile, overlap)
    length = len(spans[0][1])
    assert len(spans) == (1 if size <= tile else -(-(size - overlap) // (tile - overlap)))
    total = torch.zeros(size, dtype=torch.float64)
    for start, weight in spans:
        assert len(weight) == length <= tile and 0 <= start <= size - length
        assert length in (size, tile) or length % TILE_ALIGN == 0
        assert weight.min() >= 0
        total[start : start + length] += weight.double()
    assert torch.allclose(total, torch.ones(size, dtype=torch.float64), atol=1e-6)


def test_tiles_are_as_short_as_their_count_allows() -> None:
    """4000 px in tiles of up to 512 overlapping by 32: 9 tiles (8 advancing by 480 reach 3872 px), each
    ceil(3968 / 9) + 32 = 473 px long rounded up to 480 (a multiple of 16), advancing by 448, the last at
    4000 - 480: 4320 px computed, not 9 x 512 = 4608."""
    spans = axis_weights(4000, 512, 32)
    assert [start for start, _ in spans] == [448 * i for i in range(8)] + [3520]
    assert {len(weight) for _, weight in spans} == {480}


def test_axis_weights_by_hand() -> None:
    """size 8, tile 6, overlap 4: starts 0 and 2; margin 1, ramp 2 -> rise 0, 1/3, 2/3, 1."""
    (s0, w0), (s1, w1) = axis_weights(8, 6, 4)
    assert (s0, s1) == (0, 2)
    assert w0.tolist() == pytest.approx([1, 1, 1, 2 / 3, 1 / 3, 0])
    assert w1.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1])


def test_image_within_one_tile_goes_through_whole() -> None:
    calls: list[tuple[int, ...]] = []

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(a.shape))
        return a + b

    a, b = torch.rand(2, 1, 40, 50), torch.rand(2, 1, 40, 50)
    assert torch.equal(tiled(fuse, 64, 16)(a, b), a + b)
    assert calls == [(2, 1, 40, 50)]


@pytest.mark.parametrize(("height", "width", "tiles"), [(150, 97, 3 * 2), (40, 150, 1 * 3), (150, 40, 3 * 1)])
def test_tiles_never_exceed_the_tile_size(height: int, width: int, tiles: int) -> None:
    """Tiles of up to 64 overlapping by 16: 97 px take 2 (of 57), 150 px 3 (of 61); a side within one tile (40) still tiles the other."""
    seen: list[tuple[int, int]] = []

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(a.shape[-2:]))
        return (a + b) / 2

    a, b = torch.rand(1, 1, height, width), torch.rand(1, 1, height, width)
    out = tiled(fuse, 64, 16)(a, b)
    assert torch.allclose(out, (a + b) / 2, atol=1e-6)
    assert max(max(s) for s in seen) <= 64 and len(set(seen)) == 1 and len(seen) == tiles


def test_progress_wraps_each_tiled_images_tiles_and_changes_nothing() -> None:
    """150 x 97 px in tiles of up to 64 overlapping by 16: 3 x 2 tiles go through ``progress``, one by one;
    an image within one tile goes through whole, with no progress shown."""
    shown: list[int] = []
    counted: list[int] = []

    def progress(tiles: list):
        shown.append(len(tiles))
        for tile in tiles:
            counted.append(1)
            yield tile

    a, b = torch.rand(2, 1, 1, 150, 97, generator=torch.Generator().manual_seed(3))
    average = lambda x, y: (x + y) / 2  # noqa: E731
    assert torch.equal(tiled(average, 64, 16, progress)(a, b), tiled(average, 64, 16)(a, b))
    assert shown == [6] and len(counted) == 6
    tiled(average, 64, 16, progress)(a[..., :40, :50], b[..., :40, :50])
    assert shown == [6]


def test_constant_per_tile_fuser_blends_to_a_partition_of_unity() -> None:
    """A fuser returning ones shows the blending weights sum to 1 at every pixel, in 2-D."""
    out = tiled(lambda a, b: torch.ones_like(a), 32, 12)(torch.rand(1, 1, 75, 90), torch.rand(1, 1, 75, 90))
    assert torch.allclose(out, torch.ones_like(out), atol=1e-6)


def test_garbage_within_the_margin_never_reaches_the_result() -> None:
    """A fuser wrong on its outer overlap//4 ring (as zero padding makes a CNN) still tiles exactly."""
    overlap = 16

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = a * b
        ring = overlap // 4
        out[..., :ring, :] = 7.0
        out[..., -ring:, :] = 7.0
        out[..., :, :ring] = 7.0
        out[..., :, -ring:] = 7.0
        return out

    a, b = torch.rand(1, 1, 100, 120), torch.rand(1, 1, 100, 120)
    out = tiled(fuse, 48, overlap)(a, b)
    interior = (slice(None), slice(None), slice(overlap // 4, -(overlap // 4)), slice(overlap // 4, -(overlap // 4)))
    assert torch.allclose(out[interior], (a * b)[interior], atol=1e-6)


@pytest.mark.parametrize(("tile", "overlap"), [(0, 0), (32, 32), (32, -1)])
def test_bad_tiling_is_refused(tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="need tile >= 1 and 0 <= overlap < tile"):
        tiled(lambda a, b: a, tile, overlap)


@pytest.mark.parametrize("height", [40, 100])
def test_tiling_refuses_sources_of_different_shapes_in_one_line(height: int) -> None:
    """Within one tile (40 rows) as beyond it (100): one source a column wider is named, not cut to fit."""
    a, b = torch.rand(1, 1, height, 50), torch.rand(1, 1, height, 51)
    with pytest.raises(ValueError, match=rf"^sources differ in shape: \(1, 1, {height}, 50\) vs \(1, 1, {height}, 51\)$"):
        tiled(lambda x, y: x, 64, 16)(a, b)


@pytest.mark.parametrize(("tile", "overlap"), [(-1, 16), (32, 32), (32, -1)])
def test_a_fusion_refuses_bad_tiling_when_built_not_when_first_used(tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=rf"^tile {tile} with overlap {overlap}: need tile >= 0 and 0 <= overlap < tile$"):
        Fusion(lambda a, b: a, tile=tile, overlap=overlap)



@pytest.mark.parametrize("overlap", [-1, DEFAULT_TILE])
def test_automatic_tiles_refuse_an_overlap_they_cannot_take_when_built(overlap: int) -> None:
    with pytest.raises(ValueError, match=rf"^tile {DEFAULT_TILE} \(automatic\) with overlap {overlap}: need tile >= 0 and 0 <= overlap < tile$"):
        Fusion(lambda a, b: a, tile=None, overlap=overlap)
    assert Fusion(lambda a, b: a, tile=0, overlap=overlap).tile == 0  # never tiled: the overlap is not used


def test_sequence_fuses_left_to_right() -> None:
    """F = f(f(I1, I2), I3) with a non-commutative f: 2 * (2 * 1 + 2) + 3 = 11."""
    images = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)]
    assert fuse_sequence(lambda f, i: 2 * f + i, images).item() == 11.0


def test_sequence_needs_two_sources() -> None:
    with pytest.raises(ValueError, match="at least two sources"):
        fuse_sequence(lambda a, b: a, [torch.zeros(1)])


def test_remember_last_runs_the_network_once_for_the_direct_and_map_rules() -> None:
    """A test report's two rows of one network: same luminance in, one pass, outputs as if unshared."""
    calls = []

    def network(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.maximum(a, b)

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 16, 20, generator=g), torch.rand(1, 3, 16, 20, generator=g)
    settings = MapSettings(window=3, match_exposure=True, detail=(5,), closeness=(1.0,), focus=(1.0,), focus_window=(3,), clean=3, decisive=0.5, min_region=0.0, region_margin=float("inf"), seam=0, seam_evidence=0.05, radius=0, eps=0.1)
    shared = remember_last(network)
    direct, mapped = Fusion(shared, "direct")([a, b]).image, Fusion(shared, "map", settings)([a, b]).image
    assert len(calls) == 1
    assert torch.equal(direct, Fusion(network, "direct")([a, b]).image)
    assert torch.equal(mapped, Fusion(network, "map", settings)([a, b]).image)
    calls.clear()
    Fusion(shared, "direct")([b, a])  # other inputs: the network runs again
    assert len(calls) == 1


def test_a_network_fusion_tiles_a_large_image_and_a_plain_fusion_sees_it_whole() -> None:
    seen: list[tuple[int, ...]] = []

    def net(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # exact in tiles, like the network
        seen.append(tuple(a.shape[-2:]))
        return torch.maximum(a, b)

    a, b = torch.rand(2, 1, 1, 1100, 1000, generator=torch.Generator().manual_seed(0))
    whole = Fusion(net)([a, b]).image  # tile 0: baselines, whose windows span the image
    assert seen == [(1100, 1000)]
    seen.clear()
    tiles = Fusion(net, tile=None)([a, b]).image  # what InferenceGenerator.fusion() builds: 1.1 MP > 1 MP
    assert max(seen) <= (DEFAULT_TILE, DEFAULT_TILE) and len(seen) == 9 and torch.allclose(tiles, whole, atol=1e-6)
    seen.clear()
    Fusion(net, tile=None)([a[..., :1000, :1000], b[..., :1000, :1000]])  # 1 MP: whole
    assert seen == [(1000, 1000)]


@pytest.mark.parametrize(("size", "overlap", "starts"), [(1024, 64, [0]), (1025, 64, [0, 336, 625]), (1025, 200, [0, 280, 545])])
def test_automatic_tiling_starts_above_a_megapixel_with_the_overlap_asked_for(size: int, overlap: int, starts: list[int]) -> None:
    """1024 x 1024 px (exactly 1 MP) go through whole; one row and column more, in the 3 tiles that 512 px
    tiles advancing by 512 - overlap need, each ceil((1025 - overlap) / 3) + overlap long (385, 475 px)
    rounded up to a multiple of 16 (400, 480), the last aligned to the end: each tile's first pixel says where it starts."""
    seen: list[tuple[int, int]] = []

    def net(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append((int(a[0, 0, 0, 0]), int(b[0, 0, 0, 0])))
        return a

    rows = torch.arange(float(size))[:, None].expand(1, 1, size, size)
    assert torch.allclose(auto_tiling(net, None, overlap)(rows, rows.transpose(-1, -2)), rows)
    assert seen == [(y, x) for y in starts for x in starts]


def test_rules_sharing_a_tiled_networks_pass_run_it_once_on_a_large_image() -> None:
    """The test report's direct and map rows of a 1.1 MP test image: one tiled pass (9 tiles), not two."""
    calls = []

    def network(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.maximum(a, b)

    a, b = torch.rand(2, 1, 1, 1100, 1000, generator=torch.Generator().manual_seed(0))
    direct = Fusion(network, tile=None)
    shared = remember_last(direct.sized_net)
    image = replace(direct, net=shared, tile=0)([a, b]).image
    replace(direct, net=shared, tile=0, rule="map", settings=default_rule()[1])([a, b])
    assert len(calls) == 9 and torch.allclose(image, torch.maximum(a, b))


def test_remember_last_reruns_when_either_input_changes() -> None:
    """Only a call whose inputs both equal the previous call's is served from memory: (a, b), then (a, c) with
    the first input unchanged, then (d, c) with the second unchanged, each run the network; (d, c) again does not."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def network(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append((x, y))
        return x - y  # not symmetric, so a stale output shows

    a, b, c, d = torch.rand(4, 1, 1, 6, 5, generator=torch.Generator().manual_seed(0))
    shared = remember_last(network)
    for x, y, runs in ((a, b, 1), (a, c, 2), (d, c, 3), (d, c, 3)):
        assert torch.equal(shared(x, y), x - y) and len(calls) == runs
