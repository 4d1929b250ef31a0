"""How the default map rule and the classics fuse focus sequences (three sources, or ``--layers N``),
where the tuning sets hold pairs only.

    python docs/results/decision-map/sequence_check.py [--layers N]

Each held-out test photo of the shipped recipe becomes layered scenes of N depths: a near layer
(a ``region_competition`` or ``blobs`` map, as in ``tune_map.py``'s layered set), the rest split
into N - 1 layers by further ``blobs`` maps, each taking an equal share of what is left (for three:
a middle and a far layer). Source k is sharp on layer k; a layer d steps away from it is blurred by
d times one sigma drawn from the held-out recipe (Gaussian or disk), and each nearer layer's blur
spreads over the layers behind it (back-to-front compositing, as
:func:`gipc.data.synthesis.defocus_spread` does for two). Three seeds, both map sources and both
blur kernels: 60 sequences. The network fuses all N at once under the map rule (one map over
all, as ``gipc-fuse frame*.jpg``), in turn under the direct rule; the classics fuse in turn.
Scored by PSNR against the photo, by Q^AB/F over every source (as ``gipc-eval`` scores a sequence)
and by the map's accuracy against the true layer of each pixel. No setting is chosen here.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from tune_map import SEEDS, map_options, shipped_recipe_data

from gipc.baselines import BASELINES
from gipc.data.decision_maps import make_map
from gipc.data.scene import scene_generator
from gipc.data.synthesis import DefocusRecipe, disk_blur, gaussian_blur, uniform
from gipc.fuse import fuse_images
from gipc.metrics import psnr
from gipc.metrics.qabf import sources_qabf
from gipc.pretrained import pretrained

CLASSICS = ("laplacian_energy", "gff", "laplacian_pyramid", "gfdf", "dsift")


def layer_masks(name: str, image: torch.Tensor, recipe: DefocusRecipe, map_source: str, seed: int, layers: int) -> list[torch.Tensor]:
    """(1, H, W) hard masks of ``layers`` layers, near to far; they partition the frame."""
    generator = scene_generator(seed, f"{name}:{map_source}:sequence")
    near = (make_map(map_source, image, generator, **map_options(map_source, recipe, generator)) > 0.5).float()
    masks, rest = [near], 1 - near
    for left in range(layers - 1, 1, -1):  # each of the ``left`` layers behind takes an equal share of the rest
        split = (make_map("blobs", image, generator, fraction=1 / left, **map_options("blobs", recipe, generator)) > 0.5).float()
        masks.append(rest * split)
        rest = rest * (1 - split)
    return [*masks, rest]


def sequence(image: torch.Tensor, masks: list[torch.Tensor], sigma: float, disk: bool) -> list[torch.Tensor]:
    """The (C, H, W) sources, source k sharp on layer k: composited far to near, each layer blurred by
    sigma per depth step from k, a blurred layer's coverage blurred alike (its spread)."""
    blur = disk_blur if disk else gaussian_blur
    layers = len(masks)
    sources = []
    for k in range(layers):
        out = blur(image[None], sigma * (layers - 1 - k))[0]  # the far layer fills the frame behind the nearer ones
        for j in reversed(range(layers - 1)):
            over, cover = (blur(x[None], sigma * abs(k - j))[0] for x in (masks[j] * image, masks[j]))
            out = over + (1 - cover) * out
        sources.append(out.clamp(0.0, 1.0))
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=3, help="sources (and depth layers) of each sequence")
    parser.add_argument("--classics", default=",".join(CLASSICS), help="classic baselines fused in turn beside the map")
    args = parser.parse_args()
    layers, classics = args.layers, args.classics.split(",")
    if layers < 2:
        parser.error("--layers takes 2 or more")
    data = shipped_recipe_data()
    recipe = data.source.held_out_recipe
    network = pretrained()
    fusion, direct = network.fusion(), network.fusion("direct")
    psnrs: dict[str, list[float]] = {}
    qs: dict[str, list[float]] = {}
    accuracy: list[float] = []
    with torch.inference_mode():
        for seed in SEEDS:
            for map_source in ("region_competition", "blobs"):
                for disk in (False, True):
                    for scene in data.test_scenes:
                        image = scene.gt
                        masks = layer_masks(scene.name, image, recipe, map_source, seed, layers)
                        sigma = uniform(recipe.sigma, scene_generator(seed, f"{scene.name}:{map_source}:sigma"))
                        sources = sequence(image, masks, sigma, disk)
                        batch = [source[None] for source in sources]
                        fused = fusion(batch)
                        layer = sum(k * mask for k, mask in enumerate(masks))[0]
                        accuracy.append(float((fused.weights[0].argmax(0) == layer).float().mean()))
                        outputs = {"map": fused.image[0], "direct": direct.fuse(sources)}
                        outputs |= {c: fuse_images(BASELINES[c], sources) for c in classics}
                        for key, output in outputs.items():
                            psnrs.setdefault(key, []).append(float(psnr(output[None], image[None])))
                            qs.setdefault(key, []).append(float(sources_qabf(batch, output[None])[0]))
    count = len(accuracy)
    print(f"{count} sequences of {layers} (test photos, the held-out recipe's blur); {fusion.describe()}")
    print(f"map accuracy {statistics.fmean(accuracy):.4f}")
    print("| method | PSNR | Q^AB/F over the sources | sequences where the map is above it: PSNR, Q^AB/F |")
    print("|---|---|---|---|")
    for key in psnrs:
        above = "" if key == "map" else " | " + ", ".join(
            str(sum(m > o for m, o in zip(scores["map"], scores[key]))) for scores in (psnrs, qs)
        )
        print(f"| {key} | {statistics.fmean(psnrs[key]):.2f} | {statistics.fmean(qs[key]):.4f}" + (above or " |") + " |")


if __name__ == "__main__":
    main()
