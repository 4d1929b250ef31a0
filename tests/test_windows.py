"""Box means and the guided filter (gipc.windows) against brute-force sums, kornia and a float64 reference."""

from __future__ import annotations

import threading

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gipc.planes
import gipc.windows
from gipc.windows import box_mean, box_means, guided_filter

SHARED_SIZES = (41, 1, 3, 7, 15)  # 41: wider than the image's 37 rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["opencv", "tables"])
@pytest.mark.parametrize("table", ["single", "shared"])
@pytest.mark.parametrize("size", [1, 3, 7, 15, 41])
def test_box_mean_equals_kornias_box_blur(size: int, table: str, dtype: torch.dtype) -> None:
    """box_mean of one size, and box_means' sizes at once (float32 on the CPU: OpenCV's box filter;
    float64: summed-area tables padded for the largest window), are kornia's box blur with replicated
    borders, every channel in turn, to float rounding, in the input's dtype."""
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0), dtype=dtype)
    mean = box_mean(x, size) if table == "single" else list(box_means(x, SHARED_SIZES))[SHARED_SIZES.index(size)]
    assert mean.dtype == dtype and mean.shape == x.shape
    torch.testing.assert_close(mean, kornia.filters.box_blur(x, size, border_type="replicate"), atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0)


def test_large_planes_are_filtered_on_several_threads_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planes from PARALLEL_PIXELS on go through OpenCV on torch's threads at once: the box means of
    the 6 planes of a (2, 3, 37, 53) tensor come out the same as one plane after another, and the
    filter ran outside the calling thread."""
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(6))
    one_by_one = box_mean(x, 7)
    callers: set[str] = set()
    blur = gipc.windows.cv2.blur

    def recording(*args, **kwargs):
        callers.add(threading.current_thread().name)
        return blur(*args, **kwargs)

    monkeypatch.setattr(gipc.planes, "PARALLEL_PIXELS", 37 * 53)
    monkeypatch.setattr(gipc.windows.cv2, "blur", recording)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # as on the 2-core CI machine, whatever this one has
    assert torch.equal(box_mean(x, 7), one_by_one)
    assert callers and all(name.startswith("gipc-planes") for name in callers)


def test_both_box_filters_agree_on_a_photo_sized_image() -> None:
    """OpenCV's float32 box filter and the float64 tables rounded to float32 give the same means, to one
    float32 step, over a 520 x 520 image at the map's window sizes."""
    x = torch.rand(1, 2, 520, 520, generator=torch.Generator().manual_seed(1))
    sizes = (5, 11, 21, 31, 61)
    for fast, exact in zip(box_means(x, sizes), box_means(x.double(), sizes)):
        torch.testing.assert_close(fast, exact.float(), atol=6e-8, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["opencv", "tables"])
@pytest.mark.parametrize("size", [1, 3, 7, 41])
def test_inside_means_average_only_the_pixels_inside_the_image(size: int, dtype: torch.dtype) -> None:
    """``inside``: each window's in-image pixels summed (zeros padded) over how many there are; at a
    corner a 3 x 3 window holds 4 of its 9 pixels, inside it the plain mean."""
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(3), dtype=dtype)
    reach = size // 2
    padded = F.pad(x.double(), (reach,) * 4)
    sums = F.avg_pool2d(padded, size, stride=1, divisor_override=1)
    counts = F.avg_pool2d(F.pad(torch.ones(1, 1, 37, 53, dtype=torch.float64), (reach,) * 4), size, stride=1, divisor_override=1)
    mean = box_mean(x, size, "inside")
    assert mean.dtype == dtype and mean.shape == x.shape
    torch.testing.assert_close(mean.double(), sums / counts, atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0)
    corner = torch.arange(16.0, dtype=dtype).view(1, 1, 4, 4)
    assert box_mean(corner, 3, "inside")[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert box_mean(corner, 3, "inside")[0, 0, 1, 1].item() == pytest.approx(5.0)


def _guided_reference(i: np.ndarray, p: np.ndarray, r: int, eps: float, inside: bool) -> np.ndarray:
    """He, Sun & Tang 2013, algorithm 1, in float64 with brute-force window means."""

    def mean(x: np.ndarray) -> np.ndarray:
        padded = np.pad(x, r, mode="constant" if inside else "edge")
        ones = np.pad(np.ones_like(x), r, mode="constant" if inside else "edge")
        window = np.lib.stride_tricks.sliding_window_view
        return window(padded, (2 * r + 1,) * 2).sum(axis=(-1, -2)) / window(ones, (2 * r + 1,) * 2).sum(axis=(-1, -2))

    mean_i, mean_p = mean(i), mean(p)
    slope = (mean(i * p) - mean_i * mean_p) / (mean(i * i) - mean_i**2 + eps)
    return mean(slope) * i + mean(mean_p - slope * mean_i)


@pytest.mark.parametrize("border", ["replicate", "inside"])
@pytest.mark.parametrize("radius, eps", [(2, 1e-2), (5, 0.3), (20, 1e-3)])
def test_guided_filter_is_he_et_als_algorithm(radius: int, eps: float, border: str) -> None:
    """float64 (the tables) to 1e-10 and float32 (OpenCV) to 1e-5 of the algorithm written out with
    brute-force windows; with replicated borders also kornia's guided_blur. A radius of 20 is wider than
    the 37 rows' half."""
    generator = torch.Generator().manual_seed(4)
    guide = torch.rand(1, 1, 37, 53, generator=generator, dtype=torch.float64)
    p = (guide > 0.5).double() * 0.8 + 0.2 * torch.rand(1, 1, 37, 53, generator=generator, dtype=torch.float64)
    expected = torch.from_numpy(_guided_reference(guide[0, 0].numpy(), p[0, 0].numpy(), radius, eps, border == "inside"))
    torch.testing.assert_close(guided_filter(guide, p, radius, eps, border)[0, 0], expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(guided_filter(guide.float(), p.float(), radius, eps, border)[0, 0].double(), expected, atol=1e-5, rtol=0)
    if border == "replicate":
        kornias = kornia.filters.guided_blur(guide, p, 2 * radius + 1, eps, border_type="replicate")
        torch.testing.assert_close(guided_filter(guide, p, radius, eps), kornias, atol=1e-10, rtol=0)


def test_guided_filter_keeps_each_channel_of_p_under_one_guide() -> None:
    """p of several channels (a map's one-hot weights) under a one-channel guide: each channel as if alone."""
    generator = torch.Generator().manual_seed(5)
    guide = torch.rand(2, 1, 30, 40, generator=generator)
    p = torch.rand(2, 3, 30, 40, generator=generator)
    together = guided_filter(guide, p, 4, 0.01)
    for channel in range(3):
        torch.testing.assert_close(together[:, channel : channel + 1], guided_filter(guide, p[:, channel : channel + 1], 4, 0.01), atol=0, rtol=0)
