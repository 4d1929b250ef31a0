"""Peak memory and time of fusing focus stacks of N frames, per frame, against the direct rule.

    python benchmarks/bench_stack.py [--frames 3 8] [--size 2048x1536]

Each stack is made from one of scikit-image's photos, resized bicubic to ``--size``: frame k is
sharp in the k-th of N vertical bands and blurred by 1.5 px per band away from it, saved as JPEG
(quality 95). Each stack is decoded as ``gipc-fuse`` decodes it and fused with the shipped model
as ``gipc-fuse`` fuses it (default rule, then ``--rule direct``, which fuses in turn), in a process
of its own after a warm-up pair; the peak is the process's resident memory during the fusion (and how
much of it came above what the process held before: the decoded frames, the network), read from the
kernel, with glibc's mmap threshold fixed so that what was freed does not count. The slope of the
peaks between the smallest and the largest stack is what each frame costs, in bytes per pixel. Two frames take the pair's path (the
whole-tensor map), more the stack's (one frame's work at a time): ``--frames 2 8`` compares the two.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image as PILImage

from gipc.data.synthesis import gaussian_blur


def make_stack(folder: Path, frames: int, width: int, height: int) -> list[Path]:
    """``frames`` JPEGs of one scene, frame k sharp in the k-th vertical band."""
    photo = PILImage.fromarray(skimage.data.astronaut()).resize((width, height), PILImage.BICUBIC)
    sharp = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    band = torch.arange(width) * frames // width  # each column's band
    blurred = {step: gaussian_blur(sharp, 1.5 * step) for step in range(1, frames)}  # by bands away
    paths = []
    for k in range(frames):
        frame = sharp.clone()
        for other in range(frames):
            if other != k:
                columns = band == other
                frame[..., columns] = blurred[abs(other - k)][..., columns]
        path = folder / f"frame{k:02d}.jpg"
        array = (frame[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
        PILImage.fromarray(array).save(path, quality=95)
        paths.append(path)
    return paths


PROBE = """
import sys, time
from pathlib import Path
import torch
from gipc.fuse import fuse_job
from gipc.imaging import read_matching
from gipc.pretrained import pretrained

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

fusion = pretrained().fusion(sys.argv[1])
images = read_matching([Path(p) for p in sys.argv[2:]])
fuse_job(images[:2], fusion)  # warm-up: the network's first tiles (conversion, compilation)
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak from here on
before = peak_kib()
start = time.perf_counter()
fuse_job(images, fusion)
print(time.perf_counter() - start, before, peak_kib())
"""
"""One fusion in a process of its own: seconds, and the peak RSS (KiB) before and during it."""


def fuse(paths: list[Path], rule: str) -> tuple[float, int, int]:
    """Seconds of one fusion of ``paths`` under ``rule``, the process's peak during it and that peak
    above what it held before (bytes); glibc's mmap threshold fixed so that freed buffers leave the
    process and the peak is what was live."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, rule, *map(str, paths)],
        capture_output=True,
        text=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    if done.returncode != 0:
        raise SystemExit(f"fusion failed: {done.stderr.strip()[-2000:]}")
    seconds, before, peak = done.stdout.split()
    return float(seconds), int(peak) * 1024, (int(peak) - int(before)) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[3, 8], help="stack lengths (default %(default)s; 2 takes a pair's path)")
    parser.add_argument("--size", default="2048x1536", help="frame size WxH (default %(default)s)")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    peaks: dict[str, dict[int, int]] = {"map": {}, "direct": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for frames in sorted(args.frames):
            folder = Path(tmp) / f"stack{frames}"
            folder.mkdir()
            paths = make_stack(folder, frames, width, height)
            for rule in ("map", "direct"):
                seconds, peak, above = fuse(paths, rule)
                peaks[rule][frames] = peak
                print(
                    f"{frames:>3} frames {width}x{height}, rule {rule:<6}: {seconds:6.1f} s, peak {peak / 2**20:6.0f} MiB"
                    f" ({above / 2**20:5.0f} MiB above the decoded frames)",
                    flush=True,
                )
    low, high = min(args.frames), max(args.frames)
    if high > low:
        for rule, peak in peaks.items():
            slope = (peak[high] - peak[low]) / (high - low) / (width * height)
            print(f"rule {rule:<6}: {slope:5.1f} bytes per pixel per frame ({low} -> {high} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
