"""Contrastive loss on pair distances (Hadsell, Chopra & LeCun 2006).

For a pair at distance ``d`` with ``same`` = 1 for the same person and 0 otherwise:
``same * d^2 + (1 - same) * max(0, margin - d)^2``.
"""

from __future__ import annotations

import torch
from torch import nn

from siamface.errors import ConfigError
from siamface.losses.base import DISTANCES, REDUCTIONS, check_choice, pair_distance, reduce

__all__ = ["ContrastiveLoss", "contrastive_loss"]


def contrastive_loss(
    distance: torch.Tensor, same: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Contrastive loss of pair ``distance`` (N,) given ``same`` (N,) in {0, 1}."""
    same = same.to(distance.dtype)
    per_pair = same * distance.pow(2) + (1.0 - same) * torch.relu(margin - distance).pow(2)
    return reduce(per_pair, reduction)


class ContrastiveLoss(nn.Module):
    """Module form of ``contrastive_loss``. ``forward(distance, same)`` takes the distances
    the Siamese model returns; ``from_embeddings(a, b, same)`` computes them first with
    ``distance`` (euclidean, squared_euclidean or cosine)."""

    def __init__(self, margin: float = 1.0, *, distance: str = "euclidean",
                 reduction: str = "mean"):
        super().__init__()
        if margin <= 0:
            raise ConfigError(f"contrastive margin must be positive, got {margin}")
        self.margin = float(margin)
        self.distance = check_choice("distance", distance, DISTANCES)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)

    def forward(self, distance: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(distance, same, self.margin, self.reduction)

    def from_embeddings(self, a: torch.Tensor, b: torch.Tensor, same: torch.Tensor
                        ) -> torch.Tensor:
        """The loss of embedding pairs ``a``, ``b`` (N, D)."""
        return self(pair_distance(a, b, self.distance), same)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance!r}, reduction={self.reduction!r}"
