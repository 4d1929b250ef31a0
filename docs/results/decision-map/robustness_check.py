"""How the default map rule and the classics hold up under what the tuning sets lack: sensor noise,
misregistration and focus breathing.

    python docs/results/decision-map/robustness_check.py [--noise 0 0.005 0.01 0.02] [--shift 0.5 1 2 3] [--scale 1.005 1.01] [--gain 0.8 1.2] [--resize 0.5 2] [--sigma 1 2] [--align]

The pairs are the synthetic, layered and thin sets of ``tune_map.py`` made from the recipe's
five *test* photos. ``--noise``: each source gets its own Gaussian noise of that standard deviation
(intensities in [0, 1]), drawn from one seed; PSNR is measured against the clean ground truth.
``--shift``: source B moves by that many pixels right and half as many down (bilinear, sub-pixel
allowed), as in hand-held pairs. ``--scale``: B is magnified by that factor about the centre, as a
lens that breathes while it refocuses. ``--gain``: B's exposure scaled by that factor (clipped to
[0, 1]), as in photos taken one after another under changing light. ``--resize``: the whole pair,
its ground truth and true map resized by that factor (bicubic up, area down), as the same scenes
taken with a sensor of more or fewer pixels: objects, blur and every structure grow or shrink in
pixels while the map's windows stay as set; the truth still holds. ``--align``: every condition is
scored a second time with the pair registered first (:func:`gipc.align.register`, as ``gipc-fuse
--align``), truth and map cropped to the box both sources cover. Warps and gains leave no single ground truth (each source's
focused part sits in its own frame), so they are scored by Q^AB/F and by map accuracy against the
true map in A's frame, after cropping a margin every warp leaves valid. No setting is chosen here:
the check reads only pairs that were held out. ``--sigma LO HI`` builds the pairs with a defocus
blur of another strength than the held-out recipe's (sigma 2-4 px), milder or stronger than the
tuning pairs'.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from tune_map import tuning_sets

from gipc.align import register
from gipc.baselines import BASELINES
from gipc.color import fuse_color
from gipc.metrics import map_accuracy, psnr, qabf
from gipc.pretrained import pretrained

CLASSICS = ("laplacian_energy", "gff", "laplacian_pyramid")
MARGIN = 8  # px cropped from every side of warped pairs: more than any warp here moves a border pixel

Change = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
Frame = Callable[[torch.Tensor], torch.Tensor]


class Condition(NamedTuple):
    """One row: what is done to the sources, and whether the pair's ground truth still holds (PSNR)."""

    name: str
    value: float
    apply: Change
    keeps_truth: bool
    frame: Frame = lambda x: x
    """Done to the sources, the ground truth and the true map alike, before ``apply``."""
    reach: Callable[[int, int], float] = lambda height, width: 0.0
    """How far (px) ``apply`` moves a pixel of an image that size at most: more than ``MARGIN`` is cropped too."""


def noisy(sigma: float) -> Condition:
    def apply(a: torch.Tensor, b: torch.Tensor, noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple((x + sigma * torch.randn(x.shape, generator=noise)).clamp(0.0, 1.0) for x in (a, b))

    return Condition("noise sigma", sigma, apply, keeps_truth=True)


def warped(name: str, value: float, theta: Callable[[int, int], torch.Tensor], reach: Callable[[int, int], float]) -> Condition:
    """B resampled through the affine map ``theta(height, width)`` (normalised coordinates, as ``affine_grid`` takes)."""

    def apply(a: torch.Tensor, b: torch.Tensor, noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = b.shape[-2:]
        grid = F.affine_grid(theta(height, width)[None], list(b.shape), align_corners=False)
        return a, F.grid_sample(b, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return Condition(name, value, apply, keeps_truth=False, reach=reach)


def shifted(pixels: float) -> Condition:
    # Sampling B at x - dx shows its content dx px to the right; normalised units are 2 / size per pixel.
    return warped("shift (px)", pixels, lambda h, w: torch.tensor([[1.0, 0.0, -2.0 * pixels / w], [0.0, 1.0, -pixels / h]]), lambda h, w: math.hypot(pixels, pixels / 2))


def scaled(factor: float) -> Condition:
    return warped("scale", factor, lambda h, w: torch.tensor([[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]]), lambda h, w: abs(factor - 1) * math.hypot(h, w) / 2)


def exposed(gain: float) -> Condition:
    def apply(a: torch.Tensor, b: torch.Tensor, noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return a, (b * gain).clamp(0.0, 1.0)

    return Condition("B's gain", gain, apply, keeps_truth=False)


def resized(factor: float) -> Condition:
    def frame(x: torch.Tensor) -> torch.Tensor:
        size = [round(side * factor) for side in x.shape[-2:]]
        mode = {"mode": "bicubic", "align_corners": False} if factor > 1 else {"mode": "area"}
        return F.interpolate(x, size=size, **mode).clamp(0.0, 1.0)

    return Condition("resize", factor, lambda a, b, noise: (a, b), keeps_truth=True, frame=frame)


def crop(x: torch.Tensor, margin: int = MARGIN) -> torch.Tensor:
    return x[..., margin:-margin, margin:-margin]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.005, 0.01, 0.02], help="noise standard deviations")
    parser.add_argument("--shift", type=float, nargs="*", default=[], help="B's shift in pixels (right; half as much down)")
    parser.add_argument("--scale", type=float, nargs="*", default=[], help="B's magnification about the centre")
    parser.add_argument("--gain", type=float, nargs="*", default=[], help="B's exposure gain")
    parser.add_argument("--resize", type=float, nargs="*", default=[], help="the whole pair's size factor")
    parser.add_argument("--sigma", type=float, nargs=2, metavar=("LO", "HI"), help="the defocus blur's sigma range (px) instead of the recipe's")
    parser.add_argument("--align", action="store_true", help="score each condition again with the pair registered first (gipc-fuse --align)")
    args = parser.parse_args()
    network = pretrained()
    fusion, direct = network.fusion(), network.fusion("direct")
    sets = tuning_sets("test", args.sigma)
    scenes = sets["synthetic"] + sets["layered"] + sets["thin"]
    conditions = [noisy(s) for s in args.noise] + [shifted(p) for p in args.shift] + [scaled(f) for f in args.scale] + [exposed(g) for g in args.gain] + [resized(f) for f in args.resize]
    blur = "the held-out recipe's blur" if args.sigma is None else f"blur sigma {args.sigma[0]:g}-{args.sigma[1]:g} px"
    print(f"{len(scenes)} pairs (test photos, {blur}); {fusion.describe()}")
    print("| condition | map PSNR | map accuracy | map Q^AB/F | direct Q^AB/F | "
          + " | ".join(f"{c} PSNR" for c in CLASSICS) + " | " + " | ".join(f"{c} Q^AB/F" for c in CLASSICS) + " |")
    print("|---" * (5 + 2 * len(CLASSICS)) + "|")
    for (name, value, apply, keeps_truth, frame, reach), aligned in itertools.product(conditions, (False, True) if args.align else (False,)):
        noise = torch.Generator().manual_seed(0)
        scores: dict[str, list[float]] = {}
        with torch.inference_mode():
            for scene in scenes:
                a, b, truth, focus_map = (frame(x[None]) for x in (scene.a, scene.b, scene.gt, scene.focus_map))
                a, b = apply(a, b, noise)
                if aligned:  # registered onto A, all cropped to the box both cover: no other crop below
                    (a, b), (top, bottom, left, right), _ = register([a[0], b[0]])
                    a, b, truth, focus_map = (x[..., top:bottom, left:right] for x in (a[None], b[None], truth, focus_map))
                fused = fusion([a, b])
                outputs = {"map": fused.image, "direct": direct([a, b]).image}
                outputs |= {c: fuse_color(BASELINES[c], a, b) for c in CLASSICS}
                weights = fused.weights[:, :1]
                if not keeps_truth and not aligned:  # each source in its own frame or exposure: Q^AB/F and accuracy on the cropped pair
                    margin = max(MARGIN, math.ceil(reach(*a.shape[-2:])) + 1)
                    a, b, truth, focus_map, weights = (crop(x, margin) for x in (a, b, truth, focus_map, weights))
                    outputs = {key: crop(image, margin) for key, image in outputs.items()}
                scores.setdefault("accuracy", []).append(float(map_accuracy(weights, focus_map)))
                for key, image in outputs.items():
                    scores.setdefault(f"{key} q", []).append(float(qabf(a, b, image)))
                    if keeps_truth and not aligned:  # a registered B is resampled: its pixels are no longer the truth's
                        scores.setdefault(f"{key} psnr", []).append(float(psnr(image, truth)))
        mean = {key: statistics.fmean(values) for key, values in scores.items()}
        decibels = lambda key: f"{mean[key]:.2f}" if key in mean else "-"  # noqa: E731  (no PSNR without one ground truth)
        print(f"| {name} {value:g}{', aligned' if aligned else ''} | {decibels('map psnr')} | {mean['accuracy']:.4f} | {mean['map q']:.4f} | {mean['direct q']:.4f} | "
              + " | ".join(decibels(f"{c} psnr") for c in CLASSICS) + " | "
              + " | ".join(f"{mean[f'{c} q']:.4f}" for c in CLASSICS) + " |", flush=True)


if __name__ == "__main__":
    main()
