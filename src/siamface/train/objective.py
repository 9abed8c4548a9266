"""The multi-task objective: a verification loss on pair distances (contrastive) or on the
batch's embeddings with person labels (batch-hard triplet, pair hinge), plus a gender loss on
each image of the pair, weighted and summed. Returns the named parts and the weighted total."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from siamface.losses import (
    BatchHardTripletLoss,
    ContrastiveLoss,
    FocalLoss,
    PairHingeLoss,
    WeightedBCELoss,
    balanced_class_weights,
    pair_distance,
)
from siamface.train.config import LossConfig

__all__ = ["MultiTaskLoss", "gender_class_weights"]


def gender_class_weights(config: LossConfig, labels: Sequence[int] | np.ndarray) -> list[float]:
    """``[w_male, w_female]``: sklearn-style balanced weights on the training labels (unknown
    labels -1 not counted), or ``[1, 1]``."""
    if config.gender_weights == "none":
        return [1.0, 1.0]
    values = np.asarray(labels)
    known = values[values >= 0]
    if known.size == 0 or len(np.unique(known)) < 2:
        return [1.0, 1.0]
    return [float(w) for w in balanced_class_weights(values)]


class MultiTaskLoss(nn.Module):
    """``forward(emb_a, emb_b, logit_a, logit_b, same, gender_a, gender_b, person_a,
    person_b)`` -> dict with ``verification``, ``gender_a``, ``gender_b`` and ``total``
    (``verification_weight * verification + gender_weight * (gender_a + gender_b)``)."""

    def __init__(self, config: LossConfig, class_weights: Sequence[float] = (1.0, 1.0)):
        super().__init__()
        self.config = config
        self.class_weights = [float(w) for w in class_weights]
        if config.verification == "contrastive":
            self.verification: nn.Module = ContrastiveLoss(config.margin)
        elif config.verification == "triplet":
            self.verification = BatchHardTripletLoss(config.triplet_margin)
        else:
            self.verification = PairHingeLoss(config.hinge_threshold, config.hinge_margin)
        if config.gender == "bce":
            self.gender: nn.Module = WeightedBCELoss(self.class_weights)
        else:
            # alpha weights the female (positive) class like the balanced weights would
            w0, w1 = self.class_weights
            self.gender = FocalLoss(config.focal_gamma, alpha=w1 / (w0 + w1))

    def forward(self, emb_a: torch.Tensor, emb_b: torch.Tensor, logit_a: torch.Tensor,
                logit_b: torch.Tensor, same: torch.Tensor, gender_a: torch.Tensor,
                gender_b: torch.Tensor, person_a: torch.Tensor | None = None,
                person_b: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.config.verification == "contrastive":
            verification = self.verification(pair_distance(emb_a, emb_b), same)
        else:
            if person_a is None or person_b is None:
                raise ValueError(f"the {self.config.verification} loss needs person labels")
            verification = self.verification(torch.cat([emb_a, emb_b]),
                                              torch.cat([person_a, person_b]))
        parts = {
            "verification": verification,
            "gender_a": self.gender(logit_a, gender_a),
            "gender_b": self.gender(logit_b, gender_b),
        }
        c = self.config
        parts["total"] = (c.verification_weight * parts["verification"]
                          + c.gender_weight * (parts["gender_a"] + parts["gender_b"]))
        return parts
