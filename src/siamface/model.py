"""The multi-task Siamese network: one shared backbone, a distance head for verification and a
dropout + linear gender head on each embedding."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from siamface.heads import HeadConfig  # re-exported: defined without torch

__all__ = ["HeadConfig", "SiameseMultiTask", "run_chips"]


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


def run_chips(model: SiameseMultiTask, chips: np.ndarray, *, flip: bool = False,
              batch_size: int = 32, device: str | torch.device = "cpu"
              ) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N, D), gender logits (N,)) of aligned uint8 chips (N, S, S, 3), in batches;
    with ``flip`` each face's outputs are averaged with its mirror image's."""
    embeddings, logits = [], []
    backbone = model.backbone
    with torch.inference_mode():
        for start in range(0, len(chips), batch_size):
            x = backbone.preprocess(chips[start:start + batch_size]).to(device)
            x = x.contiguous(memory_format=torch.channels_last)  # faster convolutions on CPU
            if flip:
                n = x.shape[0]
                emb, logit = model.forward_single(torch.cat([x, x.flip(3)]))
                emb = (emb[:n] + emb[n:]) / 2
                logit = (logit[:n] + logit[n:]) / 2
            else:
                emb, logit = model.forward_single(x)
            embeddings.append(emb.float().cpu().numpy())
            logits.append(logit.float().cpu().numpy())
    if not embeddings:
        dim = model.embedding_dim
        return np.zeros((0, dim), np.float32), np.zeros((0,), np.float32)
    return np.concatenate(embeddings), np.concatenate(logits)
