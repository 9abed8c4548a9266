"""Shared by the ONNX tests: one export of the shipped model (with the detector) per test
process, made through the CLI."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

ONNX_MISSING = "onnxruntime/onnx not installed: pip install 'siamface[onnx]' (the dev extra has it)"
_EXPORTS: dict[tuple[bool, bool], Path] = {}


def require_onnx() -> None:
    """Skip the calling test module when the onnx extra is not installed."""
    pytest.importorskip("onnxruntime", reason=ONNX_MISSING)
    pytest.importorskip("onnx", reason=ONNX_MISSING)


def shipped_export(flip: bool | None = None, with_detector: bool = True) -> Path:
    """A folder with ``siamface export --format onnx [--with-detector]`` of the shipped model
    (made once per process, removed at exit; copy it before changing anything)."""
    key = (flip, with_detector)
    if key not in _EXPORTS:
        from siamface.cli.main import main

        folder = Path(tempfile.mkdtemp(prefix="siamface-onnx-test-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        argv = ["export", "--format", "onnx", "--out", str(folder)]
        argv += ["--with-detector"] if with_detector else []
        argv += [] if flip is None else ["--flip" if flip else "--no-flip"]
        assert main(argv) == 0
        _EXPORTS[key] = folder
    return _EXPORTS[key]


def copy_export(tmp: Path, flip: bool | None = None) -> Path:
    target = tmp / "export"
    shutil.copytree(shipped_export(flip), target)
    return target




def crop_chips(pipeline, paths):
    """The aligned chips ``pipeline`` cuts from ``paths`` (run in a worker process by the
    tests: a module-level function the worker can import)."""
    return [crop.chip for crop in pipeline.crop_batch(list(paths))]
