"""Parameters and fusion runtime of GIPC-GAN on every inference path, set beside the paper's Tables 3 and 4.

    python benchmarks/bench_runtime.py [--pairs DIR] [--limit N] [--baseline-limit N] [--device cpu|cuda]
                                       [--threads N] [--ckpt PATH] [--memory-side 4000x3000] [--no-memory]
                                       [--rule-repeats N]

Prints, from one process on one machine:

* the parameter counts of G and D (D at 80x80) and G's multiply-accumulates per pixel, counted
  over the convolutions of ``Generator`` as they run;
* every inference path of the network (two Y channels -> one, 520x520 Lytro pairs): today's plain
  module (fp32, NCHW, BatchNorm as separate passes) and each path of :mod:`gipc.inference`
  (BatchNorm folded; torch channels_last or OpenVINO; fp32, bf16 and on CUDA fp16): mean +- std
  seconds per pair, warm-up excluded, its GFLOP/s and their fraction of a same-run matmul of the
  same dtype, and each path's first call (OpenVINO: conversion into an empty cache and compilation);
* accuracy: each path's PSNR against the plain fp32 module on those pairs, and the Q^AB/F of the
  whole Lytro set fused by the default path against the plain fp32 module;
* what each fusion rule (:mod:`gipc.fusion`) adds to the network on the default path: the direct
  rule (colour conversion, chroma) and the map rule (decision map, clean-up, blend), seconds per
  pair and as a fraction of the network's own time, in the same run (each the median of
  ``--rule-repeats`` runs per pair, taken in turn), and each rule's own work timed inside its
  calls (the call less the network it ran) as a fraction of that network; then the map rule's
  steps (exposure match, evidence, vote, regions, seams, blend) in ms per pair;
* the end-to-end split of fusing the Lytro set as ``gipc-fuse`` does (decode, network, colour
  conversion and rule, encode) on the default path and rule, one step after the other, then the
  same folder through ``gipc-fuse``'s pipelined loop;
* the peak memory of a 4000x3000 RGB pair fused in tiles (of at most 512 px) on each ``gipc.inference`` path
  under the default rule, each in a fresh process;
* the classic baselines' seconds per pair, and the paper's Table 3 for reference.

Weights: ``--ckpt`` (a run's checkpoint or a gipc-export file), else the shipped model, else an
untrained generator (runtime does not depend on the weights; accuracy figures then mean little).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

import gipc.decision
import gipc.fusion
import gipc.quantization
from gipc.baselines import BASELINES
from gipc.color import from_net, fuse_color, luma, to_net
from gipc.configs import conf_group
from gipc.data.datasets import PairFolder
from gipc.data.sources import group_sources
from gipc.fuse import fuse_images, plan_jobs, run_jobs
from gipc.fusion import RULES
from gipc.imaging import read_matching, write_image
from gipc.inference import InferencePath, choose_path, prepare
from gipc.metrics import qabf
from gipc.models import Discriminator, Generator
from gipc.pretrained import load_generator, shipped_generator, shipped_weights_exist
from gipc.tiling import DEFAULT_TILE, Fuser, exact_overlap

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
T = TypeVar("T")
MEMORY_PROBE = """
import resource, sys, time, torch
from gipc.configs import conf_group
from gipc.fuse import fuse_images
from gipc.inference import choose_path, prepare
from gipc.models import Generator
device, precision, backend = sys.argv[1], sys.argv[2], sys.argv[6]
height, width, threads = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)  # the same weights and pair in every probe: the map's seam graph grows with the content
a, b = torch.rand(3, height, width), torch.rand(3, height, width)
fusion = prepare(Generator(**conf_group("model")["generator"]).eval(), choose_path(device, precision, backend)).fusion()  # tiles above 1 MP
start = time.perf_counter()
with torch.inference_mode():
    fuse_images(fusion, [a, b])
gpu = torch.cuda.max_memory_allocated() if device == "cuda" else 0
try:  # VmHWM: ru_maxrss would carry the parent's peak across exec (subprocess spawns by vfork)
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except OSError:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak_kib, gpu, time.perf_counter() - start)
"""


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


def timed(fn: Callable[[], T], sync: Callable[[], None]) -> tuple[float, float, T]:
    """Wall seconds, this process's CPU seconds (all threads) and the result of one call."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def matmul_gflops(device: torch.device, dtype: torch.dtype, sync: Callable[[], None], n: int = 2048, repeat: int = 3) -> float:
    """Best GFLOP/s of an n x n matmul in ``dtype`` on ``device``: the roofline a path is measured against.
    On a GPU one 2048^3 product takes tens of microseconds, as long as a sync, so each timing there
    covers 50 products back to back."""
    x, y = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    x @ y  # warm-up
    burst = 50 if device.type == "cuda" else 1

    def products() -> None:
        for _ in range(burst):
            x @ y

    return 2 * n**3 * burst / min(timed(products, sync)[0] for _ in range(repeat)) / 1e9


def mean_std(values: list[float], digits: int = 4) -> str:
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    return float(10 * torch.log10(1 / ((x - y) ** 2).mean().clamp_min(1e-20)))


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


def weights(ckpt: Path | None) -> tuple[Generator, str]:
    if ckpt is not None:
        return load_generator(ckpt), f"weights of {ckpt}"
    if shipped_weights_exist():
        return shipped_generator(), "the shipped weights"
    torch.manual_seed(0)
    return Generator(**conf_group("model")["generator"]).eval(), "UNTRAINED weights (no --ckpt, no shipped model): accuracy figures mean little"


def plain_fuser(generator: nn.Module) -> Fuser:
    """Today's fuser before the inference path: the module as trained, fp32, NCHW, BatchNorm as its own pass."""

    def fuse_y(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return from_net(generator(to_net(ya), to_net(yb)))

    return fuse_y


def inference_paths(device: torch.device) -> list[InferencePath]:
    """Every (runtime, precision) :mod:`gipc.inference` offers on ``device``, the ``auto`` choice first."""
    auto = choose_path(device, "auto")
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    backends = ["torch"] + (["openvino"] if device.type == "cpu" and choose_path(device, backend="auto").backend == "openvino" else [])
    paths = [choose_path(device, p, b) for b in backends for p in precisions]
    if "openvino" in backends and gipc.quantization.available():
        paths.append(choose_path(device, "int8", "openvino"))
    return [auto, *(p for p in paths if (p.backend, p.precision) != (auto.backend, auto.precision))]


def label(path: InferencePath) -> str:
    runtime = "OpenVINO" if path.backend == "openvino" else "torch channels_last"
    return f"{path.precision}, folded, {runtime}{' [auto]' if path.reason.startswith('auto') else ''}"


def section_paths(
    generator: Generator, pairs: list, limit: int, macs: float, device: torch.device, sync: Callable[[], None]
) -> dict[str, float]:
    """Every network path on the same pairs; returns each ``gipc.inference`` path's mean seconds per pair, by label."""
    print(f"\n== Network paths, seconds per pair (Y, Y -> Y), pairs 2..{limit + 1}; pair 1 is the warm-up ==")
    ys = [tuple(to_net(luma(x)).to(device) for x in pair) for pair in pairs[: limit + 1]]
    height, width = ys[0][0].shape[-2:]
    flops = 2 * macs * height * width
    roofs = {dtype: matmul_gflops(device, dtype, sync) for dtype in (torch.float32, torch.bfloat16)}
    if device.type == "cuda":
        roofs[torch.float16] = matmul_gflops(device, torch.float16, sync)
    plain = generator.to(device).eval()
    runs: list[tuple[str, torch.dtype | None, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = [
        ("plain module: fp32, NCHW, BatchNorm separate (before gipc.inference)", torch.float32, plain)
    ]
    for path in inference_paths(device):
        runs.append((label(path), None if path.precision == "int8" else path.dtype, prepare(generator, path)))  # int8: no matmul roof measured
    reference: list[torch.Tensor] = []
    base = 0.0
    print(f"{'path':<72} {'s / pair':>17} {'CPU-s':>7} {'GFLOP/s':>8} {'of matmul':>10} {'speed-up':>8} {'PSNR vs plain':>13} {'first call':>10}")
    firsts = []
    with torch.no_grad():
        for _, _, net in runs:
            os.environ["GIPC_CACHE"] = tempfile.mkdtemp(prefix="gipc-bench-cache-")  # every OpenVINO row converts afresh
            firsts.append(timed(lambda: net(*ys[0]), sync)[0])  # warm-up: allocator, kernels; OpenVINO converts and compiles
        # The paths take turns on each pair, so a change in the machine's load falls on all of them alike.
        timings = [[timed(lambda: net(ya, yb), sync) for _, _, net in runs] for ya, yb in ys[1:]]
    seconds: dict[str, float] = {}  # each gipc.inference path's, for the map's shares
    for (name, dtype, net), first, times in zip(runs, firsts, zip(*timings)):
        wall = [t[0] for t in times]
        if net is not plain:
            seconds[name] = statistics.fmean(wall)
        cpu = statistics.fmean(t[1] for t in times)
        outputs = [from_net(t[2].float()).cpu() for t in times]
        if not reference:
            reference, base = outputs, statistics.fmean(wall)
        achieved = flops / statistics.fmean(wall) / 1e9
        quality = f"{min(psnr(out, ref) for out, ref in zip(outputs, reference)):.1f} dB" if net is not plain else "reference"
        print(f"{name:<72} {mean_std(wall):>17} {cpu:>7.3f} {achieved:>8.1f} {f'{achieved / roofs[dtype]:.1%}' if dtype else '-':>10} "
              f"{base / statistics.fmean(wall):>7.2f}x {quality:>13} {first:>9.2f}s")
    print("same-run matmul 2048^3: " + ", ".join(f"{str(d).removeprefix('torch.')} {g:.1f} GFLOP/s" for d, g in roofs.items()))
    print(f"GFLOP/s = 2 x {macs:,.0f} MACs x {height}x{width} / s; PSNR: the worst pair, against the plain module's output; "
          "first call: the warm-up pair (OpenVINO's includes converting into an empty cache and compiling)")
    return seconds


MAP_STEPS = (
    ("luma", gipc.fusion, "luma"),
    ("exposure match", gipc.fusion, "compared_sources"),
    ("evidence", gipc.fusion, "evidence"),
    ("choose and vote", gipc.fusion, "best_source"),
    ("choose and vote", gipc.decision, "consistent"),
    ("regions", gipc.decision, "remove_small_regions"),
    ("seams", gipc.decision, "place_seams"),
    ("blend", gipc.fusion, "copy_sources"),
    ("blend", gipc.fusion, "blend"),
)
"""The map rule's steps: (name, the module the rule calls it from, the function there); a name may
cover several functions (a hard map is copied, a soft one blended)."""


@contextmanager
def step_clock(sync: Callable[[], None]) -> Iterator[dict[str, float]]:
    """Seconds spent in each of :data:`MAP_STEPS` while the block runs: each step function is wrapped
    where the rule looks it up, and put back after."""
    spent = dict.fromkeys((name for name, _, _ in MAP_STEPS), 0.0)
    originals = [(module, attr, getattr(module, attr)) for _, module, attr in MAP_STEPS]

    def clocked(name: str, step: Callable) -> Callable:
        def run(*args, **kwargs):
            sync()
            start = time.perf_counter()
            out = step(*args, **kwargs)
            sync()
            spent[name] += time.perf_counter() - start
            return out

        return run

    for (name, _, _), (module, attr, step) in zip(MAP_STEPS, originals):
        setattr(module, attr, clocked(name, step))
    try:
        yield spent
    finally:
        for module, attr, step in originals:
            setattr(module, attr, step)


def section_rules(
    generator: Generator, pairs: list, limit: int, device: torch.device, sync: Callable[[], None], repeats: int
) -> float:
    """Network alone, then each rule around it, on the same pairs in one loop: the rules' cost as a share of the network's.

    Each pair runs all of them ``repeats`` times in turn and keeps each one's median: on a shared VM a
    single run of a 0.25 s network can take 0.04 s more or less, as much as a rule costs. So each
    rule's own work is also timed inside its calls, as the call less the network it ran: a share
    that the network's swings between calls do not blur."""
    ready = prepare(generator, choose_path(device, "auto"))
    inner = 0.0

    def network(*ys: torch.Tensor) -> torch.Tensor:
        nonlocal inner
        sync()
        start = time.perf_counter()
        out = ready.fuse_y(*ys)
        sync()
        inner += time.perf_counter() - start
        return out

    rules = {rule: replace(ready.fusion(rule), net=network) for rule in RULES}
    print(f"\n== Fusion rules on the default path, seconds per pair (colour in, colour out), pairs 2..{limit + 1}, median of {repeats} runs each ==")
    print(f"map settings: {rules['map'].describe()}")
    spent: dict[str, list[float]] = {"network": [], **{rule: [] for rule in rules}}
    own: dict[str, list[float]] = {rule: [] for rule in rules}
    with torch.inference_mode():
        for i, (a, b) in enumerate(pairs[: limit + 1]):
            a, b = a.to(device), b.to(device)
            ya, yb = luma(a), luma(b)
            runs: dict[str, list[float]] = {key: [] for key in spent}
            shares: dict[str, list[float]] = {rule: [] for rule in rules}
            for _ in range(repeats):
                runs["network"].append(timed(lambda: ready.fuse_y(ya, yb), sync)[0])
                for rule, fusion in rules.items():
                    inner = 0.0
                    seconds = timed(lambda: fusion([a, b]), sync)[0]
                    runs[rule].append(seconds)
                    shares[rule].append((seconds - inner) / inner)
            if i:  # pair 1 warms up
                for key, values in runs.items():
                    spent[key].append(statistics.median(values))
                for rule, values in shares.items():
                    own[rule].append(statistics.median(values))
    network_seconds = statistics.fmean(spent["network"])
    for key, values in spent.items():
        added = ""
        if key != "network":
            added = (f"  adds {statistics.fmean(values) - network_seconds:.3f} s = {(statistics.fmean(values) - network_seconds) / network_seconds:.1%}"
                     f" of the network (unpaired: the swings of both); its own work inside each call: "
                     f"{statistics.fmean(own[key]):.1%} ± {statistics.pstdev(own[key]):.1%} over the pairs (paired: the figure to read)")
        print(f"{key:<8} {mean_std(values)} s{added}")
    works: list[float] = []
    per_call: dict[str, list[float]] = {}
    with torch.inference_mode(), step_clock(sync) as spent:  # the map's steps, on the same pairs again
        for a, b in pairs[1 : limit + 1]:
            a, b = a.to(device), b.to(device)
            for _ in range(repeats):
                inner, before = 0.0, dict(spent)
                works.append(timed(lambda: rules["map"]([a, b]), sync)[0] - inner)
                call = {name: spent[name] - before[name] for name in spent}
                call["other"] = works[-1] - sum(call.values())
                for name, seconds in call.items():
                    per_call.setdefault(name, []).append(seconds)
    # medians over the calls: one stall of the VM (100 ms in one of 15 calls) would lift a step's mean by 7 ms
    steps = " · ".join(f"{name} {1000 * statistics.median(values):.1f}" for name, values in per_call.items())
    print(f"map's steps inside each call, ms per pair (medians over {len(works)} calls): {steps} (clocked separately, each step synchronised)")
    return statistics.fmean(works)


def section_map_shares(map_seconds: float, paths: dict[str, float]) -> None:
    """The map rule's own work against every network path's time: the share a CPU whose network runs
    faster would see (on an AMX Xeon bf16 ran 2-3x as fast as on the AVX512-BF16 AMD VMs, benchmarks/README.md),
    read off the faster paths this one has (int8)."""
    print(f"\n== The map rule's own work ({1000 * map_seconds:.1f} ms per pair, the rules section) against each network path ==")
    for name, seconds in paths.items():
        print(f"{name:<72} {seconds:.4f} s / pair: the map adds {map_seconds / seconds:.1%}")


def section_end_to_end(generator: Generator, folder: Path, device: torch.device) -> None:
    if not folder.is_dir():
        print(f"\n== End to end: skipped, {folder} not found ==")
        return
    path = choose_path(device, "auto")
    ready = prepare(generator, path)
    fusion = ready.fusion()
    plain = plain_fuser(generator.to(device))
    groups = group_sources(folder)
    print(f"\n== End to end: the {len(groups)} groups of {folder} as gipc-fuse fuses them ({label(path)}, {fusion.rule} rule), seconds ==")
    spent = {"decode": 0.0, "network": 0.0, "colour and rule": 0.0, "encode": 0.0}
    scores: list[tuple[float, float]] = []
    plain_seconds = 0.0

    def network(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = ready.fuse_y(ya, yb)
        spent["network"] += time.perf_counter() - start
        return out

    with tempfile.TemporaryDirectory() as out_dir:
        first = [to_net(luma(image.pixels[None])).to(device) for image in read_matching(groups[0][1])]
        ready.fuse_y(*first[:2])  # warm-up at the pairs' own size: OpenVINO compiles per shape, CUDA plans per shape
        for stem, sources in groups:
            start = time.perf_counter()
            images = read_matching(sources)
            spent["decode"] += time.perf_counter() - start
            start = time.perf_counter()
            with torch.inference_mode():
                pixels = [image.pixels for image in images]
                fused = fuse_images(replace(fusion, net=network), pixels)
            spent["colour and rule"] += time.perf_counter() - start
            start = time.perf_counter()
            write_image(Path(out_dir) / f"{stem}-fused.png", fused, images[0].bit_depth)
            spent["encode"] += time.perf_counter() - start
            if len(pixels) != 2:
                continue  # Q^AB/F scores pairs
            a, b = (p[None] for p in pixels)
            with torch.inference_mode():
                start = time.perf_counter()
                reference = fuse_color(plain, a.to(device), b.to(device)).cpu()
                plain_seconds += time.perf_counter() - start
            scores.append((float(qabf(a, b, fused[None])[0]), float(qabf(a, b, reference)[0])))
    spent["colour and rule"] -= spent["network"]
    total = sum(spent.values())
    print("  ".join(f"{k} {v:.2f} ({v / total:.0%})" for k, v in spent.items()) + f"  total {total:.2f} s, {total / len(groups):.3f} s per group")
    with tempfile.TemporaryDirectory() as out_dir:  # the same folder through gipc-fuse's pipelined loop
        start = time.perf_counter()
        for _ in run_jobs(plan_jobs([], folder, Path(out_dir) / "fused", False), fusion, False):
            pass
        pipelined = time.perf_counter() - start
    print(f"gipc-fuse's pipelined loop (decode and encode in a thread beside the network): {pipelined:.2f} s, "
          f"{pipelined / len(groups):.3f} s per group; the network alone above took {spent['network']:.2f} s")
    print(f"the plain fp32 module's colour fusion of the same {len(scores)} pairs (no decode, no encode): {plain_seconds:.2f} s; "
          f"end to end (pipelined) is {plain_seconds / len(scores) / (pipelined / len(groups)):.2f}x that per pair")
    ours, theirs = zip(*scores)
    diffs = [abs(x - y) for x, y in scores]
    print(f"Q^AB/F: {path.precision} path, {fusion.rule} rule {statistics.fmean(ours):.4f}; plain fp32 module, direct rule {statistics.fmean(theirs):.4f}; "
          f"|difference| mean {statistics.fmean(diffs):.5f}, worst pair {max(diffs):.5f}")


def section_memory(device: torch.device, side: tuple[int, int], threads: int) -> None:
    width, height = side
    overlap = exact_overlap(Generator(**conf_group("model")["generator"]).receptive_radius)
    print(f"\n== Peak memory of one {width}x{height} RGB pair fused in tiles of at most {DEFAULT_TILE} px (overlap {overlap}), a fresh process per path ==")
    for path in inference_paths(device):
        result = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, device.type, path.precision, str(height), str(width), str(threads), path.backend],
            capture_output=True, text=True, check=True, timeout=600,
        )
        rss_kib, gpu_bytes, seconds = result.stdout.split()
        gpu = f", GPU {int(gpu_bytes) / 2**30:.2f} GiB" if device.type == "cuda" else ""
        print(f"{label(path):<40} peak RSS {int(rss_kib) / 2**20:.2f} GiB{gpu}, {float(seconds):.1f} s")


STARTUP_IMPORTS = {"torch": "import torch", "gipc-fuse": "import gipc.cli.fuse"}
"""What a process imports before it can fuse: torch alone (the floor), then gipc-fuse's module (torch and all)."""


def section_startup(repeats: int = 3) -> None:
    """Seconds to import torch and gipc-fuse's module in fresh interpreters, alternating, medians: every
    ``gipc-fuse`` pays the second before its first pixel (a single pair's fusion takes a tenth of it)."""
    print(f"\n== Start-up: a fresh interpreter's imports, seconds (median of {repeats}, alternating) ==")
    seconds: dict[str, list[float]] = {name: [] for name in STARTUP_IMPORTS}
    for _ in range(repeats):
        for name, code in STARTUP_IMPORTS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            seconds[name].append(time.perf_counter() - start)
    floor, fuse = (statistics.median(seconds[name]) for name in STARTUP_IMPORTS)
    print(f"import torch {floor:.2f} s; import gipc.cli.fuse {fuse:.2f} s: gipc's own imports add {fuse - floor:.2f} s ({fuse / floor:.2f}x torch's)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS, help="pair folder (default: the shared Lytro pairs)")
    parser.add_argument("--limit", type=int, default=5, help="pairs timed per network path (default %(default)s; the Lytro set has 20)")
    parser.add_argument("--baseline-limit", type=int, default=3, help="pairs timed per classic baseline (default %(default)s)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the network runs")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--ckpt", type=Path, help="weights to fuse with (default: the shipped model, else untrained)")
    parser.add_argument("--memory-side", default="4000x3000", help="WxH of the tiled memory probe (default %(default)s)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probe")
    parser.add_argument("--rule-repeats", type=int, default=3, help="runs per pair and rule in the rules' section, median kept (default %(default)s)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ["GIPC_CACHE"] = tempfile.mkdtemp(prefix="gipc-bench-cache-")  # OpenVINO's first call converts, as on a fresh install
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    where = (f"{torch.cuda.get_device_name()} (TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN convs "
             f"{torch.backends.cudnn.allow_tf32}: the fp32 rows' convolutions run in TF32 where it is on)") if device.type == "cuda" \
        else f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores"
    print(f"device: {where}; auto path: {choose_path(device).describe()}; load average at start {os.getloadavg()[0]:.2f}")

    torch.manual_seed(0)
    print("\n== Parameters (paper Table 4, millions: train / test) ==")
    model = conf_group("model")
    generator, discriminator = Generator(**model["generator"]).eval(), Discriminator(80, **model["discriminator"])
    print(f"G (Table 1)          {parameters(generator):>9,}  = {parameters(generator) / 1e6:.4f} M")
    print(f"D (Table 2, 80x80)   {parameters(discriminator):>9,}  = {parameters(discriminator) / 1e6:.4f} M")
    for name, (train, test) in PAPER_TABLE4.items():
        print(f"paper {name:<15} {train:.4f} M / {test:.4f} M")
    macs = conv_macs_per_pixel(generator)
    verdict = "matches" if macs == TABLE1_MACS_PER_PIXEL else "DIFFERS from"
    print(f"\nG multiply-accumulates per pixel, counted over its convs: {macs:,.0f} ({verdict} Table 1's {TABLE1_MACS_PER_PIXEL:,})")

    generator, source = weights(args.ckpt)
    pairs, note = load_pairs(args.pairs, max(args.limit, args.baseline_limit) + 1)
    print(f"\nInputs: {note}; {source}")
    section_startup()
    paths = section_paths(generator, pairs, args.limit, macs, device, sync)
    section_map_shares(section_rules(generator, pairs, args.limit, device, sync, args.rule_repeats), paths)
    section_end_to_end(generator, args.pairs, device)
    if not args.no_memory:
        width, height = (int(v) for v in args.memory_side.split("x"))
        section_memory(device, (width, height), torch.get_num_threads())

    print(f"\n== Classic baselines (CPU, colour pipeline), seconds per pair over {args.baseline_limit} pairs ==")
    for name, fn in BASELINES.items():
        with torch.inference_mode():
            fuse_color(fn, *pairs[0])  # warm-up: the first call of each is 1.5-2.3x slower
            seconds = [timed(lambda: fuse_color(fn, a, b), lambda: None)[0] for a, b in pairs[1 : args.baseline_limit + 1]]
        print(f"{name:<18} {mean_std(seconds)} s")

    print("\n== Paper Table 3, s/image MFI-DRC / Lytro: the paper's machine (RTX 3090 GPU; '(CPU)' rows on its CPU), not this one ==")
    for name, (drc, lytro) in PAPER_TABLE3.items():
        print(f"paper {name:<13} {drc:>9.4f} / {lytro:.4f}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; this process's peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
