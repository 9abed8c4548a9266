"""Pair hinge loss with hard-negative mining, the form of loss dlib's face ResNet was trained
with (``loss_metric``), so fine-tuning keeps its distance scale and its 0.6 threshold.

Over every pair of embeddings in the batch: a pair of the same person costs
``max(0, d - (threshold - margin))``, a pair of different persons
``max(0, (threshold + margin) - d)``. All same-person pairs count; of the different-person
pairs only the hardest (highest cost) ``k`` count, ``k`` = the number of same-person pairs
(at least 1), so the many easy impostor pairs do not swamp the few genuine ones. The loss is
the mean over the pairs that count.
"""

from __future__ import annotations

import torch
from torch import nn

from siamface.errors import ConfigError
from siamface.losses.base import DISTANCES, check_choice, distance_matrix

__all__ = ["PairHingeLoss", "pair_hinge_loss"]


def pair_hinge_loss(embeddings: torch.Tensor, labels: torch.Tensor, threshold: float = 0.6,
                    margin: float = 0.04, distance: str = "euclidean") -> torch.Tensor:
    """Pair hinge loss of ``embeddings`` (N, D) with person ``labels`` (N,)."""
    dist = distance_matrix(embeddings, distance)
    labels = labels.reshape(-1).to(embeddings.device)
    upper = torch.ones_like(dist, dtype=torch.bool).triu(diagonal=1)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = torch.relu(dist[upper & same] - (threshold - margin))
    negative = torch.relu((threshold + margin) - dist[upper & ~same])
    k = min(negative.numel(), max(positive.numel(), 1))
    hardest = torch.topk(negative, k).values if k else negative
    count = positive.numel() + hardest.numel()
    if count == 0:
        return embeddings.sum() * 0.0
    return (positive.sum() + hardest.sum()) / count


class PairHingeLoss(nn.Module):
    """Module form of ``pair_hinge_loss``."""

    def __init__(self, threshold: float = 0.6, margin: float = 0.04, *,
                 distance: str = "euclidean"):
        super().__init__()
        if threshold <= 0 or not 0 <= margin < threshold:
            raise ConfigError(f"pair hinge needs threshold > 0 and 0 <= margin < threshold, "
                              f"got threshold={threshold}, margin={margin}")
        self.threshold = float(threshold)
        self.margin = float(margin)
        self.distance = check_choice("distance", distance, DISTANCES)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return pair_hinge_loss(embeddings, labels, self.threshold, self.margin, self.distance)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, margin={self.margin}, distance={self.distance!r}"
