"""The heads' configuration (:class:`HeadConfig`), kept apart from the torch model so that
checkpoint metadata can be read without importing torch (the ONNX runtime does)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from siamface.errors import ConfigError

__all__ = ["HeadConfig"]


@dataclass(frozen=True)
class HeadConfig:
    """Configuration of the two heads.

    normalize: L2-normalise embeddings before the distance.
    projection: a learnable linear map of the embedding, initialised to the identity, so the
        verification head has something to learn while the backbone is frozen.
    gender_dropout: dropout before the gender linear layer (the reference used 0.6).
    gender_classes: class names; the gender logit's sigmoid is the probability of the second.
    """

    normalize: bool = False
    projection: bool = False
    gender_dropout: float = 0.6
    gender_classes: tuple[str, str] = field(default=("male", "female"))

    def __post_init__(self) -> None:
        if not 0.0 <= self.gender_dropout < 1.0:
            raise ConfigError(f"gender_dropout must be in [0, 1), got {self.gender_dropout}")
        if len(self.gender_classes) != 2:
            raise ConfigError(f"gender_classes needs two names, got {self.gender_classes!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "gender_classes": list(self.gender_classes)}

    @classmethod
    def from_dict(cls, data: dict) -> HeadConfig:
        known = {"normalize", "projection", "gender_dropout", "gender_classes"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown head config keys {sorted(unknown)}; valid: {sorted(known)}")
        values = dict(data)
        if "gender_classes" in values:
            values["gender_classes"] = tuple(values["gender_classes"])
        return cls(**values)
