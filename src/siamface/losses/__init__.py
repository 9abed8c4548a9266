"""Losses, one per module: contrastive (pairs), class-weighted BCE and focal (gender, with
unknown labels masked), batch-hard triplet and pair hinge (embeddings with person labels)."""

from siamface.losses.base import DISTANCES, REDUCTIONS, distance_matrix, pair_distance
from siamface.losses.contrastive import ContrastiveLoss, contrastive_loss
from siamface.losses.focal import FocalLoss, focal_loss
from siamface.losses.pair_hinge import PairHingeLoss, pair_hinge_loss
from siamface.losses.triplet import BatchHardTripletLoss, batch_hard_triplet_loss
from siamface.losses.weighted_bce import (
    WeightedBCELoss,
    balanced_class_weights,
    weighted_bce_loss,
)

__all__ = [
    "DISTANCES",
    "REDUCTIONS",
    "BatchHardTripletLoss",
    "ContrastiveLoss",
    "FocalLoss",
    "PairHingeLoss",
    "WeightedBCELoss",
    "balanced_class_weights",
    "batch_hard_triplet_loss",
    "contrastive_loss",
    "distance_matrix",
    "focal_loss",
    "pair_distance",
    "pair_hinge_loss",
    "weighted_bce_loss",
]
