"""``gipc-figure``: each scene's sources and fused results side by side, with a zoomed crop of each.

    gipc-figure --sources path/to/lytro/triple --fused gipc=DIR --fused laplacian_energy=DIR2 --out fig.png
    gipc-figure --sources pairs/ --fused gipc=DIR --difference --out fig.png   # + each image's |Y - Y_A|
    gipc-figure --sources pairs/ --fused gipc=DIR --baselines gfdf,laplacian_energy --out fig.png   # classics fused here

The figure is :func:`gipc.figures.comparison_figure`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from gipc.baselines import BASELINES, get_baseline
from gipc.cli.common import Parser, doc_summary, guarded, say, step_bar
from gipc.data.sources import group_sources
from gipc.evaluate import check_apart, check_size, fused_files, listed, parse_fused
from gipc.files import check_writable
from gipc.figures import comparison_figure
from gipc.fusion import Fusion
from gipc.imaging import read_image, read_matching

PROG = "gipc-figure"
MIN_CROP = 8
"""Smallest zoomed crop: under it the zoom shows no more than the whole panel."""


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=doc_summary(__doc__))
    parser.add_argument("--sources", "--pairs", dest="sources", type=Path, required=True, help="folder of <scene>-A/-B[/-C...] sources (any layout gipc-fuse --pairs reads)")
    parser.add_argument("--fused", action="append", default=[], metavar="[NAME=]DIR", help="a method's fused images, by scene name (repeatable)")
    parser.add_argument("--baselines", default="", help="comma-separated classic methods to fuse here and show after the --fused ones, e.g. gfdf,laplacian_energy, or all")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--crop", type=int, default=96, help="side of the zoomed crop in pixels (default %(default)s; the image's side at most)")
    parser.add_argument("--difference", action="store_true",
                        help="a third row per scene: what each image changed of source A, |Y - Y_A| (black where a method copied A)")
    parser.add_argument("--palette", action="store_true",
                        help="256 colours instead of full RGB: a file about a quarter the size, to commit beside docs (smooth tones show bands)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (never an input)")
    args = parser.parse_args(argv)
    if args.crop < MIN_CROP:
        parser.error(f"--crop {args.crop}: the zoomed crop needs at least {MIN_CROP} px a side")
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out {args.out}: the figure is a PNG; name it <name>.png")

    def body() -> int:
        baselines = listed(args.baselines, BASELINES, "baseline", "--baselines")
        groups = group_sources(args.sources)
        names = [g for g, _ in groups]
        fused = {name: fused_files(names, folder, name) for name, folder in parse_fused(args.fused, None).items()}
        check_apart(fused, baselines)
        classics = {name: Fusion(get_baseline(name, steps=step_bar), "direct", None) for name in baselines}  # a sequence's frames fused in turn, as gipc-fuse --method does
        inputs = tuple(p for _, paths in groups for p in paths) + tuple(p for files in fused.values() for p in files.values())
        check_writable(args.out, args.overwrite, inputs)
        scenes = []
        what = "reading and fusing classics" if classics else "reading"
        for scene, paths in tqdm(groups, desc=what, unit="scene", disable=len(groups) < 2, leave=False, file=sys.stderr):
            panels = [(f"source {chr(ord('A') + i)}", image.pixels) for i, image in enumerate(read_matching(list(paths)))]
            sources = [pixels for _, pixels in panels]
            for name, files in fused.items():
                image = read_image(files[scene]).pixels
                check_size(files[scene], tuple(image.shape[1:]), scene, tuple(panels[0][1].shape[1:]), "fused")
                panels.append((name, image))
            panels += [(name, fusion.fuse(sources)) for name, fusion in classics.items()]
            scenes.append((scene, panels))
        comparison_figure(scenes, args.out, args.crop, difference=args.difference, progress=len(scenes) > 1, palette=args.palette)
        say(PROG, f"wrote {args.out}")
        return 0

    return guarded(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
