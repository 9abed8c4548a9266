"""Frozen pretrained configurations, without torch.

One :class:`PretrainedConfig` per backbone says where its weights come from (with sha256),
what input it expects and how its embeddings are compared. The input transform
(:class:`siamface.backbones.preprocess.Preprocess`) is derived from it, so a backbone can
never be fed another backbone's normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from siamface.errors import ConfigError

__all__ = ["PretrainedConfig"]


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
