"""Shared parts of the losses: distances, label masking and reduction."""

from __future__ import annotations

import torch

from siamface.errors import UnknownNameError

__all__ = [
    "DISTANCES",
    "REDUCTIONS",
    "check_choice",
    "distance_matrix",
    "label_mask",
    "pair_distance",
    "reduce",
]

REDUCTIONS = ("mean", "sum", "none")
DISTANCES = ("euclidean", "squared_euclidean", "cosine")
_EPS = 1e-12


def check_choice(kind: str, value: str, valid: tuple[str, ...]) -> str:
    """``value`` if it is in ``valid``, else ``UnknownNameError`` listing them."""
    if value not in valid:
        raise UnknownNameError(kind, value, valid)
    return value


def reduce(values: torch.Tensor, reduction: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce per-item losses. With ``mask`` only the masked-in items count; ``"mean"`` over
    none of them is 0 (still connected to the graph), never NaN; ``"none"`` returns the
    values with masked-out items set to 0."""
    check_choice("reduction", reduction, REDUCTIONS)
    if mask is not None:
        values = torch.where(mask, values, torch.zeros_like(values))
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    count = values.numel() if mask is None else int(mask.sum())
    return total / max(count, 1)


def pair_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Row-wise distance between ``a`` and ``b`` (N, D) -> (N,). The euclidean root is taken
    of a clamped square, so identical rows have a finite gradient."""
    check_choice("distance", distance, DISTANCES)
    if distance == "cosine":
        return 1.0 - torch.nn.functional.cosine_similarity(a, b, dim=1)
    squared = (a - b).pow(2).sum(dim=1)
    return squared if distance == "squared_euclidean" else squared.clamp_min(_EPS).sqrt()


def distance_matrix(x: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """All pairwise distances between rows of ``x`` (N, D) -> (N, N)."""
    check_choice("distance", distance, DISTANCES)
    if distance == "cosine":
        unit = torch.nn.functional.normalize(x, dim=1)
        return 1.0 - unit @ unit.T
    # the Gram form keeps memory at N x N (the difference tensor would be N x N x D)
    norms = x.pow(2).sum(dim=1)
    squared = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * (x @ x.T)).clamp_min(0.0)
    squared = squared * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))
    return squared if distance == "squared_euclidean" else squared.clamp_min(_EPS).sqrt()


def label_mask(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid, targets)`` for binary labels where -1 or NaN means unknown: ``valid`` is a
    bool mask, ``targets`` the labels as float with unknowns set to 0."""
    labels = labels.to(torch.float32) if not labels.is_floating_point() else labels
    valid = ~torch.isnan(labels) & (labels >= 0)
    targets = torch.where(valid, labels, torch.zeros_like(labels))
    return valid, targets
