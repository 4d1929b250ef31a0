"""``gipc-eval``: score fused images (folders of any method, or classic baselines fused here)
against their sources, and optionally ground truth and decision maps. The scoring is :mod:`gipc.evaluate`.

    gipc-eval --sources PAIRS --fused gipc=DIR --baselines average,gff --out NEW_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable, Sequence

from gipc.baselines import BASELINES
from gipc.cli.common import Parser, guarded, say, step_bar
from gipc.data.datasets import PairFolder
from gipc.data.sources import set_aside, set_aside_note
from gipc.data.scene import Scene
from gipc.errors import EvalInputError, OutputExistsError, UserError
from gipc.evaluate import attach_gt, evaluate_pairs, listed, log_wandb, parse_fused, plan_maps, plan_methods, scene_files
from gipc.files import check_output_folder
from gipc.fuse import made_by
from gipc.journal import Journal, file_states, read_journal
from gipc.report import PARTIAL, Row, markdown_table, numeric_columns, write_report
from gipc.wandb_mode import check_wandb_mode, wandb_offline

PROG = "gipc-eval"


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Score fused multi-focus images (EN, SF, SD, CC, Q^AB/F, MS-SSIM; PSNR/SSIM with ground truth).")
    parser.add_argument("--sources", "--pairs", dest="sources", type=Path, required=True,
                        help="pair folder: <scene>-A/<scene>-B files (or _A, -1, _1), or A/ and B/ [and GT/] subfolders (or 1/, source_1/, "
                             "imageA/, near/ far/); focus sequences (-C, C/, ...) too, scored over every source")
    parser.add_argument("--fused", action="append", default=[], metavar="[NAME=]DIR",
                        help="folder of fused images named <scene>[-fused].<ext>; repeat for several methods")
    parser.add_argument("--method", help="name of the single --fused folder's method in the tables (default: the folder's name)")
    parser.add_argument("--baselines", default="", help="comma-separated classic methods to fuse and score here, e.g. average,gff, or all")
    parser.add_argument("--gt", type=Path, help="folder of all-in-focus images named <scene>[-gt or _F].<ext>: adds PSNR and SSIM")
    parser.add_argument("--maps", action="append", default=[], metavar="NAME=DIR",
                        help="a --fused method's decision maps (<scene>[-map].png, as gipc-fuse --save-maps writes them; a bare DIR "
                             "with one --fused method is that method's), scored "
                             "against the sources' maps/ folder: accuracy MAP_ACC and boundary F-score MAP_BF")
    parser.add_argument("--extra-metrics", default="", metavar="NAME[,NAME]",
                        help="also score these metrics of the MFIF survey's tables: QMI, QNCIE, QM, QSF, QP, QY, QCB, or all "
                             "(Q_MI: normalised mutual information, 0..2; Q_NCIE: nonlinear correlation information entropy, 0..1; "
                             "Q_M: multiscale edge preservation, 0..3; Q_SF: extended spatial frequency against the sources', 0 best; "
                             "Q_P: phase congruency, 0..1, the slowest; Q_Y: Yang's SSIM-based, 0..1; Q_CB: Chen-Blum's perceptual, 0..1)")
    parser.add_argument("-o", "--out", type=Path, help="new folder for metrics.csv, metrics.md and metrics.tex (default: print the table only)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder, replacing its tables")
    parser.add_argument("--resume", action="store_true",
                        help=f"go on with an interrupted or failed run in --out: the pairs it scored (kept in {PARTIAL}) are not scored again")
    parser.add_argument("--allow-missing", action="store_true", help="score the scenes a --fused folder has instead of refusing")
    parser.add_argument("--wandb", nargs="?", const="auto", choices=["auto", "offline", "online"],
                        help="also log the tables to W&B (needs --out); auto: online after `wandb login` where W&B answers, else offline (as training logs)")
    return parser


class Scoring:
    """One ``gipc-eval`` run: what it was asked, and (with ``--out``) the journal of the pairs scored so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.pairs_total = args, 0
        self.journal: Journal | None = None
        self.made_out = False  # whether the run made --out (for the journal): an interrupted run with nothing kept takes it away

    def run(self) -> list[Row]:
        """Check everything that can be checked up front, then score; writes nothing but the journal."""
        args = self.args
        if args.wandb and args.out is None:
            raise EvalInputError("--wandb keeps its run under --out; give --out NEW_DIR")
        if args.wandb:
            check_wandb_mode()  # before the scoring, not once the tables are written
        if args.resume and (args.out is None or args.overwrite):
            raise EvalInputError("--resume goes on in the --out folder of the run it continues, without --overwrite")
        fused = parse_fused(args.fused, args.method)
        from gipc.metrics import EXTRA_NAMES  # torchmetrics (0.8 s) once the arguments are read: --help answers without it

        extra = listed(args.extra_metrics, EXTRA_NAMES, "metric", "--extra-metrics")
        baselines = listed(args.baselines, BASELINES, "baseline", "--baselines")
        if len(fused) == 1:  # a bare --maps DIR belongs to the one method
            args.maps = [f"{next(iter(fused))}={value}" if "=" not in value or Path(value).is_dir() else value for value in args.maps]
        maps_dirs = parse_fused(args.maps, None, "--maps")
        if args.out is not None:
            self._check_out([args.sources, *fused.values(), *([args.gt] if args.gt else []), *maps_dirs.values()])
        folder = PairFolder(args.sources, sequences=True)
        if note := set_aside_note(set_aside(args.sources)):  # a camera's RAW+JPEG: the RAW files are scored
            say(PROG, note)
        pairs: Sequence[Scene] = folder
        names = [name for name, *_ in folder.entries]
        counts = sorted({len(sources) for _, sources, *_ in folder.entries})
        longest = counts[-1]
        if longest > 2 and (pairs_only := [flag for flag, given in (("--extra-metrics", extra), ("--maps", args.maps)) if given]):
            raise EvalInputError(f"{pairs_only[0]} scores pairs, and {args.sources} holds focus sequences of up to {longest} sources; "
                                 "score them without it (EN, SF, SD, CC, Q^AB/F and MS-SSIM read every source)")
        if len(counts) > 1:  # one mean over scenes whose scores are not on one scale
            say(PROG, f"note: {args.sources} holds scenes of {', '.join(map(str, counts[:-1]))} and {longest} sources; each mean averages "
                      "them all, and more sources score lower (Q^AB/F keeps each pixel's edges of one source of them): "
                      "score each kind in a folder of its own to compare them")
        if args.gt is not None and args.gt.resolve() != (args.sources / "GT").resolve():  # that one is read anyway
            if pairs.has_gt:
                raise EvalInputError(f"{args.sources} has its own GT/ folder; drop --gt, or move GT/ away")
            pairs = attach_gt(pairs, args.gt)
        methods = plan_methods(folder, fused, baselines, args.allow_missing, steps=step_bar)
        for name, where in fused.items():  # what each folder holds, where gipc-fuse recorded it
            if (made := made_by(where)) is not None:
                say(PROG, f"{name} = {where}: {made}")
            if gray := methods[name].gray_of_colour:
                say(PROG, f"note: {name}: {gray} of its {len(methods[name].files)} images are grayscale where the sources are colour; "
                          "every metric reads luminance, so the colour they lack does not count against them")
        maps = plan_maps(folder, args.maps, methods)
        self.pairs_total = len(names)
        done: dict[int, list[Row]] = {}
        again = ""
        record: Callable[[int, list[Row]], None] | None = None
        if args.out is not None:
            header = {  # what the kept scores were scored with; their files are checked pair by pair
                "--sources": args.sources.resolve(),
                "--fused": {name: path.resolve() for name, path in fused.items()},
                "--baselines": baselines,
                "--extra-metrics": extra,
                "--gt": args.gt and args.gt.resolve(),
                "--maps": {name: path.resolve() for name, path in maps_dirs.items()},
                "--allow-missing": args.allow_missing,
            }
            path, self.made_out = args.out / PARTIAL, not args.out.exists()
            self.journal = journal = Journal.resume(path, header) if args.resume else Journal.start(path, header)
            files = scene_files(folder, pairs, methods, maps)
            states = {name: file_states(files[name]) for name in journal.entries if name in files}
            index = {name: i for i, name in enumerate(names)}
            done = {index[name]: kept["rows"] for name, kept in journal.entries.items() if name in states and kept.get("files") == states[name]}
            if changed := len(journal.entries) - len(done):
                again = f"; {changed} of the pairs scored before changed since, scored again"

            def record(index: int, rows: list[Row]) -> None:  # each pair's rows, with the files they stand on
                journal.add(names[index], {"files": file_states(files[names[index]]), "rows": rows})

        truth = " and ground truth" if args.gt is not None or folder.has_gt else ""
        unit = "pair(s)" if longest == 2 else "scene(s)"
        left = f"{len(names) - len(done)} of {len(names)} {unit} (the rest scored before{again})" if done or again else f"{len(names)} {unit}"
        say(PROG, f"scoring {left}{truth}: {', '.join(methods)}")
        return evaluate_pairs(pairs, methods, progress=True, maps_by_method=maps, extra=extra, done=done, scored=record)

    def _check_out(self, inputs: Sequence[Path]) -> None:
        """The output folder as :func:`check_output_folder` wants it; one holding an interrupted run
        wants ``--resume`` (or ``--overwrite``), and ``--resume`` wants one."""
        out = self.args.out
        if self.args.resume:
            check_output_folder(out, True, inputs)
            read_journal(out / PARTIAL)  # refused here, before any reading, if there is nothing to go on with
        elif (out / PARTIAL).is_file() and not self.args.overwrite:
            raise OutputExistsError(f"{out} holds an interrupted run of gipc-eval ({PARTIAL}); add --resume to go on with it, or --overwrite to start afresh")
        else:
            check_output_folder(out, self.args.overwrite, inputs)

    def kept(self) -> str:
        """What an interrupted or failed run leaves to go on with, in words; "" for nothing, and then
        the empty journal (and a folder made for it alone) is taken away: nothing written."""
        if self.journal is None:
            return ""
        if not self.journal.entries:  # nothing scored: nothing kept, nothing written
            self.journal.remove()
            if self.made_out:
                with contextlib.suppress(OSError):
                    self.args.out.rmdir()
            return ""
        count = len(self.journal.entries)
        return f"the scores of {count} of {self.pairs_total} pairs are kept in {self.journal.path}; the same command with --resume scores the rest"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gipc-eval``: 0 on success, 2 on a user error, 130 when interrupted."""
    args = _parser().parse_args(argv)
    scoring = Scoring(args)

    def body() -> int:
        try:
            rows = scoring.run()
        except UserError as err:
            if kept := scoring.kept():
                raise EvalInputError(f"{err}; {kept} once that is fixed") from None
            raise
        print(markdown_table(rows, "method", numeric_columns(rows)), end="")
        if args.out is None:
            return 0
        paths = write_report(rows, args.out, group="method")
        scoring.journal.remove()
        say(PROG, f"wrote {', '.join(path.name for path in paths)} in {args.out}")
        if args.wandb:
            config = {"sources": str(args.sources), "fused": args.fused, "baselines": args.baselines, "gt": args.gt and str(args.gt)}
            mode = args.wandb
            if mode == "auto":
                offline, why = wandb_offline("auto")
                mode = "offline" if offline else "online"
                say(PROG, f"W&B {mode}: {why}")
            try:
                say(PROG, f"W&B run in {log_wandb(rows, args.out, mode, config)}")
            except Exception as err:  # wandb raises many types (login, network); the tables are already written
                say(PROG, f"error: W&B logging failed ({type(err).__name__}: {' '.join(str(err).split())}); the tables were written")
                return 2
        return 0

    def interrupted() -> str:
        kept = scoring.kept()
        return f"interrupted; {kept}" if kept else "interrupted; nothing written"

    return guarded(PROG, body, interrupted)


if __name__ == "__main__":
    sys.exit(main())
