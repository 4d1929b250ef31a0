"""How the default map rule and the classics hold up when both sources carry sensor noise.

    python docs/results/decision-map/noise_check.py [--sigma 0 0.005 0.01 0.02]

The pairs are the synthetic, layered and thin sets of ``tune_map.py`` made from the recipe's
five *test* photos. Each source gets its own Gaussian noise of standard deviation ``sigma``
(intensities in [0, 1]), drawn from one seed. PSNR is measured against the clean ground truth. No
setting is chosen here: the check reads only pairs that were held out.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from tune_map import tuning_sets

from gipc.baselines import BASELINES
from gipc.color import fuse_color
from gipc.metrics import map_accuracy, psnr, qabf
from gipc.pretrained import pretrained

CLASSICS = ("laplacian_energy", "gff", "laplacian_pyramid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.005, 0.01, 0.02], help="noise standard deviations")
    args = parser.parse_args()
    fusion = pretrained().fusion()
    sets = tuning_sets("test")
    scenes = sets["synthetic"] + sets["layered"] + sets["thin"]
    print(f"{len(scenes)} pairs (test photos); {fusion.describe()}")
    print("| noise sigma | map PSNR | map accuracy | map Q^AB/F | " + " | ".join(f"{c} PSNR" for c in CLASSICS) + " | laplacian_energy Q^AB/F |")
    print("|---" * (5 + len(CLASSICS)) + "|")
    for sigma in args.sigma:
        noise = torch.Generator().manual_seed(0)
        scores: dict[str, list[float]] = {key: [] for key in ("map", "accuracy", "map_q", *CLASSICS, "classic_q")}
        with torch.inference_mode():
            for scene in scenes:
                a, b = ((x + sigma * torch.randn(x.shape, generator=noise)).clamp(0.0, 1.0)[None] for x in (scene.a, scene.b))
                fused = fusion([a, b])
                scores["map"].append(float(psnr(fused.image, scene.gt[None])))
                scores["map_q"].append(float(qabf(a, b, fused.image)))
                scores["accuracy"].append(float(map_accuracy(fused.weights[:, :1], scene.focus_map[None])))
                for name in CLASSICS:
                    image = fuse_color(BASELINES[name], a, b)
                    scores[name].append(float(psnr(image, scene.gt[None])))
                    if name == "laplacian_energy":
                        scores["classic_q"].append(float(qabf(a, b, image)))
        mean = {key: statistics.fmean(values) for key, values in scores.items()}
        print(f"| {sigma} | {mean['map']:.2f} | {mean['accuracy']:.4f} | {mean['map_q']:.4f} | "
              + " | ".join(f"{mean[c]:.2f}" for c in CLASSICS) + f" | {mean['classic_q']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
