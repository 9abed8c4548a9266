"""siamface: face verification and gender classification with one multi-task Siamese network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["FaceResult", "FaceService", "VerifyResult", "__version__", "load"]

if TYPE_CHECKING:
    from siamface.service import FaceResult, FaceService, VerifyResult


def load(path: Any = None, **kwargs: Any) -> FaceService:
    """Load a model (the shipped default when ``path`` is None); see :func:`siamface.service.load`."""
    from siamface.service import load as _load

    return _load(path, **kwargs)


def __getattr__(name: str) -> Any:
    if name in {"FaceService", "VerifyResult", "FaceResult"}:
        from siamface import service

        return getattr(service, name)
    raise AttributeError(f"module 'siamface' has no attribute {name!r}")
