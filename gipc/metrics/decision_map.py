"""Decision maps scored against the true map of a synthesized pair: pixel accuracy and boundary F-score.

Both binarise at 0.5 (1 where source A is in focus); the true maps of synthesized pairs are soft
across their boundaries, so their 0.5 level set is the boundary. The boundary F-score is the
BSDS-style measure of Martin, Fowlkes and Malik (2004) with a fixed tolerance: a predicted
boundary pixel counts as right when a true one lies within ``tolerance`` pixels (chessboard
distance), and the other way round for recall.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BOUNDARY_TOLERANCE = 2
"""Pixels a boundary may be off and still count (0.3 % of a 520x520 Lytro pair's diagonal; BSDS uses 0.75 %)."""


def _binary(decision: torch.Tensor) -> torch.Tensor:
    if decision.ndim != 4 or decision.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W) decision maps, got {tuple(decision.shape)}")
    return decision >= 0.5


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0


def map_boundary(decision: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool: pixels of a binarised map with a 4-neighbour of the other label."""
    m = _binary(decision).float()
    padded = F.pad(m, (1, 1, 1, 1), mode="replicate")
    neighbours = (padded[..., :-2, 1:-1], padded[..., 2:, 1:-1], padded[..., 1:-1, :-2], padded[..., 1:-1, 2:])
    return torch.stack([n != m for n in neighbours]).any(dim=0)


def map_accuracy(decision: torch.Tensor, true_map: torch.Tensor) -> torch.Tensor:
    """(N,) share of pixels whose binarised ``decision`` agrees with the binarised ``true_map``."""
    return (_binary(decision) == _binary(true_map)).flatten(1).double().mean(dim=1)


def map_boundary_f(decision: torch.Tensor, true_map: torch.Tensor, tolerance: int = BOUNDARY_TOLERANCE) -> torch.Tensor:
    """(N,) boundary F-score: 1 when both maps have no boundary, 0 when only one has."""
    predicted, true = map_boundary(decision), map_boundary(true_map)
    hits_p = (predicted & _dilate(true, tolerance)).flatten(1).sum(dim=1).double()
    hits_t = (true & _dilate(predicted, tolerance)).flatten(1).sum(dim=1).double()
    n_p, n_t = predicted.flatten(1).sum(dim=1).double(), true.flatten(1).sum(dim=1).double()
    precision = torch.where(n_p > 0, hits_p / n_p.clamp_min(1), (n_t == 0).double())
    recall = torch.where(n_t > 0, hits_t / n_t.clamp_min(1), (n_p == 0).double())
    return torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), torch.zeros_like(precision))


MAP_SYMBOLS = {"MAP_ACC": "Map acc.", "MAP_BF": "Map $F_b$"}
"""The report's map columns (both higher is better) and their names as tables print them, in LaTeX."""


def map_scores(decision: torch.Tensor, true_map: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"MAP_ACC", "MAP_BF"}`` per image: the report's columns for a method that makes a map."""
    return {"MAP_ACC": map_accuracy(decision, true_map), "MAP_BF": map_boundary_f(decision, true_map)}

