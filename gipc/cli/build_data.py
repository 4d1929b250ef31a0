"""``gipc-build-data``: build an MFI-DRC-style data set on disk with a reproducible manifest.

    gipc-build-data --source PHOTOS --out data/mfi-drc --maps region_competition
    gipc-build-data --embedded --out data/embedded-drc

The recipe is :mod:`gipc.data.build`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from gipc.cli.common import Parser, guarded, say
from gipc.data.build import EMBEDDED, MANIFEST, build_dataset
from gipc.data.decision_maps import SOURCES

PROG = "gipc-build-data"


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Build an MFI-DRC-style multi-focus data set (equations 18-19) with a reproducible manifest.",
    )
    origin = parser.add_mutually_exclusive_group(required=True)
    origin.add_argument("--source", type=Path, help="folder of all-in-focus photos (e.g. MFI-WHU full_clear/)")
    origin.add_argument("--embedded", action="store_true", help="use scikit-image's bundled photos (no download)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder (train/ and test/ with A/ B/ GT/ maps/)")
    parser.add_argument("--maps", choices=list(SOURCES), help="decision-map source (default: region_competition; embedded: per photo)")
    parser.add_argument("--mask-dir", type=Path, help="masks (--maps file) or depth images (--maps disparity), same stems as the photos")
    parser.add_argument("--sigma", type=float, default=EMBEDDED["sigma"], help="Gaussian blur std in px (paper: unstated; default %(default)s)")
    parser.add_argument("--soft", type=float, default=0.0, help="soften map boundaries by a Gaussian of this std in px (default: hard maps)")
    parser.add_argument("--test-fraction", type=float, default=EMBEDDED["test_fraction"], help="held-out share (paper: 30/120 = %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split and random maps (default %(default)s)")
    parser.add_argument("--max-side", type=int, help=f"downscale photos to this longest side (default: keep; embedded: {EMBEDDED['max_side']})")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier build in --out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gipc-build-data``: 0 on success, 2 on a user error, 130 when interrupted (nothing left behind)."""
    args = _parser().parse_args(argv)

    def body() -> int:
        manifest = build_dataset(
            args.out,
            source=None if args.embedded else args.source,
            maps=args.maps,
            mask_dir=args.mask_dir,
            sigma=args.sigma,
            soft=args.soft,
            test_fraction=args.test_fraction,
            seed=args.seed,
            max_side=EMBEDDED["max_side"] if args.embedded and args.max_side is None else args.max_side,
            overwrite=args.overwrite,
            progress=True,
        )
        counts = manifest["counts"]
        say(PROG, f"wrote {counts['train']} train / {counts['test']} test images to {args.out} (manifest {args.out / MANIFEST})")
        return 0

    return guarded(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
