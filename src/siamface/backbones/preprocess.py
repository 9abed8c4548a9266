"""The input transform of a backbone, built from its :class:`PretrainedConfig`."""

from __future__ import annotations

import numpy as np
import torch

from siamface.backbones.config import PretrainedConfig
from siamface.errors import ConfigError

__all__ = ["Preprocess"]


class Preprocess:
    """uint8 RGB chips (N, S, S, 3) or one chip (S, S, 3), numpy or tensor -> normalised
    float32 tensor (N, 3, S, S)."""

    def __init__(self, config: PretrainedConfig):
        self.config = config
        self.size = config.input_size
        self._mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._inv_scale = 1.0 / float(config.scale)

    def __call__(self, chips: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(chips)) if isinstance(chips, np.ndarray) \
            else chips
        if not isinstance(x, torch.Tensor):
            raise ConfigError(f"chips must be a numpy array or a tensor, got {type(chips)}")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        s = self.size
        if x.ndim != 4 or tuple(x.shape[1:]) != (s, s, 3):
            raise ConfigError(
                f"backbone {self.config.name!r} expects RGB chips of shape (N, {s}, {s}, 3), "
                f"got {tuple(x.shape)}; crop with chip_size={s}"
            )
        if x.dtype not in (torch.uint8, torch.float32, torch.float64):
            raise ConfigError(f"chips must be uint8 (or float 0..255), got {x.dtype}")
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        return ((x - self._mean.to(x.device)) * self._inv_scale).contiguous()

    def __repr__(self) -> str:
        c = self.config
        return f"Preprocess({c.name}: {c.input_size}px RGB, (x - {c.mean}) / {c.scale})"
