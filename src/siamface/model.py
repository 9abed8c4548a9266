"""The multi-task Siamese network: one shared backbone, a distance head for verification and a
dropout + linear gender head on each embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from siamface.heads import HeadConfig  # re-exported: defined without torch

__all__ = ["HeadConfig", "SiameseMultiTask"]


class SiameseMultiTask(nn.Module):
    """Backbone features -> (embedding, gender logit) per image; a pair gives
    (distance, gender_logit_a, gender_logit_b), as the reference model did."""

    def __init__(self, backbone: nn.Module, head: HeadConfig | None = None):
        super().__init__()
        self.head_config = head or HeadConfig()
        self.backbone = backbone
        dim = int(backbone.embedding_dim)
        self.embedding_dim = dim
        if self.head_config.projection:
            self.projection: nn.Module = nn.Linear(dim, dim, bias=False)
            with torch.no_grad():
                self.projection.weight.copy_(torch.eye(dim))
        else:
            self.projection = nn.Identity()
        self.gender_head = nn.Sequential(
            nn.Dropout(self.head_config.gender_dropout), nn.Linear(dim, 1)
        )

    def heads(self, features: torch.Tensor, *, gender_backprop: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply both heads to backbone features (used directly on cached features). Without
        ``gender_backprop`` the gender loss trains the gender head only, not the features."""
        embedding = self.projection(features)
        if self.head_config.normalize:
            embedding = F.normalize(embedding, dim=1)
        gender_logit = self.gender_head(features if gender_backprop else features.detach())
        gender_logit = gender_logit.squeeze(1)
        return embedding, gender_logit

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward per image batch: (embedding (N, D), gender logit (N,))."""
        return self.heads(self.backbone(x))

    @staticmethod
    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Euclidean distance per row, with a gradient that stays finite at zero."""
        return torch.sqrt(((a - b) ** 2).sum(dim=1) + 1e-12)

    def forward(
        self, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb, logits = self.forward_single(torch.cat([a, b], dim=0))
        n = a.shape[0]
        return self.distance(emb[:n], emb[n:]), logits[:n], logits[n:]
