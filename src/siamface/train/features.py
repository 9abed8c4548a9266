"""Cached inputs for fast training on the CPU.

A backbone is run group by group (:class:`GroupRunner`, in ``layer_groups()`` order). A stage
that unlocks the top ``k`` groups only ever needs the frozen trunk's activations at the
boundary below them, so those are computed once per image and view
(:func:`trunk_activations`) and the stage trains :class:`TopModel` (the unlocked groups + the
heads) on them. With ``k = 0`` the activations are the backbone's features and only the heads
train.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from siamface.errors import ConfigError
from siamface.model import SiameseMultiTask

__all__ = ["GroupRunner", "TopModel", "advance", "make_views", "trunk_activations"]


class GroupRunner:
    """Runs a backbone's layer groups one after another.

    A linear layer that receives a feature map (N, C, H, W) gets its global average first,
    which is how the registered backbones pool before their last linear map. The constructor
    checks on a random input that running all groups equals ``backbone(x)``; where it cannot,
    it raises ``ConfigError`` (the cached-trunk fast path is then unavailable).
    """

    def __init__(self, backbone: nn.Module, *, check: bool = True):
        self.backbone = backbone
        self.groups = backbone.layer_groups()
        if check:
            self._check()

    def __len__(self) -> int:
        return len(self.groups)

    def boundary(self, unlocked_groups: int) -> int:
        """Index of the first unlocked group (= number of frozen groups)."""
        if not 0 <= unlocked_groups <= len(self.groups):
            raise ConfigError(
                f"unlocked_groups must be in 0..{len(self.groups)} (groups: "
                f"{', '.join(n for n, _ in self.groups)}), got {unlocked_groups}"
            )
        return len(self.groups) - unlocked_groups

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Apply groups ``start`` to ``stop`` (exclusive) to ``x``."""
        stop = len(self.groups) if stop is None else stop
        for _, modules in self.groups[start:stop]:
            for module in modules:
                if isinstance(module, nn.Linear) and x.ndim == 4:
                    x = x.mean(dim=(2, 3))
                x = module(x)
        return x

    def _check(self) -> None:
        size = int(self.backbone.config.input_size)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, size, size, generator=gen)
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                expected = self.backbone(x)
                got = self.run(x)
        finally:
            self.backbone.train(was_training)
        if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-4,
                                                              rtol=1e-4):
            raise ConfigError(
                f"backbone {self.backbone.config.name!r} cannot be run group by group (its "
                "forward does more than its layer groups); the cached-trunk training path "
                "needs layer_groups() to cover the forward in order"
            )


class TopModel(nn.Module):
    """The trainable part of a stage: groups ``start:`` of the backbone, then the heads.

    ``forward(activations)`` -> (embedding, gender logit). Parameters are the model's own, so
    training this trains ``model``. Without ``gender_backprop`` the gender loss does not reach
    the backbone groups.
    """

    def __init__(self, model: SiameseMultiTask, runner: GroupRunner, start: int, *,
                 gender_backprop: bool = True):
        super().__init__()
        self.model = model
        self.runner = runner
        self.start = int(start)
        self.gender_backprop = gender_backprop
        self.top = nn.ModuleList(m for _, mods in runner.groups[self.start:] for m in mods)

    def forward(self, activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.runner.run(activations, self.start)
        return self.model.heads(features, gender_backprop=self.gender_backprop)


def make_views(chips: np.ndarray, views: Sequence[str],
               augment: Callable[[np.ndarray, int], np.ndarray] | None = None,
               augment_views: int = 0, seed: int = 0, offset: int = 0) -> list[np.ndarray]:
    """The chips (N, S, S, 3) uint8 in each view: ``orig``, ``flip``, then ``augment_views``
    calls of ``augment(chip, seed)`` per chip (seeded by image index, so reproducible)."""
    out = []
    for view in views:
        out.append(chips if view == "orig" else np.ascontiguousarray(chips[:, :, ::-1]))
    for k in range(augment_views):
        if augment is None:
            raise ConfigError("augment_views > 0 needs an augmentation function")
        out.append(np.stack([augment(chip, view_seed(seed, offset + i, k))
                             for i, chip in enumerate(chips)]))
    return out


def view_seed(seed: int, index: int, view: int) -> int:
    """The seed of augmented view ``view`` of image ``index`` in a run seeded ``seed``."""
    return seed * 1_000_003 + int(index) * 101 + view


@torch.inference_mode()
def trunk_activations(backbone: nn.Module, runner: GroupRunner, chips: np.ndarray,
                      stop: int, *, views: Sequence[str] = ("orig",),
                      augment: Callable[[np.ndarray, int], np.ndarray] | None = None,
                      augment_views: int = 0, seed: int = 0, batch_size: int = 64,
                      device: torch.device | str = "cpu",
                      progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Activations after groups ``0:stop`` for every chip and view: (N, V, ...) float32 on
    the CPU, computed in eval mode. ``progress(n)`` is called after each batch."""
    was_training = backbone.training
    backbone.eval()
    chunks = []
    try:
        for start in range(0, len(chips), batch_size):
            batch = np.asarray(chips[start:start + batch_size])
            per_view = []
            for view in make_views(batch, views, augment, augment_views, seed, start):
                x = backbone.preprocess(view).to(device)
                per_view.append(runner.run(x, 0, stop).float().cpu())
            chunks.append(torch.stack(per_view, dim=1))
            if progress is not None:
                progress(len(batch))
    finally:
        backbone.train(was_training)
    if not chunks:
        raise ConfigError("no chips to compute activations for")
    return torch.cat(chunks)


@torch.inference_mode()
def advance(runner: GroupRunner, activations: torch.Tensor, start: int, stop: int,
            batch_size: int = 256) -> torch.Tensor:
    """Cached activations at boundary ``start`` (N, V, ...) moved up to boundary ``stop``."""
    if start == stop:
        return activations
    n, v = activations.shape[:2]
    flat = activations.reshape(n * v, *activations.shape[2:])
    outs = [runner.run(flat[i:i + batch_size], start, stop) for i in range(0, n * v, batch_size)]
    out = torch.cat(outs)
    return out.reshape(n, v, *out.shape[1:])

