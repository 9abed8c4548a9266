"""Stages as data: a :class:`~siamface.train.config.StageConfig` says which top layer groups
unlock; these functions turn it into trainable parameters, an optimizer and a schedule."""

from __future__ import annotations

import torch
from torch import nn

from siamface.model import SiameseMultiTask
from siamface.train.config import StageConfig

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "trainable_parameters",
    "unlock",
    "unlocked_group_names",
]


def unlocked_group_names(model: SiameseMultiTask, unlocked_groups: int) -> list[str]:
    """Names of the top ``unlocked_groups`` backbone groups (input-to-output order)."""
    names = [name for name, _ in model.backbone.layer_groups()]
    return names[len(names) - unlocked_groups:] if unlocked_groups else []


def unlock(model: SiameseMultiTask, stage: StageConfig) -> None:
    """Freeze the backbone except its top ``stage.unlocked_groups`` groups; the heads train
    when ``stage.train_heads``."""
    model.backbone.lock(stage.unlocked_groups)
    for name, param in model.named_parameters():
        if not name.startswith("backbone."):
            param.requires_grad_(stage.train_heads)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that will receive gradients, in a stable order."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(params: list[nn.Parameter], stage: StageConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (momentum 0.9) with the stage's learning rate and weight decay."""
    if stage.optimizer == "adam":
        return torch.optim.Adam(params, lr=stage.lr, weight_decay=stage.weight_decay)
    if stage.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    return torch.optim.SGD(params, lr=stage.lr, momentum=0.9, weight_decay=stage.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, stage: StageConfig
                    ) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: constant, or cosine from ``lr`` to ``lr * min_lr_fraction`` over
    the stage's epochs."""
    if stage.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(stage.epochs - 1, 1), eta_min=stage.lr * stage.min_lr_fraction)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
