"""``gipc-select``: score a run's checkpoints on held-out data and pick one, never on the test set.

    gipc-select outputs/cpu/runs/DATE --pairs path/to/grayscale [--min-step N] [--recalibrate-bn N] [--rule direct|map]

The scoring and the rule are :mod:`gipc.selection`; ``selection.md`` in the run dir keeps the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gipc.cli.common import Parser, count, doc_summary, guarded, say
from gipc.errors import DataError
from gipc.files import write_text
from gipc.fusion import RULES, default_rule

PROG = "gipc-select"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=doc_summary(__doc__))
    parser.add_argument("run_dir", type=Path, help="a training run dir (holds config.yaml and checkpoints/)")
    parser.add_argument("--pairs", type=Path, action="append", default=[], required=True,
                        help="a folder of real pairs without ground truth, scored with Q^AB/F (repeatable); never the test set")
    parser.add_argument("--min-step", type=count, default=0, help="only checkpoints at or after this global step")
    parser.add_argument("--recalibrate-bn", type=count, default=0, metavar="N",
                        help="score each checkpoint with BatchNorm statistics re-estimated on N training batches (as gipc-export --recalibrate-bn N)")
    rule, _ = default_rule()
    parser.add_argument("--rule", choices=RULES, default=rule,
                        help=f"the fusion rule every checkpoint is scored under (default: {rule}, the rule gipc-fuse ships; direct: the paper's output)")
    args = parser.parse_args(argv)

    def body() -> int:
        if not args.run_dir.is_dir():
            raise DataError(f"{args.run_dir}: no such run dir")
        if not (args.run_dir / "checkpoints").is_dir():
            raise DataError(f"{args.run_dir}: not a training run dir (no checkpoints/ folder); give outputs/<task>/runs/<time>")
        # Lightning and the data modules, after the arguments: --help and a wrong path answer in half the time
        from gipc.data.datasets import PairFolder
        from gipc.rundir import run_datamodule, training_inputs
        from gipc.selection import candidates, score_checkpoints, table

        checkpoints = candidates(args.run_dir, args.min_step)
        if not checkpoints:
            raise DataError(f"{args.run_dir}/checkpoints holds no checkpoint at or after step {args.min_step}")
        data = run_datamodule(args.run_dir)
        calibration = list(training_inputs(data, args.recalibrate_bn))
        pairs = [scene for folder in args.pairs for scene in PairFolder(folder)]
        say(PROG, f"scoring {len(checkpoints)} checkpoint(s) under rule {args.rule}: {len(data.val_scenes)} held-out synthetic pair(s) "
                  f"(PSNR, SSIM) and {len(pairs)} pair(s) of {', '.join(map(str, args.pairs))} (Q^AB/F)")
        rows = score_checkpoints(checkpoints, data.val_scenes, pairs, calibration, args.rule)
        pick = min(rows, key=lambda row: (row["mean_rank"], -row["step"]))["checkpoint"]  # ties: the later one
        text = table(rows, str(pick))
        write_text(args.run_dir / "selection.md", f"Checkpoints scored by `gipc-select` under rule {args.rule}; picked: {pick}\n\n{text}")
        print(text + f"picked: {args.run_dir / 'checkpoints' / str(pick)}")
        return 0

    return guarded(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
