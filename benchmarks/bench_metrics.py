"""Time gipc.metrics against a straightforward numpy/scipy implementation on one 520x520 Lytro pair.

    python benchmarks/bench_metrics.py [--pair 01] [--repeat 3] [--device cpu|cuda] [--threads N]

F is the pixel average of A and B as a uint8 file would hold it. Per metric it prints both values
(they agree to ~1e-10: a second, independent check of the port), the best-of-N seconds of each
and the ratio numpy / gipc. The numpy side starts from the uint8 arrays, gipc from [0, 1] tensors,
each converting to luminance itself. Skips with a message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from gipc.metrics import (
    correlation_coefficient,
    entropy,
    fusion_msssim,
    qabf,
    spatial_frequency,
    standard_deviation,
)

PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lytro" / "pairs"
RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
WANG_BETAS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


# ------------------------------------------------------------------ numpy/scipy reference
def np_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> Matlab rgb2gray levels (rounded half up) as float64."""
    return np.floor(rgb.astype(np.float64) @ RGB2GRAY + 0.5)


def np_entropy(f: np.ndarray) -> float:
    p = np.bincount(f.astype(np.int64).ravel(), minlength=256) / f.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def np_spatial_frequency(f: np.ndarray) -> float:
    return float(np.sqrt(((np.diff(f, axis=1) ** 2).sum() + (np.diff(f, axis=0) ** 2).sum()) / f.size))


def np_standard_deviation(f: np.ndarray) -> float:
    return float(f.std())


def np_correlation(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    return float((np.corrcoef(a.ravel(), f.ravel())[0, 1] + np.corrcoef(b.ravel(), f.ravel())[0, 1]) / 2)


def np_qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """metricXydeas.m with scipy's zero-padded correlation."""
    kx = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])

    def edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx = ndimage.correlate(img, kx, mode="constant", cval=0.0)
        gy = ndimage.correlate(img, kx.T, mode="constant", cval=0.0)
        return np.hypot(gx, gy), np.arctan(gy / np.where(gx == 0, 1e-5, gx))

    g_f, ang_f = edges(f)
    g_f_safe = np.where(g_f == 0, 1e-5, g_f)
    num = den = 0.0
    for src, g_f_seen in ((a, g_f), (b, g_f_safe)):  # the toolbox's B pass sees the guarded G_F
        g, ang = edges(src)
        g_safe = np.where(g == 0, 1e-5, g)
        ratio = np.where(g > g_f_seen, g_f_seen / g_safe, g_safe / g_f_safe)
        align = 1 - np.abs(ang - ang_f) * 2 / np.pi
        q = 0.9994 / (1 + np.exp(-15 * (ratio - 0.5))) * 0.9879 / (1 + np.exp(-22 * (align - 0.8)))
        num, den = num + (q * g_safe).sum(), den + g_safe.sum()
    return float(num / den)


def np_msssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s 5-scale MS-SSIM with torchmetrics' conventions (mirror padding, cs cropped, relu)."""
    t = np.arange(11) - 5.0
    g = np.exp(-((t / 1.5) ** 2) / 2)
    g /= g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:  # separable: the 2-D Gaussian is an outer product
        return ndimage.correlate1d(ndimage.correlate1d(img, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")

    values = []
    for scale in range(len(WANG_BETAS)):
        mx, my = blur(x), blur(y)
        vx = np.maximum(blur(x * x) - mx * mx, 0)
        vy = np.maximum(blur(y * y) - my * my, 0)
        cs = (2 * (blur(x * y) - mx * my) + c2) / (vx + vy + c2)
        if scale == len(WANG_BETAS) - 1:
            values.append(max(((2 * mx * my + c1) / (mx * mx + my * my + c1) * cs).mean(), 0))
        else:
            values.append(max(cs[5:-5, 5:-5].mean(), 0))
        h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
        x, y = (z[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for z in (x, y))
    return float(np.prod(np.array(values) ** WANG_BETAS))


def np_fusion_msssim(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    return (np_msssim(f, a) + np_msssim(f, b)) / 2


# ------------------------------------------------------------------ timing
def best_of(repeat: int, fn: Callable[[], float | torch.Tensor], sync: Callable[[], None]) -> tuple[float, float]:
    """(value, fastest wall seconds) over ``repeat`` calls."""
    times, value = [], 0.0
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
        value = float(out)
    return value, min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="01", help="Lytro pair number NN of lytro-NN-{A,B}.jpg")
    parser.add_argument("--repeat", type=int, default=3, help="calls per metric; the fastest counts")
    parser.add_argument("--device", default="cpu", help="torch device for gipc (cpu, cuda)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); the numpy reference's BLAS keeps its own setting")
    args = parser.parse_args()
    paths = [PAIRS / f"lytro-{args.pair}-{s}.jpg" for s in "AB"]
    if not all(p.is_file() for p in paths):
        print(f"skipped: needs the shared Lytro pairs at {PAIRS} (../shared beside the clone)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)

    a8, b8 = (np.asarray(Image.open(p).convert("RGB")) for p in paths)
    f8 = ((a8.astype(np.int64) + b8 + 1) // 2).astype(np.uint8)  # the averaged F, saved as uint8
    device = torch.device(args.device)
    a, b, f = (torch.from_numpy(x / 255.0).permute(2, 0, 1)[None].to(device) for x in (a8, b8, f8))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    cases: list[tuple[str, Callable[[], torch.Tensor], Callable[[], float]]] = [
        ("EN", lambda: entropy(f), lambda: np_entropy(np_gray(f8))),
        ("SF", lambda: spatial_frequency(f), lambda: np_spatial_frequency(np_gray(f8))),
        ("SD", lambda: standard_deviation(f), lambda: np_standard_deviation(np_gray(f8))),
        # Both sides convert every image they score to gray inside the timed call, as gipc's do.
        ("CC", lambda: correlation_coefficient(a, b, f), lambda: np_correlation(np_gray(a8), np_gray(b8), np_gray(f8))),
        ("QABF", lambda: qabf(a, b, f), lambda: np_qabf(np_gray(a8), np_gray(b8), np_gray(f8))),
        ("MSSSIM", lambda: fusion_msssim(a, b, f), lambda: np_fusion_msssim(np_gray(a8), np_gray(b8), np_gray(f8))),
    ]
    print(f"lytro-{args.pair} A, B, F = (A + B) / 2, {a8.shape[1]}x{a8.shape[0]} RGB; gipc on {device}, "
          f"{torch.get_num_threads()} torch CPU threads; best of {args.repeat}")
    print(f"{'metric':<7} {'gipc':>14} {'numpy/scipy':>14} {'|diff|':>9} {'gipc s':>8} {'numpy s':>8} {'numpy/gipc':>10}")
    total_ours = total_ref = 0.0
    for name, ours, ref in cases:
        v_ours, t_ours = best_of(args.repeat, ours, sync)
        v_ref, t_ref = best_of(args.repeat, ref, lambda: None)
        total_ours, total_ref = total_ours + t_ours, total_ref + t_ref
        print(f"{name:<7} {v_ours:>14.10f} {v_ref:>14.10f} {abs(v_ours - v_ref):>9.1e} "
              f"{t_ours:>8.4f} {t_ref:>8.4f} {t_ref / t_ours:>10.2f}")
    print(f"{'all six':<41} {total_ours:>8.4f} {total_ref:>8.4f} {total_ref / total_ours:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
