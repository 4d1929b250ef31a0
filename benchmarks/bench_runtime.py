"""Parameters and fusion runtime of GIPC-GAN, set beside the paper's Tables 3 and 4, with the classic baselines.

    python benchmarks/bench_runtime.py [--pairs DIR] [--limit N] [--baseline-limit N] [--device cpu|cuda] [--threads N]

Prints: the parameter counts of G and D (D at 80x80); the multiply-accumulates per pixel of G,
counted over the convolutions of ``Generator`` as they run; mean +- std seconds per 520x520 Lytro
pair of the network alone (two Y channels -> one) and of the whole colour pipeline (YCbCr in,
chroma rule, RGB out), warm-up excluded, under ``torch.inference_mode``; the achieved GFLOP/s
as a fraction of a same-run fp32 matmul's; and the classic baselines' seconds per pair. Untrained
weights: the runtime does not depend on them. No internet, no checkpoint needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gipc.baselines import BASELINES
from gipc.color import fuse_color, split_luma, to_net
from gipc.data.datasets import PairFolder
from gipc.fuse import network_fuser
from gipc.models import Discriminator, Generator

PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lytro" / "pairs"
TABLE1_MACS_PER_PIXEL = 155_056
"""Table 1 by hand: encoders 2 x (1+32+48+64) x 9 x 16, 1x1 block 128 x 128, decoder (128x64 + 64x32 + 32x16 + 16x1) x 9."""
PAPER_TABLE3 = {  # mean seconds per image (MFI-DRC, Lytro); the paper ran the CPU methods on a CPU, the others on an RTX 3090
    "GIPC-GAN": (0.2226, 0.1267),
    "ACGAN": (0.0344, 0.0282),
    "MFF-GAN": (0.2622, 0.1338),
    "SESF": (0.4133, 0.3858),
    "BF (CPU)": (0.7221, 0.5190),
    "MWGF (CPU)": (1.9136, 1.5505),
    "DSIFT (CPU)": (5.0708, 3.6310),
    "CNN (CPU)": (123.8767, 99.5241),
}
PAPER_TABLE4 = {"GIPC-GAN": (0.4151, 0.0404), "MFF-GAN / ACGAN": (0.4099, 0.0382), "SESF": (0.0748, 0.0748)}


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def conv_macs_per_pixel(generator: nn.Module, side: int = 32) -> float:
    """Multiply-accumulates per output pixel of every Conv2d of ``generator``, counted with forward hooks."""
    total = 0

    def count(conv: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += output.numel() * (conv.in_channels // conv.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in generator.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            generator(torch.zeros(1, 1, side, side), torch.zeros(1, 1, side, side))
    finally:
        for hook in hooks:
            hook.remove()
    return total / (side * side)


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    """Wall seconds of one call."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def timed_cpu(fn: Callable[[], object]) -> float:
    """CPU seconds of this process (all threads) for one call: what the call cost on a machine shared with other jobs."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def matmul_gflops(device: torch.device, sync: Callable[[], None], n: int = 2048, repeat: int = 3) -> float:
    """Best fp32 GFLOP/s of an n x n matmul on ``device``: the roofline the network is measured against."""
    x, y = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    x @ y  # warm-up
    return 2 * n**3 / min(timed(lambda: x @ y, sync) for _ in range(repeat)) / 1e9


def mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ± {statistics.pstdev(values):.4f}"


def load_pairs(folder: Path, limit: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """Up to ``limit`` (A, B) pairs as (1, C, H, W) tensors, or random 520x520 RGB when the folder is absent."""
    if folder.is_dir():
        scenes = PairFolder(folder)
        pairs = [(scenes[i].a[None], scenes[i].b[None]) for i in range(min(limit, len(scenes)))]
        size = "x".join(str(s) for s in pairs[0][0].shape[-1:-3:-1])
        return pairs, f"{len(pairs)} pairs from {folder} ({size})"
    generator = torch.Generator().manual_seed(0)
    pairs = [(torch.rand(1, 3, 520, 520, generator=generator), torch.rand(1, 3, 520, 520, generator=generator)) for _ in range(limit)]
    return pairs, f"NOTE: {folder} not found; {limit} random 520x520 RGB pairs instead (runtime does not depend on content)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS, help="pair folder (default: the shared Lytro pairs)")
    parser.add_argument("--limit", type=int, default=5, help="pairs timed for the network (default %(default)s; the Lytro set has 20)")
    parser.add_argument("--baseline-limit", type=int, default=3, help="pairs timed per classic baseline (default %(default)s)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the network runs")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores"
    print(f"device: {where}; load average at start {os.getloadavg()[0]:.2f}")

    torch.manual_seed(0)
    generator, discriminator = Generator().eval(), Discriminator(80)
    print("\n== Parameters (paper Table 4, millions: train / test) ==")
    print(f"G (Table 1)          {parameters(generator):>9,}  = {parameters(generator) / 1e6:.4f} M")
    print(f"D (Table 2, 80x80)   {parameters(discriminator):>9,}  = {parameters(discriminator) / 1e6:.4f} M")
    for name, (train, test) in PAPER_TABLE4.items():
        print(f"paper {name:<15} {train:.4f} M / {test:.4f} M")

    macs = conv_macs_per_pixel(generator)
    verdict = "matches" if macs == TABLE1_MACS_PER_PIXEL else "DIFFERS from"
    print(f"\nG multiply-accumulates per pixel, counted over its convs: {macs:,.0f} ({verdict} Table 1's {TABLE1_MACS_PER_PIXEL:,})")

    pairs, note = load_pairs(args.pairs, max(args.limit, args.baseline_limit) + 1)
    print(f"\n== Runtime, seconds per pair: {note} ==")
    generator = generator.to(device)
    luma = [tuple(to_net(split_luma(x)[0] if x.shape[1] == 3 else x).to(device) for x in pair) for pair in pairs]
    fuse_y = network_fuser(generator)
    with torch.inference_mode():
        timed(lambda: generator(*luma[0]), sync)  # warm-up: allocator, kernels (pair 0 is never timed)
        net = [timed(lambda: generator(ya, yb), sync) for ya, yb in luma[1 : args.limit + 1]]
        net_cpu = [timed_cpu(lambda: generator(ya, yb)) for ya, yb in luma[1 : args.limit + 1]] if device.type == "cpu" else []
        full = [timed(lambda: fuse_color(fuse_y, a, b), sync) for a, b in pairs[1 : args.limit + 1]]
    height, width = luma[0][0].shape[-2:]
    achieved = 2 * macs * height * width / statistics.fmean(net) / 1e9
    roof = matmul_gflops(device, sync)
    print(f"GIPC-GAN network only (Y, Y -> Y)    {mean_std(net)} s   over {len(net)} pairs")
    if net_cpu:
        print(f"  the same calls in CPU seconds of this process: {mean_std(net_cpu)} (wall / CPU {statistics.fmean(net) / statistics.fmean(net_cpu):.2f})")
    print(f"GIPC-GAN colour pipeline (RGB -> RGB) {mean_std(full)} s")
    print(f"achieved {achieved:.1f} GFLOP/s (2 x {macs:,.0f} x {height}x{width} per pair) = "
          f"{achieved / roof:.1%} of a same-run fp32 2048^3 matmul ({roof:.1f} GFLOP/s)")

    print(f"\n== Classic baselines (CPU, colour pipeline), seconds per pair over {args.baseline_limit} pairs ==")
    for name, fn in BASELINES.items():
        with torch.inference_mode():
            seconds = [timed(lambda: fuse_color(fn, a, b), lambda: None) for a, b in pairs[1 : args.baseline_limit + 1]]
        print(f"{name:<18} {mean_std(seconds)} s   (GIPC-GAN's pipeline takes {statistics.fmean(full) / statistics.fmean(seconds):.1f}x as long)")

    print("\n== Paper Table 3, s/image MFI-DRC / Lytro: the paper's machine (RTX 3090 GPU; '(CPU)' rows on its CPU), not this one ==")
    for name, (drc, lytro) in PAPER_TABLE3.items():
        print(f"paper {name:<13} {drc:>9.4f} / {lytro:.4f}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
