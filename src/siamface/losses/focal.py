"""Binary focal loss (Lin et al. 2017) with unknown labels masked out.

``FL = -alpha_t * (1 - p_t)^gamma * log(p_t)`` where ``p_t`` is the probability given to the
true class and ``alpha_t`` is ``alpha`` for label 1 and ``1 - alpha`` for label 0 (``alpha``
None: no class factor). ``gamma = 0, alpha = None`` is plain BCE.
"""

from __future__ import annotations

import torch
from torch import nn

from siamface.errors import ConfigError
from siamface.losses.base import REDUCTIONS, check_choice, label_mask, reduce

__all__ = ["FocalLoss", "focal_loss"]


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss of ``logits`` (N,) against ``labels`` (N,) in {0, 1}; -1/NaN ignored."""
    logits = logits.reshape(-1)
    valid, targets = label_mask(labels.reshape(-1).to(logits.device))
    targets = targets.to(logits.dtype)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1.0 - p) * (1.0 - targets)
    per_item = bce * (1.0 - p_t).pow(gamma)
    if alpha is not None:
        per_item = per_item * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
    return reduce(per_item, reduction, valid)


class FocalLoss(nn.Module):
    """Module form of ``focal_loss``."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25, *,
                 reduction: str = "mean"):
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"focal alpha must be in [0, 1] or None, got {alpha}")
        self.gamma = float(gamma)
        self.alpha = alpha
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, labels, self.gamma, self.alpha, self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"
