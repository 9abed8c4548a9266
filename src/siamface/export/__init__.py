"""Exporting a model for other runtimes: ``export_onnx(out, model)`` writes ONNX graphs of the
model (aligned chips -> embedding, gender logit) and of MTCNN, with a ``manifest.json``.

:mod:`siamface.export.manifest` (the folder layout and its checks) imports neither torch nor
onnx, so the ONNX runtime uses it; :func:`export_onnx` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from siamface.export.manifest import (
    MANIFEST_NAME,
    ONNX_BACKBONES,
    default_export_dir,
    onnx_cache_dir,
    read_manifest,
)

__all__ = [
    "MANIFEST_NAME",
    "ONNX_BACKBONES",
    "OnnxExport",
    "default_export_dir",
    "export_onnx",
    "onnx_cache_dir",
    "read_manifest",
]

if TYPE_CHECKING:
    from siamface.export.onnx import OnnxExport, export_onnx


def __getattr__(name: str) -> Any:
    if name in {"export_onnx", "OnnxExport"}:
        from siamface.export import onnx as _onnx

        return getattr(_onnx, name)
    raise AttributeError(f"module 'siamface.export' has no attribute {name!r}")
