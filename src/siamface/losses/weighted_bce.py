"""Class-weighted binary cross-entropy for gender, with unknown labels masked out.

Labels: 0 = male, 1 = female, -1 or NaN = unknown (ignored). Each labelled sample's loss is
multiplied by its class weight; ``"mean"`` divides by the number of labelled samples
(the Keras ``class_weight`` rule), so ``"balanced"`` weights keep the loss scale of an
unweighted BCE on balanced data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from siamface.errors import ConfigError, DatasetError
from siamface.losses.base import REDUCTIONS, check_choice, label_mask, reduce

__all__ = ["WeightedBCELoss", "balanced_class_weights", "weighted_bce_loss"]


def balanced_class_weights(labels: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    """``n_samples / (2 * count[c])`` for classes 0 and 1, as sklearn's
    ``compute_class_weight("balanced")``; unknown labels (-1, NaN) are not counted.
    Returns float64 array ``[w_male, w_female]``."""
    values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
    values = np.asarray(values, dtype=np.float64).ravel()
    known = values[~np.isnan(values) & (values >= 0)]
    bad = np.setdiff1d(np.unique(known), [0.0, 1.0])
    if bad.size:
        raise DatasetError(f"gender labels must be 0, 1, or -1/NaN for unknown; got {bad[:5]}")
    counts = np.array([(known == 0).sum(), (known == 1).sum()], dtype=np.float64)
    if (counts == 0).any():
        missing = "male (0)" if counts[0] == 0 else "female (1)"
        raise DatasetError(
            f"cannot balance class weights: no {missing} labels among {known.size} known "
            f"labels; train on data with both genders or pass explicit weights"
        )
    return known.size / (2.0 * counts)


def weighted_bce_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` (N,) against ``labels`` (N,), weighted per class
    (``class_weights`` = ``[w0, w1]``, None for 1, 1) and masking unknown labels."""
    logits = logits.reshape(-1)
    valid, targets = label_mask(labels.reshape(-1).to(logits.device))
    targets = targets.to(logits.dtype)
    per_item = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if class_weights is not None:
        w = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        per_item = per_item * torch.where(targets > 0.5, w[1], w[0])
    return reduce(per_item, reduction, valid)


class WeightedBCELoss(nn.Module):
    """Module form of ``weighted_bce_loss``; build it with ``WeightedBCELoss.balanced(train
    labels)`` for sklearn-style balanced weights."""

    def __init__(self, class_weights: Sequence[float] | None = None, *,
                 reduction: str = "mean"):
        super().__init__()
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        weights = torch.ones(2) if class_weights is None else torch.as_tensor(
            class_weights, dtype=torch.float32)
        if weights.shape != (2,) or bool((weights < 0).any()):
            raise ConfigError(
                f"class_weights must be two non-negative numbers, got {class_weights}")
        self.register_buffer("class_weights", weights)

    @classmethod
    def balanced(cls, labels: Sequence[float] | np.ndarray | torch.Tensor, *,
                 reduction: str = "mean") -> WeightedBCELoss:
        """A loss with ``balanced_class_weights(labels)`` (labels of the training set)."""
        return cls(balanced_class_weights(labels).tolist(), reduction=reduction)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return weighted_bce_loss(logits, labels, self.class_weights, self.reduction)

    def extra_repr(self) -> str:
        return f"class_weights={self.class_weights.tolist()}, reduction={self.reduction!r}"
