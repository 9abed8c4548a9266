"""Face embedding backbones: a registry of networks, each with one frozen pretrained config.

>>> net = create_backbone("dlib-resnet")          # weights from face_recognition_models
>>> emb = net.embed(chips)                         # uint8 RGB (N, 150, 150, 3) -> (N, 128)

Configs, names and weight files are known without torch; ``Backbone``, ``Preprocess`` and
the networks are imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siamface.backbones.config import PretrainedConfig
from siamface.backbones.registry import (
    DEFAULT_BACKBONE,
    create_backbone,
    get_pretrained_config,
    list_backbones,
    register_backbone,
)
from siamface.backbones.weights import (
    expected_weights_path,
    resolve_weights,
    sha256_file,
    weights_cache_dir,
)
from siamface.backbones.weights import fetch_weights as _fetch_config
from siamface.errors import UnknownNameError

if TYPE_CHECKING:
    from siamface.backbones.base import Backbone
    from siamface.backbones.preprocess import Preprocess

_LAZY = {"Backbone": "siamface.backbones.base", "Preprocess": "siamface.backbones.preprocess"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'siamface.backbones' has no attribute {name!r}")

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "Preprocess",
    "PretrainedConfig",
    "create_backbone",
    "expected_weights_path",
    "fetch_weights",
    "get_pretrained_config",
    "list_backbones",
    "list_weights",
    "register_backbone",
    "resolve_weights",
    "sha256_file",
    "weights_cache_dir",
]


def list_weights() -> dict[str, str]:
    """Published weights names -> backbone name (``facenet-vggface2`` -> ``facenet``)."""
    return {get_pretrained_config(b).weights_name: b for b in list_backbones()}


def fetch_weights(name: str, cache_dir: str | os.PathLike | None = None, *,
                  force: bool = False,
                  progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download the published weights ``name`` (a weights name such as ``facenet-vggface2``
    or a backbone name) into the cache, verifying sha256; returns the file's path."""
    table = list_weights()
    backbone = table.get(name, name if name in list_backbones() else None)
    if backbone is None:
        raise UnknownNameError("weights", name, sorted(set(table) | set(list_backbones())))
    return _fetch_config(get_pretrained_config(backbone), cache_dir, force=force,
                         progress=progress)
