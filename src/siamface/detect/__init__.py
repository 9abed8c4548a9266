"""MTCNN face detection: ``MTCNN(...).detect(image) -> Detections`` (PyTorch networks).

The algorithm and box math are numpy (:mod:`siamface.detect.cascade`), so the ONNX runtime
imports them without torch; ``MTCNN`` is imported on first use for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from siamface.detect.cascade import Detections

__all__ = ["MTCNN", "Detections"]

if TYPE_CHECKING:
    from siamface.detect.mtcnn import MTCNN


def __getattr__(name: str) -> Any:
    if name == "MTCNN":
        from siamface.detect.mtcnn import MTCNN

        return MTCNN
    raise AttributeError(f"module 'siamface.detect' has no attribute {name!r}")
