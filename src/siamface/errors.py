"""Exception types. Every error a user can cause is one of these, with a message that says
what was wrong, what was expected and how to fix it."""

from __future__ import annotations

import difflib

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "NoFaceError",
    "SiamfaceError",
    "UnknownNameError",
    "WeightsHashError",
    "WeightsNotFoundError",
]


class SiamfaceError(Exception):
    """Base class of every error siamface raises on purpose."""


class ImageDecodeError(SiamfaceError, ValueError):
    """An image could not be read. ``source`` names it, ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read image {source}: {reason}")


class ImageTooLargeError(ImageDecodeError):
    """The image header announces more pixels than the configured limit."""


class NoFaceError(SiamfaceError, ValueError):
    """An image holds no face to embed (the fallback policy refused its centre crop)."""

    def __init__(self, source: str, reason: str, count: int = 1):
        self.source, self.reason, self.count = source, reason, count
        more = f" (and {count - 1} more image(s))" if count > 1 else ""
        super().__init__(f"no face in {source}: {reason}{more}")


class WeightsNotFoundError(SiamfaceError, FileNotFoundError):
    """Pretrained weights are not where they should be (we never download implicitly)."""


class WeightsHashError(SiamfaceError, ValueError):
    """A weights file exists but its sha256 is not the expected one."""


class CheckpointError(SiamfaceError, ValueError):
    """A checkpoint is malformed, foreign, or made for another backbone."""


class ConfigError(SiamfaceError, ValueError):
    """A configuration value or key is invalid."""


class DatasetError(SiamfaceError, ValueError):
    """A dataset folder or manifest cannot be used (empty, missing, inconsistent)."""


class UnknownNameError(ConfigError, KeyError):
    """A name (backbone, crop mode, rule...) is not one of the valid choices."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]):
        self.kind = kind
        self.name = name
        self.valid = list(valid)
        close = difflib.get_close_matches(str(name), [str(v) for v in self.valid], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}{hint}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]
