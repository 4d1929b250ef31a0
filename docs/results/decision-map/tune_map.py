"""How conf/fusion/default.yaml's map settings were chosen: a grid scored on held-out pairs only.

    python docs/results/decision-map/tune_map.py --grid window=5,7,11 clean=7,15,31 min_region=0,0.003,0.01

Tuning sets, none of them Lytro (which is never read here):
- ``synthetic``: the shipped model's three validation photos (its recipe, ``experiment=cpu_finetune
  'data.source.photo_dirs=[../shared/data/photos/kodak]'``, seed 42: astronaut, kodim01, kodim06; never
  trained on and never the test photos), each synthesized by equations 18-19 with the held-out recipe, 3 seeds x (Gaussian,
  pillbox) defocus = 18 pairs with ground truth;
- ``layered``: the same photos with hard object-like maps (region competition, the MFI-DRC
  stand-in, and random blobs), defocused with the blur of the near layer spreading over the far
  one (:func:`gipc.data.synthesis.defocus_spread`), 3 seeds x 2 maps x 2 blurs = 36 pairs with
  ground truth: the boundaries real pairs have and eq. 18-19 pairs lack;
- ``thin``: the same photos and defocus spread with maps of blobs crossed by 5 px bars (the
  ``bars`` source: twigs, wires, a fence in front) and their inverses (the far layer seen through
  thin gaps), 3 seeds x 2 polarities x 2 blurs = 36 pairs: the structures a clean-up can erase;
- ``strong``: the layered set's scenes under strong defocus (sigma ``STRONG_SIGMA``, 6-10 px instead
  of the recipe's 2-4), 36 pairs: wide blur spreading over a boundary, where focus measures in wide
  windows see the near layer's edge from the far side (added in the tenth round);
- ``exposure``: the synthetic, layered and thin pairs again with one source's exposure off by a
  few per cent (gain 0.95, 0.97, 1.03 or 1.05 on A or on B in turn), as in photos taken one after
  another (the grayscale pairs' means differ by up to 5 %): scored by map accuracy against the true
  map, since the ground truth has one exposure and the sources two;
- ``grayscale``: the 10 classic grayscale pairs (Q^AB/F; no ground truth).

``--photos test`` builds the synthetic, layered and thin sets from the recipe's five *test* photos
instead, to confirm a choice on pairs it was not made on. ``--precision`` runs the networks as
``gipc-fuse --precision`` does (``int8``: benchmarks/README.md).

The shipped generator (or ``--ckpt``'s) fuses each pair once (default inference path); every
grid point re-runs only the map. With several generators (``--ckpt shipped outputs/quick/runs/<time>/checkpoints/last.ckpt``)
each grid point is scored under each, and the rule ranks over every generator's criteria. The winner is the best mean rank over synthetic PSNR, layered PSNR, thin PSNR,
strong PSNR, exposure map accuracy and grayscale Q^AB/F (ties: grayscale Q^AB/F), a rule fixed before the grid
was run (rounds 1-3 ranked the first two and grayscale, rounds 4-5 the first three and grayscale,
rounds 6-9 added exposure, round 10 strong: each added set came with the round that added it), among the settings that lose at most
``GRAYSCALE_TOLERANCE`` grayscale Q^AB/F against conf/fusion/default.yaml's: all criteria but
grayscale are synthetic, so a rank alone would trade the only real pairs for synthetic PSNR (added in
the fifth round, after a one-pixel closeness window won on rank while losing 0.005 there); with
several generators a setting must keep that floor under each. The tenth round's pick, first under
the shipped generator alone, lost on nearly every set under a weaker one: score candidates under a
weaker generator too (the quick run's, ``python gipc/run.py``) before adopting one.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from dataclasses import replace
from functools import partial, reduce
from pathlib import Path
from typing import Sequence

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from scipy.stats import rankdata

import gipc.experiment  # noqa: F401  (registers the resolvers conf/ uses)
from gipc.configs import CONF_DIR
from gipc.data.datamodule import FusionDataModule
from gipc.data.datasets import PairFolder
from gipc.data.decision_maps import make_map
from gipc.data.scene import Scene, held_out_scene, scene_generator
from gipc.data.synthesis import DefocusRecipe, defocus_spread, disk_blur, gaussian_blur, uniform
from gipc.decision import MapSettings
from gipc.color import luma
from gipc.fusion import Fusion, default_rule
from gipc.inference import PRECISIONS, InferenceGenerator, choose_path, prepare
from gipc.metrics import map_accuracy, psnr, qabf
from gipc.pretrained import load_generator, shipped_generator

GRAYSCALE = CONF_DIR.parents[1] / "shared" / "data" / "grayscale"
KODAK = CONF_DIR.parents[1] / "shared" / "data" / "photos" / "kodak"
SEEDS = (1, 2, 3)
GRAYSCALE_TOLERANCE = 0.001
CRITERIA = ("synthetic PSNR", "layered PSNR", "thin PSNR", "strong PSNR", "exposure map accuracy", "grayscale Q^AB/F")
"""What the rule ranks, per generator; grayscale last (the floor and the tie-break read it)."""
EXPOSURE_GAINS = (0.95, 0.97, 1.03, 1.05)
STRONG_SIGMA = (6.0, 10.0)


def map_options(map_source: str, recipe: DefocusRecipe, generator: torch.Generator) -> dict[str, int]:
    """``make_map``'s options for ``map_source``: a blob size drawn from the recipe's range for ``blobs``."""
    if map_source != "blobs":
        return {}
    return {"blob_size": recipe.draw_blob_size(generator)}


def layered_scene(
    name: str, image: torch.Tensor, recipe: DefocusRecipe, map_source: str, disk: bool, seed: int, inverse: bool = False
) -> Scene:
    """A held-out pair with a hard map (``inverse``: its complement is the near layer) and the defocus
    spread of real pairs (sigma drawn from ``recipe``)."""
    generator = scene_generator(seed, f"{name}:{map_source}")
    focus_map = make_map(map_source, image, generator, **map_options(map_source, recipe, generator))
    focus_map = 1.0 - focus_map if inverse else focus_map
    blur = partial(disk_blur if disk else gaussian_blur, sigma=uniform(recipe.sigma, generator))
    a, b = defocus_spread(image[None], focus_map[None], blur)
    label = f"{map_source}{'-inverse' if inverse else ''}"
    return Scene(f"{name}-{label}-{'disk' if disk else 'gauss'}-{seed}", a[0], b[0], image, focus_map)


def exposed(scenes: list[Scene]) -> list[Scene]:
    """``scenes`` with one source's exposure scaled: the gains of ``EXPOSURE_GAINS`` in turn, on A for four scenes, then on B for four."""
    out = []
    for i, scene in enumerate(scenes):
        gain = EXPOSURE_GAINS[i % len(EXPOSURE_GAINS)]
        a, b = (scene.a * gain).clamp(0.0, 1.0), scene.b
        if i % (2 * len(EXPOSURE_GAINS)) >= len(EXPOSURE_GAINS):
            a, b = scene.a, (scene.b * gain).clamp(0.0, 1.0)
        out.append(Scene(f"{scene.name}-gain{gain}", a, b, scene.gt, scene.focus_map))
    return out


def shipped_recipe_data() -> FusionDataModule:
    """The data module of the shipped model's recipe, set up: its photos, split and held-out recipe."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=cpu_finetune", f"data.source.photo_dirs=[{KODAK}]"])
    data: FusionDataModule = instantiate(cfg.data, batches_per_step=cfg.model.d_steps_per_g_step + 1)
    data.setup("fit")
    return data


def tuning_sets(photos: str = "val", sigma: Sequence[float] | None = None) -> dict[str, list[Scene]]:
    """The sets of the module docstring, from the recipe's validation (``val``) or ``test`` photos;
    ``sigma``: another range for the defocus blur's sigma than the held-out recipe's."""
    data = shipped_recipe_data()
    recipe = data.source.held_out_recipe if sigma is None else replace(data.source.held_out_recipe, sigma=tuple(sigma))
    pool = {scene.name: scene.gt for scene in (data.val_scenes if photos == "val" else data.test_scenes)}  # each photo, all in focus
    names = list(pool)

    def layered(recipe: DefocusRecipe) -> list[Scene]:
        return [
            layered_scene(name, pool[name], recipe, source, disk, seed)
            for seed in SEEDS for source in ("region_competition", "blobs") for disk in (False, True) for name in names
        ]

    sets = {
        "synthetic": [
            held_out_scene(name, pool[name], replace(recipe, disk=disk), seed)
            for seed in SEEDS for disk in (0.0, 1.0) for name in names
        ],
        "layered": layered(recipe),
        "thin": [
            layered_scene(name, pool[name], recipe, "bars", disk, seed, inverse)
            for seed in SEEDS for inverse in (False, True) for disk in (False, True) for name in names
        ],
    }
    return sets | {
        "strong": layered(replace(recipe, sigma=STRONG_SIGMA)),
        "exposure": exposed([scene for scenes in sets.values() for scene in scenes]),
        "grayscale": list(PairFolder(GRAYSCALE)),
    }


def score(settings: MapSettings | None, cached: list[tuple[Scene, torch.Tensor]], head: str = "image") -> tuple[float, float, float]:
    """Mean Q^AB/F, PSNR (where ground truth exists) and map accuracy (where a true map exists and
    the rule makes a map) of the map rule (None: the direct rule) over the cached network outputs
    (a map head's: its weights)."""
    q, p, accuracy = [], [], []
    for scene, fused_y in cached:
        a, b = scene.a[None], scene.b[None]
        cached_net = lambda ya, yb: fused_y  # noqa: E731  (the network's output, computed once)
        fused = Fusion(cached_net, "direct" if settings is None else "map", settings, head)([a, b])
        q.append(float(qabf(a, b, fused.image)))
        if scene.gt is not None:
            p.append(float(psnr(fused.image, scene.gt[None])))
        if scene.focus_map is not None and fused.weights is not None:
            accuracy.append(float(map_accuracy(fused.weights[:, :1], scene.focus_map[None])))
    nan = float("nan")
    return statistics.fmean(q), statistics.fmean(p) if p else nan, statistics.fmean(accuracy) if accuracy else nan


def mean_ranks(rows: list[tuple[float, ...]]) -> list[float]:
    """Each row's mean rank (1 = best) over its criteria, higher values better; equal values share
    their mean rank (a setting that makes no difference, e.g. ``region_margin`` at ``min_region=0``)."""
    ranks = [rankdata([-row[c] for row in rows], method="average") for c in range(len(rows[0]))]
    return [statistics.fmean(float(r[i]) for r in ranks) for i in range(len(rows))]


def parse(text: str, default: object) -> object:
    """A grid value as its setting's type (``true``/``false`` for a switch; ``:`` between a list's
    values: ``focus_window=5:11:21,11``)."""
    if isinstance(default, tuple):
        return tuple(type(default[0])(part) for part in text.split(":"))
    kind = type(default)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise SystemExit(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    return kind(text)


def load_network(spec: str, precision: str = "auto") -> InferenceGenerator:
    """``shipped``: the generator gipc ships; otherwise a run's checkpoint or a gipc-export file; on
    the default inference path at ``precision`` (as ``gipc-fuse --precision``)."""
    return prepare(shipped_generator() if spec == "shipped" else load_generator(Path(spec)), choose_path(None, precision))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2", help="map settings to vary; the rest from conf/fusion/default.yaml")
    parser.add_argument("--photos", choices=("val", "test"), default="val", help="the recipe's photos the synthetic sets are made from (default: val)")
    parser.add_argument("--sigma", type=float, nargs=2, metavar=("LO", "HI"), help="the defocus blur's sigma range (px) of the synthetic, layered and thin sets instead of the held-out recipe's")
    parser.add_argument("--ckpt", nargs="+", default=["shipped"], metavar="GENERATOR",
                        help="generators to score the map under: 'shipped' (default), a run's checkpoint or a gipc-export file; "
                             "several are ranked together (one head kind; a map head's weights are cleaned with its head_map settings)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="the networks' precision, as gipc-fuse's (default: auto)")
    args = parser.parse_args()
    networks = {spec: load_network(spec, args.precision) for spec in args.ckpt}
    heads = {network.head for network in networks.values()}
    if len(heads) > 1:
        raise SystemExit("tune_map.py: --ckpt takes generators of one head kind (image or weights), got both")
    head = heads.pop()
    sets = tuning_sets(args.photos, args.sigma)
    cached = {}
    with torch.inference_mode():
        for spec, network in networks.items():
            net = network.weight_y if head == "weights" else network.fuse_y
            cached[spec] = {name: [(s, reduce(net, [luma(s.a[None]), luma(s.b[None])])) for s in scenes] for name, scenes in sets.items()}
    _, base = default_rule(head)
    score_head = partial(score, head=head)
    keys = [g.partition("=")[0] for g in args.grid]
    values = [[parse(v, getattr(base, k)) for v in g.partition("=")[2].split(",")] for k, g in zip(keys, args.grid)]
    floors = {spec: score_head(base, sets_out["grayscale"])[0] - GRAYSCALE_TOLERANCE for spec, sets_out in cached.items()}
    labels, rows = [], []
    print(", ".join(f"{len(scenes)} {name}" for name, scenes in sets.items()) + f" pairs ({args.photos} photos)", flush=True)
    print("| settings | synthetic Q^AB/F | synthetic PSNR | layered Q^AB/F | layered PSNR | thin Q^AB/F | thin PSNR | strong Q^AB/F | strong PSNR | exposure map accuracy | grayscale Q^AB/F |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for combo in [None, *itertools.product(*values)]:
        settings = None if combo is None else replace(base, **dict(zip(keys, combo)))
        label = "direct" if settings is None else " ".join(f"{k}={getattr(settings, k)}" for k in keys) or "default"
        row: list[tuple[float, ...]] = []  # CRITERIA under each generator
        for spec, sets_out in cached.items():
            (qs, ps, _), (ql, pl, _), (qt, pt, _), (qb, pb, _), (_, _, ae), (qg, _, _) = (
                score_head(settings, sets_out[name]) for name in ("synthetic", "layered", "thin", "strong", "exposure", "grayscale")
            )
            which = f" ({spec})" if len(cached) > 1 else ""
            print(f"| {label}{which} | {qs:.4f} | {ps:.2f} | {ql:.4f} | {pl:.2f} | {qt:.4f} | {pt:.2f} | {qb:.4f} | {pb:.2f} | {ae:.4f} | {qg:.4f} |", flush=True)
            row.append((ps, pl, pt, pb, ae, qg))
        if settings is not None:
            labels.append(label)
            rows.append(row)
    if rows:
        ranks = mean_ranks([sum(row, ()) for row in rows])
        grayscale = [[criteria[-1] for criteria in row] for row in rows]
        eligible = [i for i in range(len(rows)) if all(q >= floor for q, floor in zip(grayscale[i], floors.values()))] or range(len(rows))
        best = min(eligible, key=lambda i: (ranks[i], -grayscale[i][0]))
        under = f" under each of {len(cached)} generators" if len(cached) > 1 else ""
        floor_text = ", ".join(f"{floor:.4f}" for floor in floors.values())
        print(f"\nbest mean rank over ({', '.join(CRITERIA)}){under} among grayscale Q^AB/F >= {floor_text}: "
              f"{labels[best]} ({ranks[best]:.2f})")


if __name__ == "__main__":
    main()
