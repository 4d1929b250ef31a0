"""Decision-map fusion: copy each pixel from the source in focus instead of repainting it.

A fused image (GIPC-GAN's direct output) already says where each source is in focus; what it
adds on top, a slightly repainted tone and texture, costs Q^AB/F and PSNR. Decision-map methods
(Li et al. 1995's consistency verification, Liu et al. 2017's CNN map, GFF's guided weights) keep
the choice and drop the repainting:

1. **scores**: how well each source explains the fused image near each pixel
   (:func:`closeness_scores`: minus the squared difference in a ``window``; with
   ``match_exposure`` each source first fitted to the fused image's exposure, :func:`match_exposure`,
   and with each ``detail`` size both less their local mean, :func:`detail`, so that a tone
   difference is not taken for a focus difference), plus the sources' own focus (:func:`focus_measure`:
   the sum-modified-Laplacian in each of the ``focus_window`` boxes, the best spatial focus measure
   in Huang & Jing 2007); each term divided by its mean magnitude over the image and weighted
   (``closeness``, ``focus``: a logistic regression fitted on training photos, docs/results.md), so
   that the weights are unit-free (:func:`evidence`); or a trained map head's weights (:func:`head_scores`);
2. **choose**: each pixel takes the best-scoring source (:func:`best_source`, a label image);
3. **clean** (consistency verification): a majority vote in a ``clean`` x ``clean`` window
   (:func:`majority`) for the pixels whose evidence is not ``decisive`` (:func:`margin`: a thin
   structure in focus keeps its source where the vote would erase it), then regions smaller than
   ``min_region`` of the image whose mean margin is under ``region_margin`` join their
   surroundings (:func:`gipc.regions.remove_small_regions`: a flat patch, where the sources agree and the
   evidence is noise, follows the object around it; a small region the evidence backs stays);
   then each boundary moves, by up to ``seam`` px, onto the seam where the sources differ least
   (:func:`gipc.seams.place_seams`, a graph cut: a seam is an edge neither source has, as strong as their
   difference there; ``seam_evidence`` prices the evidence of each pixel moved);
4. **soften** (off by default): a guided filter on the fused luminance (:func:`soften`, ``radius``,
   ``eps``) lets the weights follow image edges across a boundary; pixels farther than
   ``2 * radius`` from a boundary keep weights of exactly 0 and 1;
5. **blend**: ``sum_i w_i * source_i`` in full colour (:func:`blend`): away from boundaries every
   output pixel is a source pixel, bit for bit, whatever the bit depth.

All functions take and return (B, ., H, W) tensors: N sources' luminance (B, 1, H, W) in [0, 1]
and weights (B, N, H, W) that sum to 1. The map works on whole images: its filters are cheap, so
only the network is tiled (:mod:`gipc.tiling`), and a tiled run gives the same map as a whole one.
Every step but the units of step 1 works one source at a time, so a focus stack's map can be made
with one source's planes in memory at a time (:func:`choose_each`, :func:`clean`,
:func:`copy_sources`), the same map to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from functools import reduce
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch

from gipc.baselines.laplacian_energy import modified_laplacian
from gipc.errors import UserError
from gipc.planes import each_plane, opencv_takes, planes
from gipc.regions import remove_small_regions
from gipc.seams import place_seams
from gipc.typecheck import check_values, hints
from gipc.windows import box_mean, box_means, guided_filter


@dataclass(frozen=True)
class MapSettings:
    """The map's knobs (``map`` of ``conf/fusion/default.yaml``): windows in pixels, ``min_region`` a fraction of the image."""

    window: int = field(metadata={"help": "closeness window in px (1: per pixel)"})
    match_exposure: bool = field(metadata={"help": "fit each source's global gain and offset to the network's image before comparing"})
    detail: tuple[int, ...] = field(metadata={"help": "closeness terms: the local-mean window taken off before comparing, px (0: intensities as they are)"})
    closeness: tuple[float, ...] = field(metadata={"help": "the closeness terms' weights, one per --detail"})
    focus: tuple[float, ...] = field(metadata={"help": "the focus terms' weights, one per --focus-window"})
    focus_window: tuple[int, ...] = field(metadata={"help": "the focus terms' sum-modified-Laplacian windows, px"})
    clean: int = field(metadata={"help": "majority-vote window, px (1: no vote)"})
    decisive: float = field(metadata={"help": "evidence margin from which a pixel keeps its source through the vote (inf: vote everywhere; 0: no vote)"})
    min_region: float = field(metadata={"help": "regions under this share of the image join their surroundings (0: none)"})
    region_margin: float = field(metadata={"help": "... only those whose mean evidence margin is under this (inf: all)"})
    seam: int = field(metadata={"help": "px each boundary may move to where the sources differ least (0: stay)"})
    seam_evidence: float = field(metadata={"help": "price, in the seam cut, of each unit of evidence margin a moved pixel overrides"})
    radius: int = field(metadata={"help": "guided-filter radius softening the boundaries, px (0: hard boundaries)"})
    eps: float = field(metadata={"help": "guided-filter eps (with --radius)"})

    def __post_init__(self) -> None:
        for name in ("detail", "closeness", "focus", "focus_window"):  # a config list, or one number for a one-term list
            value = getattr(self, name)
            if isinstance(value, str):
                raise UserError(f"map {name} must be a number or a list of numbers, got {value!r}")
            object.__setattr__(self, name, tuple(value) if hasattr(value, "__iter__") else (value,))
        for name in ("window", "clean"):
            _check_window(name, getattr(self, name))
        for size in self.focus_window:
            _check_window("focus_window", size)
        for size in self.detail:
            if not isinstance(size, int) or size < 0 or (size and size % 2 == 0):
                raise UserError(f"map detail must be 0 (compare intensities) or an odd number of pixels, got {size!r}")
        if not isinstance(self.seam, int) or self.seam < 0:
            raise UserError(f"map seam must be an integer >= 0 (pixels a boundary may move; 0: where the vote left it), got {self.seam!r}")
        if not isinstance(self.radius, int) or self.radius < 0:
            raise UserError(f"map radius must be an integer >= 0 (0: hard map), got {self.radius!r}")
        # the sizes above say what they must be in their own words; the rest are weights and flags
        check_values(hints(MapSettings), {f.name: getattr(self, f.name) for f in fields(self)}, "map ")
        for weights_name, sizes_name, what in (("closeness", "detail", "detail size"), ("focus", "focus_window", "focus window")):
            weights, sizes = getattr(self, weights_name), getattr(self, sizes_name)
            if len(weights) != len(sizes):
                raise UserError(f"map {weights_name} needs one weight per {what}: got {len(weights)} for {sizes_name} {list(sizes)}")
            if not all(w >= 0.0 for w in weights):
                raise UserError(f"map {weights_name} weights must be >= 0, got {list(weights)}")
        if not any(w > 0.0 for w in self.closeness + self.focus):
            raise UserError("map closeness and focus weights are all 0: the map would have no evidence")
        if not self.seam_evidence >= 0.0:
            raise UserError(f"map seam_evidence must be a weight >= 0, got {self.seam_evidence!r}")
        if not 0.0 <= self.min_region < 1.0:
            raise UserError(f"map min_region must be a fraction of the image in [0, 1), got {self.min_region!r}")
        if not self.region_margin >= 0.0:
            raise UserError(f"map region_margin must be an evidence margin >= 0 (inf: every small region joins its surroundings), got {self.region_margin!r}")
        if not self.decisive >= 0.0:
            raise UserError(f"map decisive must be an evidence margin >= 0 (inf: the vote decides every pixel), got {self.decisive!r}")
        if not self.eps > 0.0:
            raise UserError(f"map eps must be > 0, got {self.eps!r}")

    def changed(self, **changes: Any) -> MapSettings:
        """These settings with ``changes`` by name (``clean=31``, as gipc-fuse's ``--clean 31``), checked as any set is."""
        names = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise UserError(f"no map setting {', '.join(unknown)}; the settings are {', '.join(names)}")
        return replace(self, **changes)


def _check_window(name: str, value: object) -> None:
    if not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise UserError(f"map {name} must be an odd number of pixels >= 1, got {value!r}")


def plane_means(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, 1) float64: the mean of each (H, W) plane, far finer than a float32 step.

    On the CPU in float32 (without gradients), OpenCV's mean: 0.9 ms for a 4000x3000 plane against
    26 ms for torch's in float64, which first converts the plane; within 1e-9 of the exact mean
    (measured: 4e-10 on a 39x55 plane, under 1e-12 from 520x520 up), 60x finer than float32
    resolves. Elsewhere torch's, summed in float64."""
    if opencv_takes(x):
        return torch.tensor([cv2.mean(plane)[0] for plane in planes(x)], dtype=torch.float64).view(*x.shape[:-2], 1, 1)
    return x.mean(dim=(-2, -1), keepdim=True, dtype=torch.float64)


def closeness_scores(sources: Sequence[torch.Tensor], fused: torch.Tensor, window: int) -> torch.Tensor:
    """(B, N, H, W): minus each source's mean squared difference to ``fused`` in a ``window`` box (higher: closer)."""
    squares = torch.cat(list(sources), dim=1).sub_(fused).square_()
    return (box_mean(squares, window) if window > 1 else squares).neg_()


def match_exposure(sources: Sequence[torch.Tensor], fused: torch.Tensor) -> list[torch.Tensor]:
    """Each source under the global gain and offset (least squares over the image) that best fit it to ``fused``.

    Photos taken one after another differ in exposure by a few per cent; compared as they are, the
    source whose exposure lies nearer the fused image's wins flat areas whatever their focus. The
    means are taken in float64 precision (:func:`plane_means`: a 12 MP image), the images stay in
    their own precision."""
    target_mean = plane_means(fused)
    matched = []
    for source in sources:
        _, gain, centred = _fit(source, fused)
        matched.append(centred * gain + target_mean.to(source.dtype))
    return matched


def _fit(source: torch.Tensor, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``source``'s plane means and least-squares gain onto ``fused`` (at least 0), both (B, C, 1, 1)
    in its dtype, and the source less its means (centred, which the fit reads)."""
    mean = plane_means(source).to(source.dtype)
    centred = source - mean
    variance = plane_means(centred.square())
    covariance = plane_means(centred * fused)  # centred has mean 0
    return mean, (covariance / variance.clamp_min(1e-12)).clamp_min(0.0).to(source.dtype), centred


class Compared:
    """:func:`compared_sources` one source at a time, named by its index: each source's exposure fit
    (two numbers a plane) is made on its first read and kept, so that a stack's map, which compares
    each source three times (the units, the scores, the seams), fits each once. The same floats as
    :func:`match_exposure`."""

    def __init__(self, fused: torch.Tensor, settings: MapSettings) -> None:
        self.fused, self.match = fused, settings.match_exposure
        self.target = plane_means(fused) if self.match else None
        self.fits: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, index: int, source: torch.Tensor) -> torch.Tensor:
        if not self.match:
            return source
        if index in self.fits:
            mean, gain = self.fits[index]
            centred = source - mean
        else:
            mean, gain, centred = _fit(source, self.fused)
            self.fits[index] = mean, gain
        return centred.mul_(gain).add_(self.target.to(source.dtype))


def detail(image: torch.Tensor, size: int) -> torch.Tensor:
    """``image`` less its mean over a ``size`` window: the detail a closeness should compare, without local tone."""
    return image - box_mean(image, size)


def focus_measure(sources: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, N, H, W): each source's modified Laplacian, whose box mean is the sum-modified-Laplacian (higher: sharper)."""
    return modified_laplacian(torch.cat(list(sources), dim=1))


def unit_scale(means: Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, 1, 1): a term's mean magnitude over every source and pixel, from each source's float64
    mean (:func:`plane_means`) summed in source order: the same number whether the sources came
    at once or one at a time (:func:`choose_each`)."""
    return (reduce(torch.add, means) / len(means)).to(dtype).clamp_min(torch.finfo(dtype).tiny)


def _unit(scores: torch.Tensor) -> torch.Tensor:
    """Non-negative ``scores`` (squared differences, focus measures) over their mean per image (in
    place), so that two kinds of evidence can be added."""
    means = plane_means(scores)
    return scores.div_(unit_scale([means[:, i : i + 1] for i in range(scores.shape[1])], scores.dtype))


def compared_sources(sources: Sequence[torch.Tensor], fused: torch.Tensor, settings: MapSettings) -> list[torch.Tensor]:
    """The sources as the closeness and the seams compare them: fitted to ``fused``'s exposure where
    ``settings.match_exposure`` says so."""
    return match_exposure(sources, fused) if settings.match_exposure else list(sources)


def evidence(
    sources: Sequence[torch.Tensor], fused: torch.Tensor, settings: MapSettings, compared: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """(B, N, H, W): the weighted sum of closeness to the fused image (one term per ``detail`` size,
    weights ``closeness``) and the sources' own focus (one term per ``focus_window``, weights
    ``focus``), each term unit-free.

    Closeness to a fused image is evidence at any scale, and a small window puts boundaries where they
    are; a focus measure needs wider windows to see detail in low-texture areas. The closeness
    compares exposure-matched sources (``match_exposure``; ``compared`` if the caller has them,
    :func:`compared_sources`) with the local mean of each ``detail`` size taken off (0: none); the
    focus measure reads the sources as they are. Weights of 0 skip their term."""
    compared = compared_sources(sources, fused, settings) if compared is None else list(compared)
    return reduce(torch.Tensor.add_, evidence_terms(sources, fused, compared, settings))


def evidence_terms(
    sources: Sequence[torch.Tensor], fused: torch.Tensor, compared: Sequence[torch.Tensor], settings: MapSettings
) -> Iterator[torch.Tensor]:
    """:func:`evidence`'s weighted terms (B, N, H, W), closeness first, one at a time (a 12 MP pair's
    term takes 0.1 GiB); with weights of 1, the features a fit of the weights reads."""
    for term, weight in _raw_terms(sources, fused, compared, settings):
        yield _unit(term).mul_(weight)


def _raw_terms(
    sources: Sequence[torch.Tensor], fused: torch.Tensor, compared: Sequence[torch.Tensor], settings: MapSettings
) -> Iterator[tuple[torch.Tensor, float]]:
    """Each term of :func:`evidence_terms` before its unit (B, N, H, W; for one source alone, that
    source's plane of it to the bit: every step works plane by plane) and its signed weight."""
    yield from _closeness_terms(fused, compared, settings)
    yield from _focus_terms(sources, settings)


def _closeness_terms(fused: torch.Tensor, compared: Sequence[torch.Tensor], settings: MapSettings) -> Iterator[tuple[torch.Tensor, float]]:
    # detail(source) - detail(fused) = detail(source - fused): the local means of one difference per source
    differences = torch.cat(list(compared), dim=1).sub_(fused)
    terms = [(size, weight) for size, weight in zip(settings.detail, settings.closeness) if weight]
    local = box_means(differences, [size for size, _ in terms if size])  # each size's local means, when asked for
    for size, weight in terms:
        # (mean - d)^2, written over the mean, is (d - mean)^2 to the bit; the sign of minus the
        # squares moves onto the weight, which gives the same floats as negating them first
        squares = (next(local).sub_(differences) if size else differences.clone()).square_()
        yield (box_mean(squares, settings.window) if settings.window > 1 else squares), -weight


def _focus_terms(sources: Sequence[torch.Tensor], settings: MapSettings) -> Iterator[tuple[torch.Tensor, float]]:
    terms = [(window, weight) for window, weight in zip(settings.focus_window, settings.focus) if weight]
    if terms:
        focus = box_means(focus_measure(sources), [window for window, _ in terms])
        for (_, weight), scores in zip(terms, focus):
            yield scores, weight


def choose_each(
    sources: Sequence[torch.Tensor], fused: torch.Tensor, settings: MapSettings, compare: Compared | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`best_source` and :func:`margin` of :func:`evidence`, to the bit, with one source's
    evidence in memory at a time instead of N: a focus stack's map then needs a few planes whatever
    its length.

    ``sources`` (B, 1, H, W) each may be made when read (a long stack's are): each is read twice,
    once for the terms' units (a term's unit is its mean over every source, :func:`unit_scale`) and
    once for the scores; ``compare`` (:class:`Compared`) may carry their exposure fits on to the seams."""
    compare = Compared(fused, settings) if compare is None else compare

    def terms(i: int) -> Iterator[tuple[torch.Tensor, float]]:
        source = sources[i]
        return _raw_terms([source], fused, [compare(i, source)], settings)

    count = len(sources)
    means = [[plane_means(term) for term, _ in terms(i)] for i in range(count)]  # each source's, term by term
    scales = [unit_scale(each, fused.dtype) for each in zip(*means)]  # each term's, over the sources
    leader = Leader(count, runner_up=True)
    for i in range(count):
        leader.add(reduce(torch.Tensor.add_, (term.div_(scale).mul_(weight) for (term, weight), scale in zip(terms(i), scales))))
    return leader.index, leader.margin


def head_scores(weight_a: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) scores of a map head's weight for A, ``w`` and ``1 - w``."""
    return torch.cat([weight_a, 1.0 - weight_a], dim=1)


def label_dtype(count: int) -> torch.dtype:
    """The integer type of a label image of ``count`` sources: uint8 up to 256 (a pixel a byte), wider
    for the longest stacks (a microscope's may hold hundreds of frames)."""
    return torch.uint8 if count <= 256 else torch.int16 if count <= 32768 else torch.int32


class Leader:
    """The best of scores (B, 1, H, W) that come one source at a time from ``count`` sources: its
    source's ``index`` (:func:`label_dtype`; a tie goes to the earlier source) and, with
    ``runner_up``, the ``margin`` over the second best (:func:`margin`'s floats). Elementwise work
    only: over N channels, several times faster than argmax, whose elements lie H * W apart in memory."""

    def __init__(self, count: int, runner_up: bool = False) -> None:
        self.dtype, self.runner_up = label_dtype(count), runner_up
        self.count = 0
        self.index: torch.Tensor | None = None
        self.best: torch.Tensor | None = None
        self.second: torch.Tensor | None = None

    def add(self, score: torch.Tensor, last: bool = False) -> None:
        """The next source's score; ``last``: no later score will need the best's value."""
        if self.best is None:
            self.best, self.index = score, torch.zeros_like(score, dtype=self.dtype)
            if self.runner_up:
                self.second = torch.full_like(score, -math.inf)
        else:
            better = score > self.best
            self.index.masked_fill_(better, self.count)
            if self.runner_up:
                self.second = torch.where(better, self.best, torch.maximum(self.second, score))
            if self.runner_up or not last:
                self.best = torch.where(better, score, self.best)
        self.count += 1

    @property
    def margin(self) -> torch.Tensor:
        return self.best - self.second


def best_source(scores: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) (:func:`label_dtype`): the index of the best-scoring source per pixel; ties go to the earlier source."""
    if scores.shape[1] == 2:  # one comparison: 2.6x faster than the running maximum below
        return (scores[:, 1:] > scores[:, :1]).view(torch.uint8)
    leader = Leader(scores.shape[1])
    for i in range(scores.shape[1]):
        leader.add(scores[:, i : i + 1], last=i + 1 == scores.shape[1])
    return leader.index


def one_hot(index: torch.Tensor, count: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, count, H, W) weights of a (B, 1, H, W) source index."""
    return torch.cat([index == i for i in range(count)], dim=1).to(dtype)


def majority(labels: torch.Tensor, count: int, size: int) -> torch.Tensor:
    """Each pixel of a (B, 1, H, W) label image of ``count`` sources takes the source most pixels of its
    ``size`` x ``size`` neighbourhood hold (odd size: for two sources, no ties; for a binary map this
    is the median filter)."""
    if size <= 1:
        return labels
    # Votes counted in whole pixels, so that the last source's, the rest, is exact: one box filter fewer.
    votes = box_counts((labels == 0).view(torch.uint8), size)
    if count == 2:  # the second source wins where the first holds under half of the window's pixels
        return (votes < (size * size + 1) // 2).view(torch.uint8)
    leader, total = Leader(count), votes.clone()
    leader.add(votes)
    for source in range(1, count - 1):  # one source's counts at a time: a long stack's vote takes a few planes
        votes = box_counts((labels == source).view(torch.uint8), size)
        total += votes
        leader.add(votes)
    leader.add(total.neg_().add_(size * size), last=True)
    return leader.index


def box_counts(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) int32: how many pixels of a ``size`` x ``size`` window are set in a 0/1 uint8
    ``mask``, borders replicated. On the CPU, OpenCV's integer box filter (exact, about 2x faster
    than a float box mean); elsewhere a box mean times the window's area, rounded (exact while a
    count stays under 2^22, so for any window under 2048 px wide: each float32 rounding is off by at
    most 2^-24 of the count)."""
    if mask.device.type != "cpu":
        return _rounded_counts(mask, size)
    return each_plane(
        mask, lambda plane, count: cv2.boxFilter(plane, cv2.CV_32S, (size, size), dst=count, normalize=False, borderType=cv2.BORDER_REPLICATE), np.int32
    )


def _rounded_counts(mask: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`box_counts` off the CPU: a float32 box mean times the area, rounded."""
    return box_mean(mask.float(), size).mul_(size * size).round_().int()


def margin(scores: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): how far the best source's score lies above the second best's.

    In :func:`evidence`'s units each kind of evidence has mean magnitude 1 over the image.
    """
    if scores.shape[1] == 2:
        return (scores[:, :1] - scores[:, 1:]).abs()
    top = scores.topk(2, dim=1).values
    return top[:, :1] - top[:, 1:]


def consistent(best: torch.Tensor, margins: torch.Tensor, count: int, size: int, decisive: float) -> torch.Tensor:
    """A label image (B, 1, H, W) of ``count`` sources: the ``best`` source (:func:`best_source`)
    where the evidence is ``decisive`` (``margins``, :func:`margin`, at or above it), elsewhere the
    majority vote of a ``size`` window over the best sources (``inf``: vote everywhere)."""
    if size <= 1 or decisive == 0.0:  # every margin is >= 0: every pixel is decisive
        return best
    voted = majority(best, count, size)
    if decisive == math.inf:
        return voted
    return torch.where(margins >= decisive, best, voted)


def soften(onehot: torch.Tensor, guide: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Guided-filter the weights with ``guide`` (B, 1, H, W) so that boundaries follow its edges.

    The filter's output at a pixel depends on the map within ``2 * radius``. Farther from every
    boundary the map is constant over both of the filter's windows, so its local slope is exactly 0
    (``mean(I p) - mean(I) mean(p)`` with ``p`` constant) and the hard weights 0 and 1 come out
    exactly. Weights are clamped to [0, 1] and renormalised.
    """
    if radius == 0:
        return onehot
    soft = guided_filter(guide, onehot, radius, eps).clamp_(0.0, 1.0)
    return soft / soft.sum(dim=1, keepdim=True).clamp_min(torch.finfo(soft.dtype).tiny)


def decide(
    scores: torch.Tensor, guide: torch.Tensor, settings: MapSettings, compared: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Steps 2-4 of the module docstring: scores -> labels -> cleaned -> softened weights (B, N, H, W);
    the seam step needs the sources' luminance as the evidence compared them (:func:`compared_sources`)."""
    count = scores.shape[1]
    labels = clean(best_source(scores), margin(scores), count, settings, compared)
    return soften(one_hot(labels, count, scores.dtype), guide, settings.radius, settings.eps)


def clean(
    best: torch.Tensor, margins: torch.Tensor, count: int, settings: MapSettings, compared: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Step 3 of the module docstring on the ``best`` labels of ``count`` sources and their evidence
    ``margins``: the vote, the small regions and the seams, which judge the same evidence (the seams
    read ``compared``, each source once)."""
    labels = consistent(best, margins, count, settings.clean, settings.decisive)
    labels = remove_small_regions(labels, count, settings.min_region, margins, settings.region_margin)
    if settings.seam:
        if compared is None:
            raise ValueError("the seam step needs the sources")
        labels = place_seams(labels, compared, margins, settings.seam, settings.seam_evidence)
    return labels


def blend(sources: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i * source_i`` for (B, C, H, W) sources, the same weights for every channel."""
    if weights.shape[1] != len(sources):
        raise UserError(f"{weights.shape[1]} weight maps for {len(sources)} sources")
    fused = sources[0] * weights[:, :1]
    for i in range(1, len(sources)):  # in place: a 12 MP RGB pair's product is 0.14 GiB
        fused.addcmul_(sources[i], weights[:, i : i + 1])
    return fused


def copy_sources(sources: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """:func:`blend` under the hard weights of ``labels`` (B, 1, H, W), to the bit, each source read
    once: each pixel copied from the source its label names."""
    fused = sources[0].clone()
    for i in range(1, len(sources)):
        torch.where(labels == i, sources[i], fused, out=fused)
    return fused


def shades(count: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    """(count,) grey levels of a saved map: white for the first source, black for the last, even steps between."""
    return torch.linspace(1, 0, count, dtype=dtype, device=device)


def map_image(weights: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] to save: white where the first source is taken, black where the last is,
    the sources between at even grey steps (for a pair, A's weight itself)."""
    count = weights.shape[1]
    return (weights * shades(count, weights.dtype, weights.device).view(1, count, 1, 1)).sum(dim=1, keepdim=True)


def label_image(labels: torch.Tensor, count: int) -> torch.Tensor:
    """:func:`map_image` of a hard map's ``labels`` (B, 1, H, W) of ``count`` sources, to the bit."""
    return shades(count, device=labels.device)[labels.long()]
