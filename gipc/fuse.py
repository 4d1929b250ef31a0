"""The fuse command: fuse registered multi-focus sources with a trained generator or a classic baseline.

    gipc-fuse A.png B.png [C.png ...] --out fused.png          # the model gipc ships, the default rule
    gipc-fuse --rule direct A.png B.png --out fused.png        # the paper's output: the network's image
    gipc-fuse --ckpt model.ckpt --pairs DIR --out NEW_DIR      # a run's checkpoint or a gipc-export file
    gipc-fuse --method gff --pairs DIR --out NEW_DIR           # a classic baseline
    gipc-fuse --pairs DIR --out NEW_DIR --save-maps MAPS_DIR   # + each fusion's decision map

Networks fuse under the rule of ``conf/fusion/default.yaml`` (:mod:`gipc.fusion`) unless ``--rule``
and the map flags say otherwise; baselines fuse as they are unless ``--rule map`` is given.
Outputs keep the sources' bit depth and kind (gray stays gray), appear whole or not at all, and
never replace an input. Large images go through the network in overlapping tiles (docs/paper.md
section 9). The network runs on the inference path of :mod:`gipc.inference` (``--precision``, ``--device``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Iterator, NoReturn

import torch
from tqdm import tqdm

from gipc.data.sources import SOURCE_NAME, group_sources
from gipc.decision import MapSettings, map_image
from gipc.files import OutputExistsError, check_output_folder, check_writable
from gipc.fusion import RULES, Fusion, default_rule
from gipc.imaging import check_output_format, read_matching, write_image
from gipc.inference import PRECISIONS, choose_path, prepare
from gipc.pretrained import load_generator, shipped_generator
from gipc.tiling import Fuser, tiled

AUTO_TILE_PIXELS = 1024 * 1024
"""Above this many pixels the network runs tiled: untiled it needs about 2 KB per pixel."""
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64
"""overlap // 4 = 16 covers the generator's receptive radius (8) twice, so tiling is exact."""


class FuseInputError(ValueError):
    """Sources or an output location the fuse command cannot work with."""


@dataclass(frozen=True)
class Job:
    """One fusion: sources in focus order into ``output`` (and its decision map into ``map_output``)."""

    sources: tuple[Path, ...]
    output: Path
    map_output: Path | None = None


def fuse_images(fuse: Fusion | Fuser, images: list[torch.Tensor]) -> torch.Tensor:
    """Fuse (C, H, W) sources in [0, 1]: under a :class:`~gipc.fusion.Fusion`'s rule, or a plain luminance
    fuser's direct output (in turn for a sequence, colour through YCbCr)."""
    return (fuse if isinstance(fuse, Fusion) else Fusion(fuse)).fuse(images)


def auto_tiled(fuse_y: Fuser, pixels: int, tile: int | None, overlap: int) -> Fuser:
    """``fuse_y`` tiled by ``tile`` (0: never), or by :data:`DEFAULT_TILE` above :data:`AUTO_TILE_PIXELS` when None."""
    if tile is None:
        tile = DEFAULT_TILE if pixels > AUTO_TILE_PIXELS else 0
    return tiled(fuse_y, tile, overlap) if tile else fuse_y


def plan_jobs(sources: list[Path], pairs: Path | None, out: Path, overwrite: bool, maps: Path | None = None) -> list[Job]:
    """Jobs for explicit sources (``out`` a file, or a folder) or for a folder of groups (``out`` a folder).

    Checked before any fusion: no output replaces an input, the output folder is not the
    ``pairs`` folder nor holds it, and an existing output file or a non-empty output folder needs
    ``overwrite``; the same for the ``maps`` folder, which gets ``<output stem>-map.png`` per job.
    """
    out_is_file = bool(out.suffix) and not out.is_dir()
    if pairs is not None:
        if sources:
            raise FuseInputError("give either source files or --pairs DIR, not both")
        if out_is_file:
            raise FuseInputError(f"{out}: --pairs writes one image per group; give an output folder")
        jobs = [Job(group, out / f"{name}-fused.png") for name, group in group_sources(pairs)]
    elif len(sources) < 2:
        raise FuseInputError("give two or more source images (in focus order), or --pairs DIR")
    elif out_is_file:
        check_output_format(out)
        jobs = [Job(tuple(sources), out)]
    else:
        match = SOURCE_NAME.match(sources[0].stem)
        jobs = [Job(tuple(sources), out / f"{match['name'] if match else sources[0].stem}-fused.png")]
    if not out_is_file:
        check_output_folder(out, overwrite, [pairs] if pairs is not None else [])
    if maps is not None:
        if maps.suffix and not maps.is_dir():
            raise FuseInputError(f"--save-maps {maps}: give a folder; each fusion's map is written into it")
        check_output_folder(maps, overwrite, [pairs] if pairs is not None else [])
        jobs = [replace(job, map_output=maps / f"{job.output.stem.removesuffix('-fused')}-map.png") for job in jobs]
    inputs = tuple(p for job in jobs for p in job.sources)
    outputs = [path for job in jobs for path in (job.output, job.map_output) if path is not None]
    if len({path.resolve() for path in outputs}) < len(outputs):
        raise FuseInputError("two outputs would share a file name; give --save-maps a folder apart from --out")
    for path in outputs:
        check_writable(path, overwrite, inputs)
    return jobs


def run_jobs(jobs: list[Job], fusion: Fusion, tile: int | None, overlap: int, overwrite: bool) -> Iterator[Path]:
    """Fuse and write each job (and its map), yielding each output once it is complete on disk."""
    inputs = tuple(p for job in jobs for p in job.sources)
    for job in tqdm(jobs, desc="fusing", unit="image", disable=len(jobs) < 2, file=sys.stderr):
        images = read_matching(job.sources)
        height, width = images[0].pixels.shape[1:]
        tiled_fusion = replace(fusion, net=auto_tiled(fusion.net, height * width, tile, overlap))
        with torch.inference_mode():
            fused = tiled_fusion([image.pixels.unsqueeze(0) for image in images])
        write_image(job.output, fused.image[0], max(i.bit_depth for i in images), overwrite=overwrite, protected=inputs)
        if job.map_output is not None and fused.weights is not None:
            write_image(job.map_output, map_image(fused.weights)[0], 8, overwrite=overwrite, protected=inputs)
        yield job.output


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    rule, settings = default_rule()
    parser = _Parser(prog="gipc-fuse", description="Fuse multi-focus images with GIPC-GAN or a classic baseline.")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--ckpt", type=Path, help="a run's Lightning checkpoint or a gipc-export file (default: the shipped model)")
    model.add_argument("--method", help="classic baseline instead of the network (see gipc.baselines)")
    parser.add_argument("sources", nargs="*", type=Path, help="registered source images, in focus order")
    parser.add_argument("--pairs", type=Path, help="folder of <name>-A/<name>-B[/-C...] files or A/, B/ subfolders")
    parser.add_argument("--out", type=Path, required=True, help="output file, or a new folder")
    parser.add_argument("--rule", choices=RULES, help=f"direct: the network's own image (the paper's); map: each pixel copied from the source a decision map picks (default: {rule} for networks, direct for --method)")
    maps = parser.add_argument_group("decision map (--rule map; defaults from conf/fusion/default.yaml)")
    for field in fields(MapSettings):
        default = getattr(settings, field.name)
        maps.add_argument(f"--{field.name.replace('_', '-')}", type=type(default), default=default, help=f"default {default}")
    parser.add_argument("--save-maps", type=Path, metavar="DIR", help="also write each fusion's decision map (8-bit PNG, white = first source) into this new folder")
    parser.add_argument("--tile", type=int, help=f"tile size for the network; 0 = never (default: {DEFAULT_TILE} above {AUTO_TILE_PIXELS} px)")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap in pixels (default %(default)s)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the network runs")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="network precision; auto: bf16 where the hardware computes it natively (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    return parser


def _fusion(args: argparse.Namespace) -> Fusion:
    """The fusion the arguments ask for; its first output line names the rule and the network's path."""
    settings = MapSettings(**{field.name: getattr(args, field.name) for field in fields(MapSettings)})
    if args.method is not None:
        if args.tile is not None:
            raise FuseInputError("--tile applies to the network only; baselines fuse whole images")
        if args.precision != "auto":
            raise FuseInputError("--precision applies to the network only; baselines compute in fp32")
        from gipc.baselines import get_baseline

        fusion = Fusion(get_baseline(args.method), args.rule or "direct", settings)
        print(f"gipc-fuse: {fusion.describe()}; method {args.method}", file=sys.stderr)
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise FuseInputError("--device cuda: no CUDA device is available here; use --device cpu")
        path = choose_path(None if args.device == "auto" else args.device, args.precision)
        network = prepare(load_generator(args.ckpt) if args.ckpt is not None else shipped_generator(), path)
        fusion = network.fusion(args.rule, settings)
        print(f"gipc-fuse: {fusion.describe()}; network {args.ckpt or 'shipped with gipc'}; {path.describe()}", file=sys.stderr)
    if args.save_maps is not None and fusion.rule == "direct" and fusion.head == "image":
        raise FuseInputError("--save-maps needs a rule that makes a map: add --rule map")
    return fusion


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gipc-fuse``: 0 on success, 2 on a user error, 130 when interrupted."""
    args = _parser().parse_args(argv)
    written: list[Path] = []
    jobs: list[Job] = []
    try:
        if args.tile is not None and (args.tile < 0 or args.tile and not 0 <= args.overlap < args.tile):
            raise FuseInputError(f"--tile {args.tile} --overlap {args.overlap}: need tile >= 0 and 0 <= overlap < tile")
        jobs = plan_jobs(args.sources, args.pairs, args.out, args.overwrite, args.save_maps)
        fusion = _fusion(args)
        for output in run_jobs(jobs, fusion, args.tile, args.overlap, args.overwrite):
            written.append(output)
    except (ValueError, OutputExistsError) as err:
        print(f"gipc-fuse: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gipc-fuse: interrupted; {len(written)} of {len(jobs)} outputs written whole, no partial files", file=sys.stderr)
        return 130
    maps = f" and their maps to {args.save_maps}" if args.save_maps is not None else ""
    print(f"gipc-fuse: wrote {len(written)} image(s) to {args.out}{maps}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
