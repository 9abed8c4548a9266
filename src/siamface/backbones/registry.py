"""Backbone registry: ``@register_backbone``, ``create_backbone``, ``list_backbones``.

Configs are known without torch (:mod:`siamface.backbones.pretrained`); the built-in
networks' modules are imported, and register their factories, the first time a network is
built."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from siamface.backbones.config import PretrainedConfig
from siamface.backbones.pretrained import BUILTIN_CONFIGS
from siamface.errors import UnknownNameError

if TYPE_CHECKING:
    from siamface.backbones.base import Backbone

__all__ = [
    "DEFAULT_BACKBONE",
    "create_backbone",
    "get_pretrained_config",
    "list_backbones",
    "register_backbone",
]

DEFAULT_BACKBONE = "dlib-resnet"
Factory = Callable[[PretrainedConfig], "Backbone"]
F = TypeVar("F", bound=Factory)
_BUILTIN_MODULES = ("siamface.backbones.dlib_resnet", "siamface.backbones.facenet")
_CONFIGS: dict[str, PretrainedConfig] = dict(BUILTIN_CONFIGS)
_FACTORIES: dict[str, Factory] = {}


def register_backbone(name: str, config: PretrainedConfig) -> Callable[[F], F]:
    """Register ``factory(config) -> Backbone`` (random weights) under ``name``."""

    def decorator(factory: F) -> F:
        if name in _FACTORIES or (name in _CONFIGS and _CONFIGS[name] is not config):
            raise ValueError(f"backbone {name!r} is already registered")
        if config.name != name:
            raise ValueError(f"config name {config.name!r} differs from {name!r}")
        _CONFIGS[name] = config
        _FACTORIES[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return sorted(_CONFIGS)


def get_pretrained_config(name: str) -> PretrainedConfig:
    """The frozen config of backbone ``name`` (never imports a network)."""
    try:
        return _CONFIGS[name]
    except KeyError:
        raise UnknownNameError("backbone", name, list_backbones()) from None


def _factory(name: str) -> Factory:
    get_pretrained_config(name)  # unknown names fail here
    if name not in _FACTORIES:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)  # registers the built-in networks
    return _FACTORIES[name]


def create_backbone(name: str = DEFAULT_BACKBONE, pretrained: bool = True,
                    weights: str | os.PathLike | None = None) -> Backbone:
    """Build backbone ``name``; load its published weights (``pretrained``) or ``weights``.

    Never downloads: missing published weights raise :class:`WeightsNotFoundError` naming the
    expected path, its sha256 and the fetch command. ``pretrained=False`` without ``weights``
    gives random initialisation.
    """
    from siamface.backbones.weights import resolve_weights

    config = get_pretrained_config(name)
    model = _factory(name)(config)
    if pretrained or weights is not None:
        model.load_weights(resolve_weights(config, weights))
    model.eval()
    return model
