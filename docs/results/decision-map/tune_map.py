"""How conf/fusion/default.yaml's map settings were chosen: a grid scored on held-out pairs only.

    python docs/results/decision-map/tune_map.py --run-dir outputs/cpu_finetune/<any run> --grid window=5,7,11 focus=0,1 clean=7,15,31

Tuning pairs: the run's three validation photos (the first ``val_count`` held-out photos of
``experiment=cpu_finetune 'data.photo_dirs=[../shared/data/photos/kodak]'``, never trained on and
never the test photos), each synthesized with 3 seeds x (Gaussian, pillbox) defocus = 18 pairs with
ground truth (PSNR, Q^AB/F), and the 10 grayscale pairs (Q^AB/F). The shipped generator fuses
each pair once (default inference path); every grid point then only re-runs the map. Lytro is
never read here.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from dataclasses import replace
from functools import reduce
from pathlib import Path

import torch

from gipc.configs import CONF_DIR
from gipc.data.datasets import PairFolder
from gipc.data.photos import photo_pool
from gipc.data.scene import Scene, held_out_scene
from gipc.decision import MapSettings
from gipc.fusion import Fusion, default_rule, luma
from gipc.metrics import psnr, qabf
from gipc.pretrained import pretrained
from gipc.rundir import run_datamodule

GRAYSCALE = CONF_DIR.parents[1] / "shared" / "data" / "grayscale"


def tuning_pairs(run_dir: Path) -> list[Scene]:
    data = run_datamodule(run_dir)
    pool = photo_pool(data.embedded_photos, data.photo_dirs, data.embedded_options["max_side"])
    recipe = data.recipes[1]
    return [
        held_out_scene(scene.name, pool[scene.name], replace(recipe, disk=disk), seed)
        for seed in (1, 2, 3) for disk in (0.0, 1.0) for scene in data.val_scenes
    ]


def score(settings: MapSettings | None, cached: list[tuple[Scene, torch.Tensor]]) -> tuple[float, float]:
    """Mean Q^AB/F and mean PSNR (where ground truth exists) of the map rule (None: the network's direct luminance)."""
    q, p = [], []
    for scene, fused_y in cached:
        a, b = scene.a[None], scene.b[None]
        cached_net = lambda ya, yb: fused_y  # noqa: E731  (the network's output, computed once)
        image = Fusion(cached_net, "direct" if settings is None else "map", settings)([a, b]).image
        q.append(float(qabf(a, b, image)))
        if scene.gt is not None:
            p.append(float(psnr(image, scene.gt[None])))
    return statistics.fmean(q), statistics.fmean(p) if p else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a cpu_finetune run dir (its config.yaml rebuilds the held-out photos)")
    parser.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2", help="map settings to vary; the rest from conf/fusion/default.yaml")
    args = parser.parse_args()
    network = pretrained()
    sets = {"synthetic": tuning_pairs(args.run_dir), "grayscale": list(PairFolder(GRAYSCALE))}
    cached = {}
    with torch.inference_mode():
        for name, scenes in sets.items():
            cached[name] = [(s, reduce(network.fuse_y, [luma(s.a[None]), luma(s.b[None])])) for s in scenes]
    _, base = default_rule()
    keys = [g.partition("=")[0] for g in args.grid]
    values = [[type(getattr(base, k))(v) for v in g.partition("=")[2].split(",")] for k, g in zip(keys, args.grid)]
    print("| settings | synthetic Q^AB/F | synthetic PSNR | grayscale Q^AB/F |\n|---|---|---|---|")
    for combo in [None, *itertools.product(*values)]:
        settings = None if combo is None else replace(base, **dict(zip(keys, combo)))
        (qs, ps), (qg, _) = score(settings, cached["synthetic"]), score(settings, cached["grayscale"])
        label = "direct" if settings is None else " ".join(f"{k}={getattr(settings, k)}" for k in keys) or "default"
        print(f"| {label} | {qs:.4f} | {ps:.2f} | {qg:.4f} |", flush=True)


if __name__ == "__main__":
    main()
