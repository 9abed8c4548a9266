"""Training state for resume: model tensors that train, optimizer, scheduler, RNG, stage,
epoch, early-stopping bookkeeping and history. Saved atomically each epoch with
``torch.save`` and read back with ``torch.load(weights_only=True)``: only tensors and plain
containers, never arbitrary pickled objects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from siamface._atomic import atomic_path
from siamface.checkpoint import stored_tensor_names
from siamface.errors import CheckpointError
from siamface.model import SiameseMultiTask

__all__ = ["STATE_VERSION", "load_state", "save_state", "trained_names", "trained_state"]

STATE_VERSION = 1


def trained_names(model: SiameseMultiTask, groups: list[str]) -> list[str]:
    """State-dict keys of the heads and of the backbone groups named in ``groups``."""
    return sorted(stored_tensor_names(model, groups))


def trained_state(model: SiameseMultiTask, groups: list[str]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the tensors :func:`trained_names` selects."""
    state = model.state_dict()
    return {k: state[k].detach().to("cpu").clone() for k in trained_names(model, groups)}


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write the training state atomically."""
    with atomic_path(path) as tmp:
        torch.save({"version": STATE_VERSION, **state}, tmp)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state written by :func:`save_state` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no training state at {path}: --resume continues a run folder that has one "
            "(written after every epoch); start without --resume"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"cannot read training state {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path} is not a siamface training state (version "
                              f"{state.get('version') if isinstance(state, dict) else None})")
    return state
