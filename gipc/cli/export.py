"""``gipc-export``: write the generator of a gipc checkpoint alone (weights only, ``torch.load(weights_only=True)``).

    gipc-export outputs/<task>/runs/<run>/checkpoints/last.ckpt gipc/weights/gipc-cpu.pt [--recalibrate-bn 100]   (or -o OUT)
    gipc-export outputs/<task>/runs/<run>/checkpoints/last.ckpt generator.onnx    # an ONNX model of the network (gipc[onnx])

The format and the loader are :mod:`gipc.pretrained`; the ONNX model's inputs and output, :mod:`gipc.onnx_export`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gipc import onnx_export
from gipc.cli.common import Parser, count, guarded, say
from gipc.errors import DataError
from gipc.files import check_writable
from gipc.pretrained import FORMAT, export_generator

PROG = "gipc-export"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gipc-export``: 0 on success, 2 on a bad checkpoint or an output it must not replace."""
    parser = Parser(prog=PROG, description="Write the generator of a gipc checkpoint alone (weights only), or as an ONNX model.")
    parser.add_argument("ckpt", type=Path, help="Lightning checkpoint of a GIPC-GAN run (or an exported generator)")
    parser.add_argument("out", type=Path, nargs="?", help="output file, e.g. gipc/weights/gipc-cpu.pt, or NAME.onnx for an ONNX model of the network (or -o/--out)")
    parser.add_argument("-o", "--out", type=Path, dest="out_flag", metavar="OUT", help="the output file, given as a flag as the other gipc commands take it")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--recalibrate-bn", type=count, default=0, metavar="N",
                        help="re-estimate BatchNorm statistics on N training batches of the checkpoint's run first")
    parser.add_argument("--run-dir", type=Path, help="the run whose training data --recalibrate-bn draws (default: the checkpoint's)")
    args = parser.parse_args(argv)
    if (args.out is None) == (args.out_flag is None):
        parser.error("name the output file once: gipc-export CKPT OUT, or gipc-export CKPT -o OUT")
    args.out = args.out or args.out_flag

    def body() -> int:
        calibration = None
        check_writable(args.out, args.overwrite, protected=(args.ckpt,))  # before the run's data is built
        kind = onnx_export.FORMAT if onnx_export.requested(args.out) else FORMAT
        if args.recalibrate_bn > 0:
            from gipc.rundir import run_datamodule, run_dir_of, training_inputs  # Lightning and Hydra, only when asked

            run_dir = args.run_dir or run_dir_of(args.ckpt)
            if args.run_dir is None and not (run_dir / "config.yaml").is_file():
                raise DataError(f"{args.ckpt} is not in a run's checkpoints/ folder; name the run whose training data "
                                "--recalibrate-bn draws with --run-dir")
            calibration = training_inputs(run_datamodule(run_dir), args.recalibrate_bn)
        out = export_generator(args.ckpt, args.out, args.overwrite, calibration)
        recalibrated = f", BatchNorm re-estimated on {args.recalibrate_bn} training batches" if calibration is not None else ""
        say(PROG, f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {kind}{recalibrated})")
        return 0

    return guarded(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
