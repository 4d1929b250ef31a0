"""``gipc-eval``: score fused images (folders of any method, or classic baselines fused here)
against their sources, and optionally ground truth and decision maps. The scoring is :mod:`gipc.evaluate`.

    gipc-eval --sources PAIRS --fused gipc=DIR --baselines average,gff --out NEW_DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from gipc.baselines import BASELINES
from gipc.choices import expand, unknown
from gipc.cli.common import Parser, guarded, say
from gipc.data.datasets import PairFolder
from gipc.data.scene import Scene
from gipc.errors import EvalInputError
from gipc.evaluate import attach_gt, evaluate_pairs, log_wandb, parse_fused, plan_maps, plan_methods
from gipc.files import check_output_folder
from gipc.metrics import EXTRA_NAMES
from gipc.report import Row, markdown_table, numeric_columns, write_report

PROG = "gipc-eval"


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Score fused multi-focus images (EN, SF, SD, CC, Q^AB/F, MS-SSIM; PSNR/SSIM with ground truth).")
    parser.add_argument("--sources", type=Path, required=True, help="pair folder: <scene>-A/<scene>-B files (or _A, -1, _1), or A/ and B/ [and GT/] subfolders (or 1/, source_1/, imageA/, near/ far/)")
    parser.add_argument("--fused", action="append", default=[], metavar="[NAME=]DIR",
                        help="folder of fused images named <scene>[-fused].<ext>; repeat for several methods")
    parser.add_argument("--method", help="name of the single --fused folder's method in the tables (default: the folder's name)")
    parser.add_argument("--baselines", default="", help="comma-separated classic methods to fuse and score here, e.g. average,gff, or all")
    parser.add_argument("--gt", type=Path, help="folder of all-in-focus images named <scene>[-gt or _F].<ext>: adds PSNR and SSIM")
    parser.add_argument("--maps", action="append", default=[], metavar="NAME=DIR",
                        help="a --fused method's decision maps (<scene>[-map].png, as gipc-fuse --save-maps writes them), scored "
                             "against the sources' maps/ folder: accuracy MAP_ACC and boundary F-score MAP_BF")
    parser.add_argument("--extra-metrics", default="", metavar="NAME[,NAME]",
                        help=f"also score these metrics of the MFIF survey's tables: {', '.join(EXTRA_NAMES)}, or all "
                             "(Q_MI: normalised mutual information, 0..2; Q_NCIE: nonlinear correlation information entropy, 0..1; "
                             "Q_M: multiscale edge preservation, 0..3; Q_SF: extended spatial frequency against the sources', 0 best; "
                             "Q_P: phase congruency, 0..1, the slowest; Q_Y: Yang's SSIM-based, 0..1; Q_CB: Chen-Blum's perceptual, 0..1)")
    parser.add_argument("-o", "--out", type=Path, help="new folder for metrics.csv, metrics.md and metrics.tex (default: print the table only)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder, replacing its tables")
    parser.add_argument("--allow-missing", action="store_true", help="score the scenes a --fused folder has instead of refusing")
    parser.add_argument("--wandb", nargs="?", const="offline", choices=["offline", "online"],
                        help="also log the tables to W&B (offline unless 'online'; needs --out)")
    return parser


def run(args: argparse.Namespace) -> list[Row]:
    """Check everything that can be checked up front, then score; writes nothing itself."""
    if args.wandb and args.out is None:
        raise EvalInputError("--wandb keeps its run under --out; give --out NEW_DIR")
    fused = parse_fused(args.fused, args.method)
    extra = expand((name.strip() for name in args.extra_metrics.split(",") if name.strip()), EXTRA_NAMES)
    if problem := unknown(extra, EXTRA_NAMES, "metric"):
        raise EvalInputError(f"--extra-metrics: {problem}")
    baselines = expand((name.strip() for name in args.baselines.split(",") if name.strip()), BASELINES)
    if problem := unknown(baselines, BASELINES, "baseline"):
        raise EvalInputError(f"--baselines: {problem}")
    if args.out is not None:
        inputs = [args.sources, *fused.values(), *([args.gt] if args.gt else []), *parse_fused(args.maps, None, "--maps").values()]
        check_output_folder(args.out, args.overwrite, inputs)
    folder = PairFolder(args.sources)
    pairs: Sequence[Scene] = folder
    names = [name for name, *_ in folder.entries]
    if args.gt is not None and args.gt.resolve() != (args.sources / "GT").resolve():  # that one is read anyway
        if pairs.has_gt:
            raise EvalInputError(f"{args.sources} has its own GT/ folder; drop --gt, or move GT/ away")
        pairs = attach_gt(pairs, args.gt)
    methods = plan_methods(folder, fused, baselines, args.allow_missing)
    maps = plan_maps(folder, args.maps, methods)
    truth = " and ground truth" if args.gt is not None or folder.has_gt else ""
    say(PROG, f"scoring {len(names)} pair(s){truth}: {', '.join(methods)}")
    return evaluate_pairs(pairs, methods, progress=True, maps_by_method=maps, extra=extra)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gipc-eval``: 0 on success, 2 on a user error, 130 when interrupted."""
    args = _parser().parse_args(argv)

    def body() -> int:
        rows = run(args)
        print(markdown_table(rows, "method", numeric_columns(rows)), end="")
        if args.out is None:
            return 0
        paths = write_report(rows, args.out, group="method")
        say(PROG, f"wrote {', '.join(path.name for path in paths)} in {args.out}")
        if args.wandb:
            config = {"sources": str(args.sources), "fused": args.fused, "baselines": args.baselines, "gt": args.gt and str(args.gt)}
            try:
                say(PROG, f"W&B run in {log_wandb(rows, args.out, args.wandb, config)}")
            except Exception as err:  # wandb raises many types (login, network); the tables are already written
                say(PROG, f"error: W&B logging failed ({type(err).__name__}: {err}); the tables were written")
                return 2
        return 0

    return guarded(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
