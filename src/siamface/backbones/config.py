"""Frozen pretrained configurations and the input transform built from them.

One :class:`PretrainedConfig` per backbone says where its weights come from (with sha256),
what input it expects and how its embeddings are compared. :class:`Preprocess` is derived from
it, so a backbone can never be fed another backbone's normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from siamface.errors import ConfigError

__all__ = ["Preprocess", "PretrainedConfig"]


@dataclass(frozen=True)
class PretrainedConfig:
    """Everything that travels with one set of pretrained weights.

    Weights come either from an installed Python package (``package`` + ``package_path``, a
    path relative to the package folder) or from ``url``; ``filename`` is the cached file's
    name. ``sha256`` is None where the hash is not known yet (then it cannot be verified).
    Normalisation: ``(pixel - mean[c]) / scale`` on RGB pixels in 0..255.
    """

    name: str
    architecture: str
    weights_name: str
    filename: str
    sha256: str | None
    input_size: int
    mean: tuple[float, float, float]
    scale: float
    embedding_dim: int
    default_threshold: float
    normalized: bool
    layer_groups: tuple[str, ...]
    license: str
    origin: str
    package: str | None = None
    package_path: str | None = None
    url: str | None = None
    crop: str = "aligned"
    template: str = "dlib-150"  # a name in siamface.align.TEMPLATES, scaled to input_size
    chip_padding: float = 0.25
    distance: str = "euclidean"
    channel_order: str = "RGB"
    notes: str = ""

    def __post_init__(self) -> None:
        if (self.package is None) == (self.url is None):
            raise ConfigError(
                f"backbone config {self.name!r} needs exactly one weight source "
                "(package + package_path, or url)"
            )
        if len(self.mean) != 3 or self.scale <= 0:
            raise ConfigError(f"backbone config {self.name!r}: bad normalisation")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for checkpoint metadata)."""
        out = asdict(self)
        out["mean"] = list(self.mean)
        out["layer_groups"] = list(self.layer_groups)
        return out

    def preprocessing(self) -> dict[str, Any]:
        """The subset that defines the input transform and crop."""
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "scale": self.scale,
            "channel_order": self.channel_order,
            "crop": self.crop,
            "template": self.template,
            "chip_padding": self.chip_padding,
        }


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
