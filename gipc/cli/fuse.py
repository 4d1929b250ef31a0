"""``gipc-fuse``: fuse registered multi-focus sources with a trained generator or a classic baseline.

    gipc-fuse A.png B.png [C.png ...] --out fused.png          # the model gipc ships, the default rule
    gipc-fuse STACK_DIR --out fused.png                        # a focus stack's frames, in name order
    gipc-fuse --stacks DIR --out NEW_DIR                       # each subfolder of DIR one focus stack
    gipc-fuse --rule direct A.png B.png --out fused.png        # the paper's output: the network's image
    gipc-fuse --ckpt model.ckpt --pairs DIR --out NEW_DIR      # a run's checkpoint or a gipc-export file
    gipc-fuse --method gff --pairs DIR --out NEW_DIR           # a classic baseline
    gipc-fuse --pairs DIR --out NEW_DIR --save-maps MAPS_DIR   # + each fusion's decision map
    gipc-fuse --pairs DIR --out NEW_DIR --format jpg           # the outputs as JPEG (or tif; default png)

The work itself is :mod:`gipc.fuse`; this module parses, reports and picks the exit code.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import torch
from tqdm import tqdm

from gipc import __version__
from gipc.align import FIT as ALIGN_FIT
from gipc.align import MODELS as ALIGN_MODELS
from gipc.baselines import BASELINES
from gipc.cli.common import Parser, guarded, inner_bar, say, step_bar
from gipc.configs import conf_group
from gipc.data.sources import raw_companions, set_aside, set_aside_note
from gipc.decision import MapSettings
from gipc.errors import FuseInputError, UserError
from gipc.files import sha256_file
from gipc.fuse import Job, check_record, pending, plan_jobs, run_jobs, write_record
from gipc.fusion import RULES, Fusion, default_rule, map_settings
from gipc.imaging import WRITABLE_SUFFIXES
from gipc.inference import BACKENDS, PRECISIONS, choose_path, prepare
from gipc.pretrained import SHIPPED_WEIGHTS, load_generator, shipped_generator
from gipc.tiling import AUTO_TILE_PIXELS, DEFAULT_TILE, check_tiling

PROG = "gipc-fuse"


def _parser() -> argparse.ArgumentParser:
    config = conf_group("fusion", "default")  # read once for both heads' defaults
    rule, settings, head_settings = config["rule"], map_settings(config), map_settings(config, "weights")
    parser = Parser(prog=PROG, description="Fuse multi-focus images with GIPC-GAN or a classic baseline.")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--ckpt", type=Path, help="a run's Lightning checkpoint or a gipc-export file (default: the shipped model)")
    model.add_argument("--method", choices=sorted(BASELINES), help="a classic baseline instead of the network")
    parser.add_argument("sources", nargs="*", type=Path, help="registered source images, in focus order, or one folder of a focus stack's frames (in name order)")
    folders = parser.add_mutually_exclusive_group()
    folders.add_argument("--pairs", type=Path, help="folder of <name>-A/<name>-B[/-C...] files (or _A, -a, -1, _1, -near/-far) or A/, B/ subfolders (or 1/, source_1/, imageA/, near/ far/)")
    folders.add_argument("--stacks", type=Path, metavar="DIR", help="folder of focus stacks: each subfolder is one stack, its frames in name order (frame2 before frame10), fused into <subfolder>-fused")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output file, or a new folder")
    parser.add_argument("--format", choices=[suffix[1:] for suffix in WRITABLE_SUFFIXES], help="format of the images written into an --out folder (default png; JPEG at quality 95, 8 bits only)")
    parser.add_argument("--rule", choices=RULES, help=f"direct: the network's own image (the paper's); map: each pixel copied from the source a decision map picks (default: {rule} for networks, direct for --method)")
    maps = parser.add_argument_group("decision map (--rule map; defaults from conf/fusion/default.yaml, a map head's from its head_map)")
    for field in fields(MapSettings):  # default None: the network's head decides which default applies
        default, head_default = getattr(settings, field.name), getattr(head_settings, field.name)
        flag = f"--{field.name.replace('_', '-')}"
        what = field.metadata["help"]
        if isinstance(default, bool):  # --match-exposure / --no-match-exposure
            maps.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{what} (default {default})")
        elif isinstance(default, tuple):  # one value per evidence term: --focus-window 5,11,21
            listed = ",".join(f"{v:g}" for v in default)
            maps.add_argument(flag, type=_numbers(type(default[0])), metavar="V[,V...]", help=f"{what} (default {listed})")
        else:
            head = f"; a map head: {head_default}" if head_default != default else ""
            maps.add_argument(flag, type=type(default), help=f"{what} (default {default}{head})")
    parser.add_argument("--save-maps", type=Path, metavar="DIR", help="also write each fusion's decision map (8-bit PNG: white = the first source, black = the last, even grey steps between) into this new folder")
    parser.add_argument("--align", action="store_true",
                        help="register each source onto the first before fusing and crop to the area all cover: for "
                             "brackets that move between shots (hand-held, focus breathing); a line per output says how far each source "
                             "moved; registered pairs fuse better without it")
    parser.add_argument("--align-model", choices=ALIGN_MODELS, default=ALIGN_MODELS[0],
                        help="the transform --align fits: similarity (shift, rotation, scale; default, and the steadier for long focus stacks) "
                             "or homography (the view itself changes: a camera turned between shots)")
    parser.add_argument("--tile", type=int, help=f"largest tile side for the network (as few tiles as this size needs, each as short as that allows); 0 = never (default: {DEFAULT_TILE} above {AUTO_TILE_PIXELS} px)")
    parser.add_argument("--overlap", type=int, help="tile overlap in pixels (default: 4x the network's receptive radius, the least that tiles exactly: 32 for the paper's generator)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="network precision; auto: bf16 where the hardware computes it natively (default); "
                        "int8: CPUs, through OpenVINO, 1.5-1.9x bf16's speed on the CPUs measured, "
                        "quantized once with NNCF (pip install 'gipc[int8]')")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="runtime of the network; auto: OpenVINO on a CPU where it loads, else torch (default)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    existing.add_argument("--skip-existing", action="store_true",
                          help="in an --out folder an interrupted or failed run of the same command left, fuse only the "
                               "groups whose outputs (and maps) are missing; refused where the folder's gipc-fuse.json "
                               "records other settings")
    parser.add_argument("--keep-going", action="store_true",
                        help="fuse a folder's other groups past one whose pixel data cannot be decoded or fused (each named "
                             "as it fails, exit code 2 at the end); a missing, unreadable or mismatched file still stops "
                             "the command before any work")
    return parser


def _numbers(kind: type) -> Callable[[str], tuple]:
    """An argparse type: comma-separated numbers of ``kind``."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None

    return parse


def _fusion(args: argparse.Namespace) -> tuple[Fusion, dict[str, Any]]:
    """The fusion the arguments ask for, and the settings that decide its outputs' pixels (an output
    folder's :data:`gipc.fuse.RECORD`); its first output line names the rule and the network's path."""
    given = {field.name: getattr(args, field.name) for field in fields(MapSettings) if getattr(args, field.name) is not None}
    if given and (args.rule == "direct" or (args.method is not None and args.rule is None)):  # they would go unused
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise FuseInputError(f"{flags}: the decision map's settings, and this rule makes no map: add --rule map, or leave them out")
    if args.method is not None:
        if args.tile is not None:
            raise FuseInputError("--tile applies to the network only; baselines fuse whole images")
        if args.precision != "auto" or args.backend != "auto":
            raise FuseInputError("--precision and --backend apply to the network only; baselines compute in fp32 with torch")
        from gipc.baselines import get_baseline

        fusion = Fusion(get_baseline(args.method, steps=step_bar), args.rule or "direct", default_rule()[1].changed(**given))
        own = "its own output" if fusion.rule == "direct" else fusion.describe()
        say(PROG, f"method {args.method} (a classic baseline, no network): {own}")
        what = {"method": args.method}
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise FuseInputError("--device cuda: no CUDA device is available here; use --device cpu")
        path = choose_path(None if args.device == "auto" else args.device, args.precision, args.backend)
        network = prepare(load_generator(args.ckpt) if args.ckpt is not None else shipped_generator(), path)
        fusion = replace(network.fusion(args.rule, default_rule(network.head)[1].changed(**given), args.tile, args.overlap), progress=_tile_bar, steps=_frame_bar)
        say(PROG, f"{fusion.describe()}; network {args.ckpt or 'shipped with gipc'}; {path.describe()}")
        if args.overlap is not None and args.overlap < network.overlap:
            say(PROG, f"warning: --overlap {args.overlap} is under {network.overlap}, the least this network tiles exactly with: "
                      "a tiled image differs from whole-image fusion near tile edges")
        what = {"weights sha256": sha256_file(args.ckpt or SHIPPED_WEIGHTS), "device": path.device.type, "precision": path.precision, "backend": path.backend}
    if args.save_maps is not None and fusion.rule == "direct" and fusion.head == "image":
        raise FuseInputError("--save-maps needs a rule that makes a map: add --rule map")
    settings = {**what, "rule": fusion.rule, "align": args.align_model if args.align else None} | ({"align fit": ALIGN_FIT} if args.align else {})
    if fusion.rule == "map":
        settings |= {f"map {field.name}": getattr(fusion.settings, field.name) for field in fields(MapSettings)}
    return fusion, settings


def _recorded(folder: Path, settings: dict[str, Any], kept: int) -> bool:
    """Whether ``folder``'s record holds ``settings`` (another's is refused, :func:`gipc.fuse.check_record`);
    where it holds none, the ``kept`` outputs there are taken as made with them, in a line."""
    line = check_record(folder, settings)
    if line is not None and kept:
        say(PROG, line)
    return line is None


def _set_aside(args: argparse.Namespace, planned: list[Job]) -> list[Path]:
    """The files beside RAW files of one name that the folders read leave out (:func:`gipc.data.sources.raw_companions`)."""
    if args.pairs is not None:
        return set_aside(args.pairs)
    if args.stacks is None and not any(path.is_dir() for path in args.sources):  # files named one by one
        return []
    return [path for folder in sorted({job.sources[0].parent for job in planned}) for path in raw_companions(folder)]


def _tile_bar(tiles: Sequence) -> Collection:
    """A bar over a large image's tiles: a 12 MP pair spends 3 s in its 63 tiles on two cores, a 48 MP
    pair over 200 tiles."""
    return inner_bar(tiles, "network tiles", "tile")


def _frame_bar(frames: Sequence, what: str) -> Collection:
    """A bar over a focus stack's frames as ``what`` (the network in turn, the map's passes) goes
    through them: 30 frames of 12 MP take 4 min on two cores."""
    return inner_bar(frames, what, "frame")


def _say_aligned(job: Job, line: str) -> None:
    """What --align did to one job's sources, between the progress bar's updates."""
    tqdm.write(f"{PROG}: {job.output.name}: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gipc-fuse``: 0 on success, 2 on a user error, 130 when interrupted."""
    args = _parser().parse_args(argv)
    written: list[Path] = []
    jobs: list[Job] = []
    skipped: list[tuple[Job, UserError]] = []
    rest = "; the same command with --skip-existing fuses the rest"

    def skip(job: Job, err: UserError) -> None:
        skipped.append((job, err))
        tqdm.write(f"{PROG}: skipped {job.output.name}: {err}", file=sys.stderr)

    def body() -> int:
        check_tiling(args.tile, args.overlap)  # before the network loads
        replace_any = args.overwrite or args.skip_existing  # what --skip-existing redoes is a job's own partial output
        planned = plan_jobs(args.sources, args.pairs, args.out, replace_any, args.save_maps, args.format and f".{args.format}", args.stacks)
        jobs.extend(pending(planned) if args.skip_existing else planned)
        done = f" ({len(planned) - len(jobs)} already there)" if len(jobs) < len(planned) else ""
        if not jobs:
            say(PROG, f"nothing to fuse: {'all ' + str(len(planned)) + ' outputs are' if len(planned) > 1 else 'the output is'} already there")
            return 0
        fusion, settings = _fusion(args)
        folder = args.out if planned[0].output != args.out else None  # a folder of outputs, not one file
        unrecorded = folder is not None and not (args.skip_existing and _recorded(folder, settings, len(planned) - len(jobs)))
        made_with = {"command": shlex.join([PROG, *(sys.argv[1:] if argv is None else argv)]), "gipc": __version__,
                     "weights": None if args.method else str(args.ckpt or SHIPPED_WEIGHTS),
                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if note := set_aside_note(_set_aside(args, planned)):  # a camera's RAW+JPEG: the RAW files are fused
            say(PROG, note)
        if args.align:
            say(PROG, f"each source registered onto the first ({args.align_model}) where that brings their edges closer, all cropped to the area they share")
        if rounded := [job.output for job in jobs if job.rounded]:  # asked for by name or --format jpg: written, and said
            what = rounded[0] if len(rounded) == 1 else f"{len(rounded)} of the outputs"
            say(PROG, f"JPEG holds 8 bits: {what} from 16-bit sources rounded to 8 (.png or .tif keep 16)")
        try:
            for output in run_jobs(jobs, fusion, replace_any, args.align_model if args.align else None, _say_aligned, skip if args.keep_going and len(jobs) > 1 else None):
                if unrecorded and not written:  # with the first output: a run that writes none leaves the folder as it was
                    write_record(folder, settings, made_with)
                written.append(output)
        except UserError as err:  # an unreadable source halfway through a folder: say how to go on once it is fixed
            if not written:
                raise
            raise FuseInputError(f"{err}; {len(written)} of {len(jobs)} outputs written whole{rest} once that is fixed") from None
        if skipped:
            (job, err), more = skipped[0], len(skipped) - 1
            raise FuseInputError(
                f"{len(skipped)} of {len(jobs)} groups could not be fused ({job.output.name}: {err}{f'; {more} more named above' if more else ''}); "
                f"{len(written)} output{'' if len(written) == 1 else 's'} written whole{rest} once {'they are' if more else 'it is'} fixed"
            )
        maps = f" and {'its map' if len(written) == 1 else 'their maps'} to {args.save_maps}" if args.save_maps is not None else ""
        say(PROG, f"wrote {written[0] if len(written) == 1 else f'{len(written)} images to {args.out}'}{maps}{done}")
        return 0

    def interrupted() -> str:
        return f"interrupted; {len(written)} of {len(jobs)} outputs written whole, no partial files{rest if len(jobs) > 1 else ''}"

    return guarded(PROG, body, interrupted)


if __name__ == "__main__":
    sys.exit(main())
