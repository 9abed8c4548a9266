"""The backbone contract every registered network meets."""

from __future__ import annotations

import os
from abc import abstractmethod

import numpy as np
import torch
from torch import nn

from siamface.backbones.config import PretrainedConfig
from siamface.backbones.preprocess import Preprocess
from siamface.errors import ConfigError

__all__ = ["Backbone"]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm)


class Backbone(nn.Module):
    """A face embedding network with a frozen :class:`PretrainedConfig`.

    ``forward`` takes normalised float input (N, 3, S, S); ``preprocess`` builds it from uint8
    RGB chips; ``layer_groups`` lists parameter groups from input to output; ``lock(n)`` freezes
    all but the top ``n`` groups (idempotent: the result depends only on ``n``).
    """

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self._preprocess = Preprocess(config)
        self._frozen_norms: list[nn.Module] = []

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def preprocess(self, chips: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB chips (N, S, S, 3) -> normalised float tensor (N, 3, S, S)."""
        return self._preprocess(chips)

    @abstractmethod
    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        """Named module groups, input to output; together they hold every parameter."""
        raise NotImplementedError

    @abstractmethod
    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a weights file (the published format or a saved state dict)."""
        raise NotImplementedError

    def lock(self, unlocked_groups: int = 0) -> None:
        """Freeze every parameter except those of the top ``unlocked_groups`` groups; norm
        layers in frozen groups stay in eval mode (their running stats are not updated)."""
        groups = self.layer_groups()
        if isinstance(unlocked_groups, bool) or not isinstance(unlocked_groups, int) or not (
            0 <= unlocked_groups <= len(groups)
        ):
            raise ConfigError(
                f"unlocked_groups must be an int in 0..{len(groups)} for backbone "
                f"{self.config.name!r} (groups: {', '.join(n for n, _ in groups)}), "
                f"got {unlocked_groups!r}"
            )
        cut = len(groups) - unlocked_groups
        self._frozen_norms = []
        for i, (_, modules) in enumerate(groups):
            trainable = i >= cut
            for module in modules:
                for p in module.parameters():
                    p.requires_grad_(trainable)
                if not trainable:
                    self._frozen_norms += [m for m in module.modules()
                                           if isinstance(m, _NORM_TYPES)]
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for m in self._frozen_norms:
            m.eval()
        return self

    @torch.inference_mode()
    def embed(self, chips: np.ndarray | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Embeddings (N, embedding_dim) of uint8 RGB chips, computed in eval mode under
        ``inference_mode`` on the model's device; returned as a float32 CPU tensor."""
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            x = self.preprocess(chips)
            outs = []
            for i in range(0, x.shape[0], batch_size):
                batch = x[i:i + batch_size].to(param.device, param.dtype).contiguous(
                    memory_format=torch.channels_last)  # oneDNN's preferred layout on CPU
                outs.append(self(batch).float().cpu())
            if not outs:
                return torch.empty(0, self.embedding_dim)
            return torch.cat(outs)
        finally:
            self.train(was_training)
