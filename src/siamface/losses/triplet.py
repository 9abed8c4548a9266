"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017).

For each anchor in the batch: the farthest embedding of the same person (hardest positive)
and the closest of another person (hardest negative); loss ``max(0, d_ap - d_an + margin)``
(or ``softplus(d_ap - d_an)`` when ``soft``). Anchors with no positive or no negative in the
batch do not count. Use with ``siamface.data.MPerPersonSampler``.
"""

from __future__ import annotations

import torch
from torch import nn

from siamface.errors import ConfigError
from siamface.losses.base import (
    DISTANCES,
    REDUCTIONS,
    check_choice,
    distance_matrix,
    reduce,
)

__all__ = ["BatchHardTripletLoss", "batch_hard_triplet_loss"]


def batch_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    distance: str = "euclidean",
    reduction: str = "mean",
    soft: bool = False,
) -> torch.Tensor:
    """Batch-hard triplet loss of ``embeddings`` (N, D) with person ``labels`` (N,).
    ``"mean"`` averages over anchors that have both a positive and a negative."""
    dist = distance_matrix(embeddings, distance)
    labels = labels.reshape(-1).to(embeddings.device)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
    positive = same & ~eye
    negative = ~same
    neg_inf = torch.tensor(float("-inf"), dtype=dist.dtype, device=dist.device)
    pos_inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    hardest_pos = torch.where(positive, dist, neg_inf).max(dim=1).values
    hardest_neg = torch.where(negative, dist, pos_inf).min(dim=1).values
    valid = positive.any(dim=1) & negative.any(dim=1)
    gap = torch.where(valid, hardest_pos - hardest_neg, torch.zeros_like(hardest_pos))
    per_anchor = nn.functional.softplus(gap) if soft else torch.relu(gap + margin)
    return reduce(per_anchor, reduction, valid)


class BatchHardTripletLoss(nn.Module):
    """Module form of ``batch_hard_triplet_loss``."""

    def __init__(self, margin: float = 0.2, *, distance: str = "euclidean",
                 reduction: str = "mean", soft: bool = False):
        super().__init__()
        if margin < 0:
            raise ConfigError(f"triplet margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.distance = check_choice("distance", distance, DISTANCES)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.soft = soft

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return batch_hard_triplet_loss(embeddings, labels, self.margin, self.distance,
                                       self.reduction, self.soft)

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, distance={self.distance!r}, "
                f"reduction={self.reduction!r}, soft={self.soft}")
