"""Backbone registry: ``@register_backbone``, ``create_backbone``, ``list_backbones``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from siamface.backbones.base import Backbone
from siamface.backbones.config import PretrainedConfig
from siamface.backbones.weights import resolve_weights
from siamface.errors import UnknownNameError

__all__ = [
    "DEFAULT_BACKBONE",
    "create_backbone",
    "get_pretrained_config",
    "list_backbones",
    "register_backbone",
]

DEFAULT_BACKBONE = "dlib-resnet"
Factory = Callable[[PretrainedConfig], Backbone]
F = TypeVar("F", bound=Factory)
_REGISTRY: dict[str, tuple[Factory, PretrainedConfig]] = {}


def register_backbone(name: str, config: PretrainedConfig) -> Callable[[F], F]:
    """Register ``factory(config) -> Backbone`` (random weights) under ``name``."""

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        if config.name != name:
            raise ValueError(f"config name {config.name!r} differs from {name!r}")
        _REGISTRY[name] = (factory, config)
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[Factory, PretrainedConfig]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("backbone", name, list_backbones()) from None


def get_pretrained_config(name: str) -> PretrainedConfig:
    """The frozen config of backbone ``name``."""
    return _entry(name)[1]


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True,
                    weights: str | os.PathLike | None = None) -> Backbone:
    """Build backbone ``name``; load its published weights (``pretrained``) or ``weights``.

    Never downloads: missing published weights raise :class:`WeightsNotFoundError` naming the
    expected path, its sha256 and the fetch command. ``pretrained=False`` without ``weights``
    gives random initialisation.
    """
    factory, config = _entry(name)
    model = factory(config)
    if pretrained or weights is not None:
        model.load_weights(resolve_weights(config, weights))
    model.eval()
    return model
