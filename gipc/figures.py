"""Comparison figures: each scene's sources and fused results side by side, with a zoomed crop of
each (the ``gipc-figure`` command is :mod:`gipc.cli.figure`).

One row of whole images and one row of crops per scene. The crop is the ``--crop``-pixel window
where the sources differ most in detail (local Laplacian energy), the place where a fusion method
has to choose, and it is outlined on the whole images. With ``difference`` a third row shows what
each image changed of the first source, |Y - Y_A| (the difference images of fusion papers): a
method that copies is black wherever it took source A and shows |B - A| where it took B; one that
repaints leaves a trace everywhere.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Sequence

import kornia
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from gipc.color import luma
from gipc.files import atomic_path


def decision_window(sources: Sequence[torch.Tensor], size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window where the sources' local detail differs most:
    the spread across sources of their Laplacian energy, summed over the window."""
    energy = torch.cat([kornia.filters.laplacian(luma(s)[None], 3).abs() for s in sources])
    spread = energy.max(0).values - energy.min(0).values
    height, width = spread.shape[-2:]
    size = min(size, height, width)
    window = F.avg_pool2d(spread[None], size, stride=max(1, size // 8))[0, 0]
    row, col = divmod(int(window.argmax()), window.shape[1])
    stride = max(1, size // 8)
    return min(row * stride, height - size), min(col * stride, width - size)


DIFFERENCE_SCALE_QUANTILE = 0.99
"""The difference row's white: this quantile of |B - A| in each scene, so every method of a scene
shares one scale and a few saturated pixels do not make the rest black."""


def differences(images: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], float]:
    """Each image's |Y - Y_A| (H, W) against the first, and the scene's display scale (the
    :data:`DIFFERENCE_SCALE_QUANTILE` of the second's, at least one 8-bit step)."""
    reference = luma(images[0])[0]
    shown = [(luma(image)[0] - reference).abs() for image in images]
    sample = shown[1].flatten()[:: max(1, shown[1].numel() // 1_000_000)]  # torch.quantile takes at most 16 M values
    return shown, max(float(torch.quantile(sample, DIFFERENCE_SCALE_QUANTILE)), 1 / 255)


TITLE = 0.12
"""A panel title's height, in panel widths."""


def comparison_figure(
    scenes: Sequence[tuple[str, list[tuple[str, torch.Tensor]]]],
    out: Path,
    crop: int = 96,
    panel_inches: float = 2.0,
    difference: bool = False,
    progress: bool = False,
    palette: bool = False,
) -> Path:
    """Write a PNG: per scene, ``(label, image)`` panels in a row and their crops below (sources
    first, labelled ``source ...``), and with ``difference`` each panel's |Y - Y_A| under them, atomically.
    ``progress``: a bar on stderr, a step per scene and two for rendering and writing (20 Lytro
    scenes of four panels take 14 s). ``palette``: 256 colours instead of full RGB, for a file a
    quarter the size (to commit beside docs) whose smooth tones show bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    columns, rows = max(len(panels) for _, panels in scenes), 3 if difference else 2
    heights = []  # in panel widths: a scene's whole images and differences at its aspect + a title, the square crops (untitled)
    for _, panels in scenes:
        aspect = panels[0][1].shape[-2] / panels[0][1].shape[-1]
        heights += [aspect + TITLE, 1, *([aspect + TITLE] if difference else [])]
    fig, axes = plt.subplots(len(heights), columns, figsize=(panel_inches * columns, panel_inches * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax in axes.flat:
        ax.set_axis_off()
    bar = tqdm(total=len(scenes) + 2, desc="drawing", unit="step", disable=not progress, leave=False, file=sys.stderr)
    for row, (name, panels) in enumerate(scenes):
        sources = [image for label, image in panels if label.startswith("source")]
        top, left = decision_window(sources, crop)
        size = min(crop, *panels[0][1].shape[-2:])
        if difference:
            shown, scale = differences([image for _, image in panels])
            for col in range(1, len(panels)):  # the first source's own difference is 0 everywhere
                ax = axes[rows * row + 2, col]
                ax.imshow(shown[col].numpy(), cmap="gray", vmin=0, vmax=scale, interpolation="lanczos")
                ax.set_title(f"|{panels[col][0]} - source A|", fontsize=8)
        for col in range(min(columns, len(panels))):
            whole, zoom = axes[rows * row, col], axes[rows * row + 1, col]
            label, image = panels[col]
            gray = image.shape[0] == 1
            pixels = image[0] if gray else image.permute(1, 2, 0)
            whole.imshow(pixels.numpy(), cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="lanczos")
            whole.add_patch(Rectangle((left, top), size, size, fill=False, edgecolor="yellow", linewidth=1))
            whole.set_title(f"{name}: {label}" if col == 0 else label, fontsize=8)
            zoom.imshow(pixels[top : top + size, left : left + size].numpy(), cmap="gray" if gray else None, vmin=0, vmax=1,
                        interpolation="nearest")
        bar.update()
    fig.tight_layout(pad=0.3)
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=110)
    plt.close(fig)
    bar.update()
    image = Image.open(rendered).convert("RGB")
    if palette:  # an octree palette: less error than median cut, which wiped out a source's fine print
        image = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    bar.update()
    bar.close()
    return out
