"""What an ONNX export holds and where it lives: ``manifest.json`` beside the ``.onnx`` files.

An export folder has ``model.onnx`` (aligned uint8 chips (N, S, S, 3) -> embedding (N, D) and
gender logit (N,), preprocessing and the flip average inside), optionally ``model.int8.onnx``
and MTCNN's ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``, and ``manifest.json`` describing the
checkpoint it came from (its sha256 and description) and each file's sha256. The default folder
is ``<weights cache>/onnx/<first 16 hex of the checkpoint's sha256>-flip<0|1>``.

This module imports neither torch nor onnx: the ONNX runtime reads manifests with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from siamface.errors import CheckpointError

__all__ = [
    "DETECTOR_FILES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODEL_FILE",
    "MODEL_INT8_FILE",
    "ONNX_BACKBONES",
    "OPSET",
    "check_files",
    "default_export_dir",
    "export_key",
    "file_sha256",
    "onnx_cache_dir",
    "read_manifest",
]

FORMAT_NAME = "siamface-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MODEL_FILE = "model.onnx"
MODEL_INT8_FILE = "model.int8.onnx"
DETECTOR_FILES = {"pnet": "pnet.onnx", "rnet": "rnet.onnx", "onet": "onet.onnx"}
OPSET = 17
# Backbones whose graph is exported and checked against PyTorch (tests/test_export.py).
ONNX_BACKBONES = ("dlib-resnet",)
CACHE_ENV = "SIAMFACE_CACHE"  # the weights cache's variable (siamface.backbones.weights)


def onnx_cache_dir() -> Path:
    """``onnx/`` under the weights cache (``$SIAMFACE_CACHE`` if set, else
    ``~/.cache/siamface/weights``; the same folder as
    :func:`siamface.backbones.weights.weights_cache_dir`, which would import torch)."""
    env = os.environ.get(CACHE_ENV)
    weights = Path(env).expanduser() if env else Path.home() / ".cache" / "siamface" / "weights"
    return weights / "onnx"


def export_key(checkpoint_sha256: str, flip: bool) -> str:
    """The default export folder's name for a checkpoint and flip setting."""
    return f"{checkpoint_sha256[:16]}-flip{int(bool(flip))}"


def default_export_dir(checkpoint_sha256: str, flip: bool) -> Path:
    """Where ``siamface export`` writes, and ``runtime="onnx"`` looks, by default."""
    return onnx_cache_dir() / export_key(checkpoint_sha256, flip)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``manifest.json`` of an export folder, or a :class:`CheckpointError` saying
    what is wrong with it."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} holds no ONNX export ({MANIFEST_NAME} is missing)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable JSON manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{path} is not a siamface ONNX manifest (format {found!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path} has ONNX export format version {version!r}; this "
                              f"siamface reads 1 to {FORMAT_VERSION}: re-export the model")
    for key in ("checkpoint", "model", "files"):
        if not isinstance(manifest.get(key), dict):
            raise CheckpointError(f"{path}: malformed manifest (no {key!r} object)")
    return manifest


def check_files(folder: str | os.PathLike, manifest: dict[str, Any],
                names: list[str]) -> dict[str, Path]:
    """The paths of the named files (keys of ``manifest["files"]``) after checking each
    one's sha256 against the manifest; :class:`CheckpointError` when one is missing or
    differs."""
    out = {}
    for name in names:
        entry = manifest["files"].get(name)
        if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
            raise CheckpointError(f"the ONNX export in {folder} has no {name!r} file")
        path = Path(folder) / Path(str(entry["file"])).name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing from the ONNX export in {folder}")
        actual = file_sha256(path)
        if actual != entry["sha256"]:
            raise CheckpointError(
                f"{path} has sha256 {actual}, but its manifest says {entry['sha256']}: the "
                "file was changed or corrupted after export; export the model again")
        out[name] = path
    return out
