"""Registering hand-held focus brackets before fusion: each source warped onto the first one's frame.

A decision map copies each pixel from one source, so it needs the sources registered: hand-held
shots move between frames, and a lens that refocuses magnifies slightly (focus breathing). Each
source's transform onto the one before it is found at a working size of at most :data:`WORK_SIDE` px, in
normalised coordinates that hold at any size, and applied at full size (bicubic). The fit starts
from SIFT features matched between the two (Lowe's ratio test) and a RANSAC fit of the model, which
defocus cannot fool where both frames share some detail, and is refined by ECC (Evangelidis and
Psarakis 2008: the correlation of the two images, blind to gain and offset) on blurred luminance,
where defocus matters less than position, to a fraction of a pixel; chained, these take every source
onto the first. The outputs are cropped to a rectangle that every warped source covers.

A fit can still match blur rather than position (a defocused object spreads, as if magnified), so
it is kept only if it also brings the unblurred edges closer: :func:`gradient_correlation` of the
sources at the working size must rise over leaving the source as it is.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry import create_meshgrid
from kornia.geometry.transform import warp_grid

from gipc.color import check_fusion_sources, luma, stored_as, unit_range
from gipc.errors import UserError

MODELS: tuple[str, ...] = ("similarity", "homography")
"""``similarity``: shift, rotation and scale (hand-held shots, focus breathing); ``homography``: any plane-to-plane view change."""
WORK_SIDE = 1024
"""Longest side the transform is estimated at (in seconds, not minutes, for a 12 MP bracket)."""
BLUR_SIGMA = 2.0
"""Gaussian blur (px at the working size) of both luminances before registering: evens out their focus."""
MAX_MOVE = 0.1
"""A transform that moves a corner by more than this share of the image's diagonal is refused as a failed registration."""
MIN_MOVE = 0.5
"""A transform that moves no corner by this many pixels is taken as none: resampling would only soften the source."""
MIN_MATCHES = 12
"""Matched features (RANSAC's inliers) a fit needs before ECC starts from it."""
MAX_SCALE = 1.25
"""A features' fit that scales by more than this (or less than its inverse) is no bracket's: repeated patterns matched."""
RATIO = 0.75
"""Lowe's ratio test: a feature's match is kept if it is this much closer than the next best."""
RANSAC_PX = 1.0
"""How far (px at the working size) a matched feature may lie from the fit and still back it."""
ECC_STEPS = 100
"""ECC's iterations at most (it stops earlier once a step changes the transform by under 1e-6)."""
FIT = "SIFT + RANSAC, ECC, similarity where the sharp detail is; chained (2026-12-08)"
"""How :func:`register` fits, as gipc-fuse.json records it: a folder's outputs of an earlier fit are not
mixed with this one's without a word (``--skip-existing``). Changes whenever a fit's result does."""
WARP_ROWS = 256
"""Rows warped at once: a whole 12 MP frame's sampling grids and float output took 0.6 GiB more."""


def _working(y: torch.Tensor, blur: bool = True) -> torch.Tensor:
    scale = WORK_SIDE / max(y.shape[-2:])
    if scale < 1:
        y = F.interpolate(y, scale_factor=scale, mode="area")
    if not blur:
        return y
    radius = math.ceil(3 * BLUR_SIGMA)
    return kornia.filters.gaussian_blur2d(y, (2 * radius + 1,) * 2, (BLUR_SIGMA, BLUR_SIGMA))


def corner_moves(model: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(4, 2) pixel displacements of the image corners under a normalised (1, 3, 3) transform."""
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=model.dtype).T
    moved = model[0] @ corners
    moved = moved[:2] / moved[2]
    return ((moved - corners[:2]) * torch.tensor([[width / 2], [height / 2]], dtype=model.dtype)).T


def gradient_correlation(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalised correlation of the (B, 1, H, W) images' gradient fields over ``mask``: 1 where
    every edge lies at the same place with the same direction, whatever the edges' strength (a
    defocused copy of an edge still points the same way)."""
    ga, gb = (kornia.filters.spatial_gradient(x)[:, 0] * mask[:, :, None] for x in (a, b))
    return (ga * gb).sum() / ((ga**2).sum() * (gb**2).sum()).sqrt().clamp_min(1e-12)


def improves_edges(moving: torch.Tensor, fixed: torch.Tensor, transform: torch.Tensor) -> bool:
    """Whether ``transform`` (normalised, (1, 3, 3)) brings ``moving``'s unblurred edges closer to
    ``fixed``'s than no transform does ((1, C, H, W) images), both scored on the pixels it covers."""
    moving, fixed = (_working(luma(image).float(), blur=False) for image in (moving, fixed))
    warper = kornia.geometry.HomographyWarper(*fixed.shape[-2:], normalized_coordinates=True)
    transform = transform.to(fixed.device)
    covered = (warper(torch.ones_like(moving), transform) > 0.999).float()
    covered = -F.max_pool2d(-covered, 3, stride=1, padding=1)  # no gradient across the edge of the covered area
    return bool(gradient_correlation(warper(moving, transform), fixed, covered) > gradient_correlation(moving, fixed, covered))


def estimate(moving: torch.Tensor, fixed: torch.Tensor, model: str = "similarity") -> torch.Tensor:
    """The normalised (1, 3, 3) transform that warps ``moving`` onto ``fixed`` ((1, C, H, W) images in
    [0, 1], or as decoded): matched SIFT features and RANSAC for a start, ECC on blurred luminance to
    refine it (module doc)."""
    if model not in MODELS:
        raise UserError(f"alignment model must be one of {', '.join(MODELS)}, got {model!r}")
    m, f = (_working(luma(image).float(), blur=False)[0, 0].numpy() for image in (moving, fixed))
    start = _matched(m, f, model)
    radius = math.ceil(3 * BLUR_SIGMA)
    blurred = [cv2.GaussianBlur(plane, (2 * radius + 1,) * 2, BLUR_SIGMA) for plane in (f, m)]
    motion = cv2.MOTION_HOMOGRAPHY if model == "homography" else cv2.MOTION_AFFINE
    try:
        stop = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_STEPS, 1e-6)
        _, fit = cv2.findTransformECC(*blurred, start[: 3 if model == "homography" else 2].copy(), motion, stop, None, 5)  # 5: OpenCV's own smoothing
    except cv2.error:  # ECC did not converge (little detail, other scenes): the features' fit stands
        fit = start
    transform = np.eye(3)
    transform[: fit.shape[0]] = fit
    if model == "similarity":  # ECC has no similarity model: the nearest one to its affine fit where the fixed frame is sharp
        transform = nearest_similarity(transform, edge_energy(f))
    height, width = f.shape
    # pixel x to the frame's normalised coordinate (2x + 1) / width - 1, the same at every size
    to_unit = torch.tensor([[2 / width, 0.0, 1 / width - 1], [0.0, 2 / height, 1 / height - 1], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return (to_unit @ torch.from_numpy(transform) @ torch.linalg.inv(to_unit))[None].float()


def edge_energy(plane: np.ndarray) -> np.ndarray:
    """Squared gradient magnitude (Sobel) of an (H, W) float plane: how much a pixel tells a
    correlation fit such as ECC about position."""
    gx, gy = (cv2.Sobel(plane, cv2.CV_64F, dx, 1 - dx) for dx in (1, 0))
    return gx**2 + gy**2


def nearest_similarity(affine: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The (3, 3) similarity that moves each pixel of an (H, W) plane closest to where the (3, 3)
    pixel transform ``affine`` moves it, least squares weighted by ``weights`` (H, W). An affine fit
    to a focus stack's neighbours is sure only where they hold detail, often a band at one side; its
    shear and stretch elsewhere are guesses, and a projection that ignored where the detail lies
    (the linear part's mean, the top-left corner kept) put a 24-frame stack's links up to 0.26 px
    out at the corners, which the chain adds up (docs/results.md)."""
    total = float(weights.sum())
    if total <= 0:
        weights, total = np.ones_like(weights), float(weights.size)
    ys, xs = np.indices(weights.shape, dtype=np.float64)
    centre = np.array([(weights * xs).sum(), (weights * ys).sum()]) / total
    xs, ys = xs - centre[0], ys - centre[1]
    sxx, sxy, syy = ((weights * u * v).sum() for u, v in ((xs, xs), (xs, ys), (ys, ys)))
    (a, b), (c, d) = affine[:2, :2]
    scale_cos = (a * sxx + (b + c) * sxy + d * syy) / (sxx + syy)
    scale_sin = (c * sxx + (d - a) * sxy - b * syy) / (sxx + syy)
    similarity = np.eye(3)
    similarity[:2, :2] = [[scale_cos, -scale_sin], [scale_sin, scale_cos]]
    similarity[:2, 2] = affine[:2, :2] @ centre + affine[:2, 2] - similarity[:2, :2] @ centre  # both agree at the detail's centre
    return similarity


def _matched(moving: np.ndarray, fixed: np.ndarray, model: str) -> np.ndarray:
    """(3, 3) float32: the pixel transform that takes ``fixed``'s (H, W) plane to ``moving``'s, fitted by
    RANSAC to their matched SIFT features (each feature of ``moving`` matched once); the identity
    where fewer than :data:`MIN_MATCHES` back a fit or the fit scales by more than :data:`MAX_SCALE`
    (repeated patterns), from which ECC starts as from a registered pair."""
    sift = cv2.SIFT_create()
    (kf, df), (km, dm) = (sift.detectAndCompute(np.clip(plane * 255 + 0.5, 0, 255).astype(np.uint8), None) for plane in (fixed, moving))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(df, dm, k=2) if df is not None and dm is not None and len(dm) >= 2 else []
    good = [best for best, second in (pair for pair in pairs if len(pair) == 2) if best.distance < RATIO * second.distance]
    taken = np.unique([match.trainIdx for match in good], return_counts=True)
    once = set(taken[0][taken[1] == 1].tolist())
    good = [match for match in good if match.trainIdx in once]
    if len(good) >= MIN_MATCHES:
        at_fixed = np.float32([kf[match.queryIdx].pt for match in good])
        at_moving = np.float32([km[match.trainIdx].pt for match in good])
        if model == "homography":
            fit, mask = cv2.findHomography(at_fixed, at_moving, cv2.RANSAC, RANSAC_PX, maxIters=5000)
        else:
            fit, mask = cv2.estimateAffinePartial2D(at_fixed, at_moving, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=5000, refineIters=50)
        if fit is not None and int(mask.sum()) >= MIN_MATCHES:
            fit = np.vstack([fit, [0.0, 0.0, 1.0]]) if fit.shape[0] == 2 else fit / fit[2, 2]
            if 1 / MAX_SCALE <= math.sqrt(abs(np.linalg.det(fit[:2, :2]))) <= MAX_SCALE:
                return fit.astype(np.float32)
    return np.eye(3, dtype=np.float32)


class Registration(NamedTuple):
    """Sources registered onto the first one's frame."""

    images: list[torch.Tensor]
    """(C, H, W) each in its source's type, warped onto the first's frame (uncovered pixels repeat the source's edge)."""
    box: tuple[int, int, int, int]
    """(top, bottom, left, right; ends exclusive): the part of the frame every warped source covers."""
    moves: list[float | None]
    """Per source after the first: how far its warp moves a corner (px), ``None`` where it was left as it is."""

    def describe(self) -> str:
        """One line: what was done to each source, and the size kept."""
        top, bottom, left, right = self.box
        height, width = self.images[0].shape[-2:]
        done = [f"source {k} {'left as it is' if move is None else f'moved by up to {move:.1f} px'}" for k, move in enumerate(self.moves, start=2)]
        kept = "the whole frame kept" if (bottom - top, right - left) == (height, width) else f"cropped to {right - left}x{bottom - top} of {width}x{height}"
        return f"{', '.join(done)}; {kept}"


def align(images: Sequence[torch.Tensor], model: str = "similarity", report: Callable[[str], None] | None = None) -> list[torch.Tensor]:
    """(C, H, W) sources (float32 in [0, 1], or uint8/uint16 as decoded, each made float in turn) ->
    the same sources in their own type, registered onto the first and cropped to the area they all
    cover (every output one size, at most a few per cent smaller than the sources); ``report`` gets
    :meth:`Registration.describe`'s line."""
    registration = register(images, model)
    if report is not None:
        report(registration.describe())
    top, bottom, left, right = registration.box
    return [image[:, top:bottom, left:right] for image in registration.images]


def register(images: Sequence[torch.Tensor], model: str = "similarity") -> Registration:
    """(C, H, W) sources -> each warped onto the first's frame, and the box of that frame that every
    warped source covers. Each source is fitted onto the one before it and the fits are chained: in a
    long focus stack the first and last frames share little detail in focus, neighbours the most
    (docs/results.md). A warped 8- or 16-bit source is rounded back to its type (half a step at most,
    which writing the fused file would round anyway): a long stack's frames stay 1-2 bytes a value, not 4."""
    check_fusion_sources(images, "(C, H, W)")
    height, width = images[0].shape[-2:]
    first, grid = images[0][None], None
    warped, covered, moves = [first], torch.ones(height, width, dtype=torch.bool), []

    def reach(transform: torch.Tensor) -> float:
        """Pixels the farthest corner of the frame moves under ``transform``."""
        return float(corner_moves(transform, height, width).norm(dim=1).max())

    chain = torch.eye(3)[None]  # the last source's transform onto the first
    for k, stored in enumerate(images[1:], start=2):
        previous = images[k - 2][None]
        step = estimate(stored[None], previous, model)  # onto its neighbour, which shares the most detail in focus
        candidate = step @ chain
        moved = reach(candidate)
        if moved > MAX_MOVE * math.hypot(height, width):
            raise UserError(
                f"cannot align source {k} to source 1: the estimate moves a corner by {moved:.0f} px "
                "(the sources may show different scenes); fuse without --align"
            )
        if reach(step) >= MIN_MOVE and improves_edges(stored[None], previous, step):  # else registered already, or a fit to defocus
            chain = candidate
        else:
            moved = reach(chain)
        if moved < MIN_MOVE:
            warped.append(stored[None])
            moves.append(None)
            continue
        moves.append(moved)
        if grid is None:  # the frame's sampling points, made once for every source
            grid = create_meshgrid(height, width, normalized_coordinates=True, device=stored.device, align_corners=False)
        image, inside = warp(stored, chain.to(stored.device), grid)
        warped.append(image[None])
        covered &= inside.cpu()
    box = _inner_box(covered)
    top, bottom, left, right = box
    if (bottom - top) * (right - left) < height * width / 2:
        raise UserError("the aligned sources share less than half the frame; fuse without --align")
    return Registration([image[0] for image in warped], box, moves)


def warp(image: torch.Tensor, transform: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A (C, H, W) source (float, or 8/16-bit made float) under a normalised (1, 3, 3) ``transform``
    onto ``grid`` (kornia's normalised (1, H, W, 2) meshgrid of the frame), in the source's type, and
    where it covers the frame fully ((H, W) bool: a bilinear warp of ones, zeros outside, above 0.999),
    :data:`WARP_ROWS` rows at a time. Bicubic, the edge replicated for the kernel's reach: bilinear
    sampling softens fine detail by up to 5 dB against the sharp source (docs/results.md)."""
    source = unit_range(image)[None].float()
    transform = transform.to(source.dtype)
    ones = torch.ones(1, 1, 1, 1, dtype=source.dtype, device=source.device).expand(1, 1, *source.shape[-2:])
    out = torch.empty_like(image)
    inside = torch.empty(image.shape[-2:], dtype=torch.bool, device=image.device)
    for top in range(0, image.shape[-2], WARP_ROWS):
        rows = slice(top, top + WARP_ROWS)
        points = warp_grid(grid[:, rows], transform)
        sampled = F.grid_sample(source, points, mode="bicubic", padding_mode="border", align_corners=False)
        out[:, rows] = stored_as(sampled.clamp_(0.0, 1.0)[0], image.dtype)
        inside[rows] = F.grid_sample(ones, points, align_corners=False)[0, 0] > 0.999
    return out, inside


def _inner_box(valid: torch.Tensor) -> tuple[int, int, int, int]:
    """A large axis-aligned box (top, bottom, left, right; ends exclusive) inside the ``valid`` pixels:
    the frame shrunk from whichever side holds the most invalid pixels until none is left."""
    top, bottom, left, right = 0, valid.shape[0], 0, valid.shape[1]
    while bottom > top and right > left:
        box = valid[top:bottom, left:right]
        sides = {"top": box[0], "bottom": box[-1], "left": box[:, 0], "right": box[:, -1]}
        invalid = {side: int((~edge).sum()) for side, edge in sides.items()}
        worst = max(invalid, key=invalid.get)
        if invalid[worst] == 0:
            break
        top, bottom, left, right = top + (worst == "top"), bottom - (worst == "bottom"), left + (worst == "left"), right - (worst == "right")
    return top, bottom, left, right
