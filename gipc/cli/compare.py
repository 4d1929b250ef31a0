"""``gipc-compare``: compare finished runs of a sweep (or any run dirs), or list a sweep's jobs.

    gipc-compare outputs/<task>/multiruns/<time> [--reference ablation=none] [--method gipc,gipc+map]
    gipc-compare outputs/<task>/multiruns/<time> --status

The statistics and charts are :mod:`gipc.compare`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from gipc.cli.common import Parser, guarded, say
from gipc.compare import DEFAULT_IGNORE, DEFAULT_METRICS, compare
from gipc.sweep import sweep_status

PROG = "gipc-compare"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gipc-compare``: 0 on success, 2 on a user error."""
    parser = Parser(
        prog=PROG,
        description="Compare finished runs: mean ± std per variant across images and across seeds, "
        "a paired Wilcoxon test against a reference variant, and a chart per metric.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="a multirun dir (outputs/<task>/multiruns/<time>), run dirs or a gipc-eval --out folder")
    parser.add_argument("-o", "--out", type=Path, default=None, help="new output folder (default: <dir>/comparison; for several paths <dir> is the folder holding them all)")
    parser.add_argument("--method", default=None, help="method in the metrics table to compare (default: gipc, the model; for "
                        "gipc-eval folders, every method they score); several, comma-separated (e.g. gipc,gipc+map), become variants method=<name>")
    parser.add_argument(
        "--metrics", default=DEFAULT_METRICS,
        help="table inside each run dir to read (default: metrics.csv, the test stage's; e.g. lytro/metrics.csv from gipc-eval)",
    )
    parser.add_argument(
        "--reference", default=None,
        help="variant to test every other against, as the table names it (e.g. ablation=none): paired Wilcoxon, pairs = (image, seed)",
    )
    parser.add_argument(
        "--ignore", nargs="*", default=list(DEFAULT_IGNORE), help="override keys that do not make a variant (default: seed)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--status", action="store_true", help="only list each sweep's jobs as done, running now, failed, partial or not started")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.status:
            tables = [(path, sweep_status(path)) for path in args.paths]  # every sweep checked before any output
            for i, (path, rows) in enumerate(tables):
                if len(tables) > 1:  # one table per sweep, headed by its dir
                    print(("\n" if i else "") + str(path))
                columns = list(rows[0]) if rows else ["job", "overrides", "state"]  # an Optuna sweep's: + what its trials returned
                print(_row(columns) + "|" + "---|" * len(columns) + "\n" + "".join(_row([r[c] for c in columns]) for r in rows), end="")
            return 0
        out = compare(args.paths, args.out, args.method, args.ignore, args.overwrite, args.reference, args.metrics)
        print((out / "comparison.md").read_text())
        say(PROG, f"comparison written to {out}")
        return 0

    return guarded(PROG, body)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |\n"


if __name__ == "__main__":
    sys.exit(main())
