"""How the map's evidence weights were learned: a logistic regression over closeness and focus
features, fitted on pairs from training photos, scored beside the hand-weighted evidence of the
tuning rounds on the held-out tuning sets of tune_map.py.

    python docs/results/decision-map/learned_evidence.py [--photos test] [--focus-window 5 11 21]

Features per pixel, each the difference A - B of one kind of score put in the units of
:func:`gipc.decision.evidence` (mean magnitude 1 per image): closeness to the network's image in a
1 px window with the 31 px and with the 11 px local mean taken off (``detail``), and the sources'
sum-modified-Laplacian focus in 5, 11 and 21 px windows (``--focus-window``: others). The fit: 8 Kodak photos the shipped model
trained on (never a validation or test photo), one synthetic (Gaussian, pillbox), layered (region
competition, blobs) and thin (bars and their inverses) pair each, 20,000 random pixels per pair
weighted by where the sources differ (flat pixels carry no evidence), label = the true map. The
learned score replaces the hand-weighted evidence, scaled to its mean margin per pair so that the vote,
region and seam settings keep their units (conf/fusion/default.yaml holds the coefficients times
the mean scale); the clean-up is the eighth tuning round's (``CLEAN_UP``). Luminance only, 8-bit.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
import torch
import torch.nn.functional as F
from tune_map import KODAK, layered_scene, shipped_recipe_data, tuning_sets

from gipc.data.scene import Scene, held_out_scene
from gipc.decision import MapSettings, blend, compared_sources, decide, evidence, evidence_terms
from gipc.color import luma
from gipc.fusion import default_rule
from gipc.imaging import read_image
from gipc.inference import InferenceGenerator
from gipc.metrics import map_accuracy, psnr, qabf
from gipc.pretrained import pretrained

TRAIN_PHOTOS = ("kodim02", "kodim03", "kodim04", "kodim05", "kodim08", "kodim09", "kodim12", "kodim13")
SEED = 7
PIXELS = 20_000
HAND = {"window": 3, "detail": (31,), "closeness": (1.0,), "focus": (0.25,), "focus_window": (11,)}
"""The evidence the learned one was scored against: weighted by hand in the tuning rounds (the default until then)."""
CLEAN_UP = {"clean": 31, "decisive": 0.5, "region_margin": 0.25, "seam_evidence": 0.05}
"""The clean-up both were scored under: the eighth round's (the ninth round tuned it again under the learned evidence)."""
DETAIL_SIZES = (31, 11)  # the local means taken off before each closeness (none: exposure-shifted map accuracy -0.0056)
FOCUS_WINDOWS = (5, 11, 21)


def feature_settings(focus_windows: tuple[int, ...] = FOCUS_WINDOWS) -> dict[str, object]:
    """The evidence terms the fit weighs, each at weight 1."""
    return {"window": 1, "detail": DETAIL_SIZES, "closeness": (1.0,) * len(DETAIL_SIZES),
            "focus": (1.0,) * len(focus_windows), "focus_window": focus_windows}


def a_minus_b(scores: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): A's score less B's, the one number per pixel a pair's evidence comes down to."""
    return scores[:, :1] - scores[:, 1:]


def features(
    ya: torch.Tensor, yb: torch.Tensor, fused: torch.Tensor, settings: MapSettings, focus_windows: tuple[int, ...] = FOCUS_WINDOWS
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(1, F, H, W) A - B feature differences (gipc's evidence terms at weight 1) and the exposure-matched sources."""
    compared = compared_sources([ya, yb], fused, settings)
    terms = evidence_terms([ya, yb], fused, compared, replace(settings, **feature_settings(focus_windows)))
    return torch.cat([a_minus_b(scores) for scores in terms], dim=1), compared


def training_scenes() -> list[Scene]:
    """Six pairs from each of ``TRAIN_PHOTOS``, the held-out recipe's kinds (tune_map.py)."""
    data = shipped_recipe_data()
    held = {scene.name for scene in [*data.val_scenes, *data.test_scenes]}
    assert not held & set(TRAIN_PHOTOS), "a held-out photo among the training photos"
    recipe = data.source.held_out_recipe
    scenes = []
    for name in TRAIN_PHOTOS:
        image = read_image(KODAK / f"{name}.png").pixels
        scenes += [held_out_scene(name, image, replace(recipe, disk=disk), SEED) for disk in (0.0, 1.0)]
        scenes += [layered_scene(name, image, recipe, source, disk, SEED) for source, disk in (("region_competition", False), ("blobs", True))]
        scenes += [layered_scene(name, image, recipe, "bars", inverse, SEED, inverse) for inverse in (False, True)]
    return scenes


def fit(network: InferenceGenerator, settings: MapSettings, focus_windows: tuple[int, ...] = FOCUS_WINDOWS) -> torch.Tensor:
    """The coefficients of a weighted logistic regression of the true map on :func:`features`."""
    torch.manual_seed(0)
    xs, ys, ws = [], [], []
    with torch.inference_mode():
        for scene in training_scenes():
            ya, yb = luma(scene.a[None]), luma(scene.b[None])
            feats, _ = features(ya, yb, network.fuse_y(ya, yb), settings, focus_windows)
            label = (scene.focus_map[None] > 0.5).float().flatten()
            weight = F.avg_pool2d((ya - yb).square(), 7, 1, 3).flatten()
            index = torch.randint(0, label.numel(), (PIXELS,))
            xs.append(feats.flatten(2)[0, :, index].T)
            ys.append(label[index])
            ws.append(weight[index])
    x, y, w = (torch.cat(t).clone() for t in (xs, ys, ws))  # out of inference mode, for autograd
    w = w / w.mean()
    coef = torch.zeros(x.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([coef], max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(x @ coef, y, reduction="none") * w).mean() + 1e-4 * coef.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return coef.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", choices=("val", "test"), default="val")
    parser.add_argument("--focus-window", type=int, nargs="+", default=list(FOCUS_WINDOWS), help="the focus terms' windows (px)")
    args = parser.parse_args()
    windows = tuple(args.focus_window)
    network = pretrained()
    settings = replace(default_rule()[1], **HAND, **CLEAN_UP)
    coef = fit(network, settings, windows)
    names = ", ".join(f"on detail {d}" for d in DETAIL_SIZES) + ", focus " + ", ".join(map(str, windows))
    print(f"coefficients (closeness {names}):", ", ".join(f"{float(c):.3f}" for c in coef))
    sets = tuning_sets(args.photos)
    results, scales = {}, []
    with torch.inference_mode():
        for name in ("synthetic", "layered", "thin", "exposure", "grayscale"):  # the ninth round's sets (strong came in the tenth)
            for scene in sets[name]:
                ya, yb = luma(scene.a[None]), luma(scene.b[None])
                fused = network.fuse_y(ya, yb)
                feats, compared = features(ya, yb, fused, settings, windows)
                default = a_minus_b(evidence([ya, yb], fused, settings, compared))
                learned = (feats * coef.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)
                scales.append(float(default.abs().mean() / learned.abs().mean()))
                learned = learned * scales[-1]
                for rule, diff in (("hand-weighted evidence", default), ("learned evidence", learned)):
                    weights = decide(torch.cat([diff / 2, -diff / 2], dim=1), fused, settings, compared)
                    out = (blend([ya, yb], weights).clamp(0, 1) * 255).round() / 255  # 8-bit, as written
                    q, p = results.setdefault((rule, name), ([], []))
                    q.append(float(qabf(ya, yb, out)))
                    if name == "exposure":  # one source's exposure is off: the true map scores, not the image
                        p.append(float(map_accuracy(weights[:, :1], scene.focus_map[None])))
                    elif scene.gt is not None:
                        p.append(float(psnr(out, luma(scene.gt[None]))))
    scale = statistics.fmean(scales)
    print(f"scale of the learned score to the default's mean margin: {scale:.3f} +- {statistics.pstdev(scales):.3f} "
          f"({min(scales):.3f}-{max(scales):.3f}) over {len(scales)} pairs")
    print("coefficients in the default's margin units (conf/fusion/default.yaml's closeness and focus):", ", ".join(f"{float(c) * scale:.3f}" for c in coef))
    columns = [f"{n} Q^AB/F | {n} PSNR" for n in ("synthetic", "layered", "thin")] + ["exposure map accuracy", "grayscale Q^AB/F"]
    print(f"| evidence ({args.photos} photos) | " + " | ".join(columns) + " |")
    print("|---" * 9 + "|")
    for rule in ("hand-weighted evidence", "learned evidence"):
        cells = []
        for name in ("synthetic", "layered", "thin"):
            q, p = results[(rule, name)]
            cells += [f"{statistics.fmean(q):.4f}", f"{statistics.fmean(p):.2f}"]
        cells.append(f"{statistics.fmean(results[(rule, 'exposure')][1]):.4f}")
        cells.append(f"{statistics.fmean(results[(rule, 'grayscale')][0]):.4f}")
        print(f"| {rule} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
