"""Folder fusion one step after another against gipc-fuse's pipelined loop, alternating in one process.

    python benchmarks/bench_pipeline.py [--pairs DIR] [--rounds 3]

Both loops fuse the same folder with the shipped model on the default path and rule and write
PNGs into a temporary folder; the sequential loop decodes, fuses and encodes each pair in turn,
:func:`gipc.fuse.run_jobs` decodes the next pair and encodes the previous one in a thread while
the network runs. Rounds alternate (sequential, pipelined) so that machine noise hits both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from gipc.fuse import Job, fuse_job, plan_jobs, run_jobs, write_outputs
from gipc.fusion import Fusion
from gipc.imaging import read_matching
from gipc.pretrained import pretrained

PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lytro" / "pairs"


def sequential(jobs: list[Job], fusion: Fusion) -> Iterator[Path]:
    """The loop before the pipeline: decode, fuse, encode, one job after another."""
    for job in jobs:
        images = read_matching(job.sources)
        write_outputs(job, images, fuse_job(images, fusion), False)
        yield job.output


def timed(loop: str, folder: Path, fusion: Fusion) -> float:
    with tempfile.TemporaryDirectory() as out:
        jobs = plan_jobs([], folder, Path(out) / "fused", False)
        start = time.perf_counter()
        for _ in run_jobs(jobs, fusion, False) if loop == "pipelined" else sequential(jobs, fusion):
            pass
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS, help="pair folder (default: the shared Lytro pairs)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both loops (default %(default)s)")
    args = parser.parse_args()
    network = pretrained()
    fusion = network.fusion()
    print(f"{fusion.describe()}; {network.path.describe()}")
    timed("sequential", args.pairs, fusion)  # warm-up: conversion, compilation, caches
    seconds: dict[str, list[float]] = {"sequential": [], "pipelined": []}
    for _ in range(args.rounds):
        for loop in seconds:
            seconds[loop].append(timed(loop, args.pairs, fusion))
    for loop, values in seconds.items():
        print(f"{loop:<10} {statistics.fmean(values):.2f} s per folder ({', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.fmean(seconds["sequential"]) / statistics.fmean(seconds["pipelined"])
    print(f"pipelined / sequential speed: {ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
