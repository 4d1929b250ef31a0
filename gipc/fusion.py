"""Fusion rules: how a network's output becomes the fused image of N registered sources.

``direct`` is the paper's: the network fuses luminance (in turn for a focus sequence), chroma by the
saturation rule (:func:`gipc.color.fuse_color`). ``map`` keeps the network's judgement of where
focus is and drops its repainting: a decision map (:mod:`gipc.decision`) picks each pixel from one
source, in full colour. A generator with the weights head (``Generator(head="weights")``) gives a
map itself: ``direct`` blends with its weights as they are, ``map`` cleans and softens them first.

A :class:`Fusion` is built once (network, rule, map settings) and called per image set. Sources may
come as decoded (uint8, uint16: a quarter or half of float32's memory), each made float only when
read; over N > 2 sources the map holds one source's work at a time, so a long focus stack needs its
decoded frames and a few planes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import reduce
from typing import Any, Callable, Collection, Mapping, Sequence

import torch

from gipc.color import check_fusion_sources, fuse_color, luma, unit_range
from gipc.configs import conf_group
from gipc.decision import (
    Compared, MapSettings, best_source, blend, choose_each, clean, compared_sources, copy_sources, decide, evidence, head_scores, label_image, map_image, margin,
    one_hot, soften,
)
from gipc.errors import UserError
from gipc.tiling import DEFAULT_OVERLAP, Fuser, Progress, Steps, auto_tiling, check_tiling, fuse_sequence

RULES: tuple[str, ...] = ("direct", "map")


def check_rule(rule: str, name: str = "fusion rule") -> None:
    """Refuse a rule that is not one of :data:`RULES`, naming it as the caller knows it (``name``)."""
    if rule not in RULES:
        raise UserError(f"{name} must be one of {', '.join(RULES)}, got {rule!r}")


def map_settings(config: Mapping[str, Any], head: str = "image") -> MapSettings:
    """The map settings of a ``fusion`` config for a network with ``head``: ``map``, and for a map
    head's weights ``head_map`` over it (their margin, ``|2w - 1|``, is not in the evidence's units,
    so the clean-up that judges it has settings of its own)."""
    stray = sorted(set(config) - {"rule", "map", "head_map"})
    if stray:
        raise UserError(f"fusion has no setting {', '.join(stray)}; it has rule, map (the map's settings) and head_map")
    settings = {**config["map"], **(config["head_map"] if head == "weights" else {})}
    unknown = sorted(set(settings) - {field.name for field in fields(MapSettings)})
    if unknown:
        raise UserError(f"fusion.map and fusion.head_map have no setting {', '.join(unknown)}")
    return MapSettings(**settings)


def default_rule(head: str = "image") -> tuple[str, MapSettings]:
    """The rule and map settings of ``conf/fusion/default.yaml`` for a network with ``head``: what
    ``gipc-fuse`` and ``gipc.pretrained().fusion()`` use unless told otherwise."""
    config = conf_group("fusion", "default")
    return config["rule"], map_settings(config, head)


@dataclass(frozen=True)
class Fused:
    """A fused (B, C, H, W) image and, under a map rule, what blended it: ``soft`` weights (B, N, H, W),
    or for a hard map of ``count`` sources its ``labels`` (B, 1, H, W, :func:`gipc.decision.label_dtype`:
    one byte a pixel up to 256 sources; :attr:`weights` makes the weights from them when asked)."""

    image: torch.Tensor
    soft: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    count: int = 0

    @property
    def weights(self) -> torch.Tensor | None:
        """(B, N, H, W) weights that sum to 1 at each pixel; None for the direct rule of an image head."""
        return one_hot(self.labels, self.count, self.image.dtype) if self.labels is not None else self.soft

    def map_image(self) -> torch.Tensor | None:
        """(B, 1, H, W) in [0, 1], the map to save (:func:`gipc.decision.map_image`)."""
        if self.labels is not None:
            return label_image(self.labels, self.count)
        return None if self.soft is None else map_image(self.soft)


class Each(Sequence[torch.Tensor]):
    """``make(i)`` for each i < ``count``, made anew each time it is read: a long stack's sources, or
    what is computed from them, one at a time."""

    def __init__(self, count: int, make: Callable[[int], torch.Tensor]) -> None:
        self.count, self.make = count, make

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]  # no slices
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.make(index)


@dataclass(frozen=True)
class Fusion:
    """``net`` under ``rule``: for ``head="image"`` a luminance fuser (:data:`gipc.tiling.Fuser`), for
    ``head="weights"`` a fuser returning A's weight in [0, 1]; ``settings`` are the map's (``map`` rule;
    for a head, in the units of its weights' margin: :func:`map_settings`). ``tile``: the net sees
    tiles of at most that size, overlapping by ``overlap`` (0: whole images, for nets whose tiles are
    not exact, such as the classic baselines; None: tiles of at most :data:`gipc.tiling.DEFAULT_TILE`
    above :data:`gipc.tiling.AUTO_TILE_PIXELS`, what a network gets from :meth:`InferenceGenerator.fusion`,
    with the overlap its receptive field needs)."""

    net: Fuser
    rule: str = "direct"
    settings: MapSettings | None = None
    head: str = "image"
    tile: int | None = 0
    overlap: int = DEFAULT_OVERLAP
    progress: Progress | None = None
    """Wraps a tiled image's tiles for a progress display (:func:`gipc.tiling.tiled`); None: silent."""
    steps: Steps | None = None
    """Wraps what a sequence of three or more goes through frame by frame (the network in turn, the
    map's passes) for a progress display: a stack of 30 frames of 12 MP takes minutes; None: silent."""

    def __post_init__(self) -> None:
        check_rule(self.rule)
        check_tiling(self.tile, self.overlap)
        if self.rule == "map" and self.settings is None:
            raise UserError("the map rule needs map settings")

    def describe(self) -> str:
        """The rule in words, for the first line of a command's output."""
        if self.rule == "direct":
            return "rule direct (the network's own output)" if self.head == "image" else "rule direct (the map head's weights)"
        s = self.settings
        if self.head == "weights":
            source = "the map head's weights"
        else:
            terms = ", ".join((f"detail {d}" if d else "intensities") + f" x {w:g}" for d, w in zip(s.detail, s.closeness) if w)
            focus = ", ".join(f"window {f} x {w:g}" for f, w in zip(s.focus_window, s.focus) if w)
            source = " + ".join(
                part
                for part in (
                    terms and f"closeness to the direct output (window {s.window}" + (", exposure matched" if s.match_exposure else "") + f"; {terms})",
                    focus and f"focus ({focus})",
                )
                if part
            )
        if s.clean <= 1 or s.decisive == 0.0:
            vote = "no vote"
        else:
            vote = f"majority {s.clean}" + (f" where the margin is under {s.decisive:g}" if s.decisive != math.inf else "")
        regions = f"min region {s.min_region:g}" + (
            f" where its mean margin is under {s.region_margin:g}" if s.min_region and s.region_margin != math.inf else ""
        )
        seams = f", seams moved up to {s.seam} px to where the sources agree" if s.seam else ""
        return f"rule map ({source}; {vote}, {regions}{seams}, " + (f"guided filter r {s.radius} eps {s.eps:g})" if s.radius else "hard boundaries)")

    @property
    def sized_net(self) -> Fuser:
        """``net`` tiled as ``tile`` says for each call's size: what the rule runs. Wrap this, not ``net``,
        to share one pass between rules (:func:`gipc.tiling.remember_last`), and set ``tile=0`` beside it."""
        return auto_tiling(self.net, self.tile, self.overlap, self.progress)

    def fuse(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse (C, H, W) sources into one (C, H, W) image in [0, 1]: float32 in [0, 1], or uint8/uint16
        as stored (:func:`gipc.color.unit_range`), which a long focus stack holds in a quarter or half
        of the memory."""
        check_fusion_sources(images, "(C, H, W)")
        return self._fuse([image.unsqueeze(0) for image in images]).image[0]

    def __call__(self, images: Sequence[torch.Tensor]) -> Fused:
        """Fuse (B, C, H, W) sources (as :meth:`fuse` takes them), in focus order."""
        check_fusion_sources(images)
        return self._fuse(images)

    def _fuse(self, images: Sequence[torch.Tensor]) -> Fused:
        """:meth:`__call__` on sources already checked."""
        net = self.sized_net
        sources = Each(len(images), lambda i: unit_range(images[i]))  # float32 when read: stored frames stay 1-2 bytes a value
        if self.head == "weights":
            return self._weighted(net, list(sources))
        if self.rule == "direct":
            return Fused(fuse_sequence(lambda a, b: fuse_color(net, a, b), self._in_turn(sources)))
        ys = Each(len(images), lambda i: luma(images[i]))  # from a stored frame without its float copy
        if len(sources) > 2:
            return self._stack(net, sources, ys)
        # One map over both sources: each pixel from the source closest to the network's fused image.
        ys = list(ys)
        fused_y = reduce(net, ys)
        compared = compared_sources(ys, fused_y, self.settings)
        scores = evidence(ys, fused_y, self.settings, compared)
        del ys  # the compared copies stand in for them from here: a 12 MP pair's peak is the seam step's
        best, margins = best_source(scores), margin(scores)
        del scores
        return self._copied(sources, clean(best, margins, 2, self.settings, compared), fused_y)

    def _stack(self, net: Fuser, sources: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> Fused:
        """One map over N > 2 ``sources`` and their luminance ``ys`` (float32 made when read), the whole-tensor map's to the bit,
        with one source's work in memory at a time: each source's luminance and evidence are made
        again when read (four and two times; its float copy once, to be copied from) rather than held,
        so that past the stored frames a long stack takes a few planes whatever its length
        (benchmarks/README.md)."""
        count, settings = len(sources), self.settings
        fused_y = reduce(net, self._in_turn(ys))
        passes = 3 if settings.seam else 2  # the units, the scores, the seams
        ticks = iter(self._in_turn(range(passes * count), f"decision map, {passes} passes over the frames"))

        def read(i: int) -> torch.Tensor:
            next(ticks, None)  # the map reads one more frame: the bar moves
            return ys[i]

        compare = Compared(fused_y, settings)  # each source's exposure fit, made once
        compared = Each(count, lambda i: compare(i, read(i)))
        best, margins = choose_each(Each(count, read), fused_y, settings, compare)
        labels = clean(best, margins, count, settings, compared)
        for _ in ticks:  # the passes are done: the bar closes
            pass
        return self._copied(sources, labels, fused_y)

    def _copied(self, sources: Sequence[torch.Tensor], labels: torch.Tensor, guide: torch.Tensor) -> Fused:
        """Each pixel copied from the source its label names, kept as labels (one byte a pixel); or,
        with a guided-filter radius, blended under the labels' weights softened along ``guide``'s edges
        (:func:`gipc.decision.decide`'s last step)."""
        count, settings = len(sources), self.settings
        if settings.radius:
            weights = soften(one_hot(labels, count, guide.dtype), guide, settings.radius, settings.eps)
            return Fused(blend(sources, weights).clamp_(0.0, 1.0), weights)
        return Fused(copy_sources(sources, labels).clamp_(0.0, 1.0), labels=labels, count=count)

    def _in_turn(self, items: Sequence, what: str = "network, frame by frame") -> Collection:
        """``items`` of a sequence of three or more as ``what`` goes through them, through :attr:`steps`."""
        return items if self.steps is None or len(items) < 3 else self.steps(items, what)

    def _weighted(self, net: Fuser, images: Sequence[torch.Tensor]) -> Fused:
        """A weights head (``net``), in turn: F = w F + (1 - w) I_k, the earlier sources' weights scaled by w."""
        fused, weights = images[0], None
        for image in images[1:]:
            ya, yb = luma(fused), luma(image)
            w = net(ya, yb)
            pair = head_scores(w)
            if self.rule == "map":
                guide = w * ya + (1.0 - w) * yb
                pair = decide(pair, guide, self.settings, compared_sources([ya, yb], guide, self.settings))
            fused = blend([fused, image], pair).clamp(0.0, 1.0)
            weights = pair if weights is None else torch.cat([weights * pair[:, :1], pair[:, 1:]], dim=1)
        return Fused(fused, weights)
