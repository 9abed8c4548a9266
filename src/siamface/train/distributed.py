"""Distributed data parallel glue: the same training code runs alone or under ``torchrun``
(gloo on CPU, NCCL on GPU). Only rank 0 writes files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_mean", "barrier", "init_distributed", "shutdown",
           "shutdown_if_initialized"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1),
    else run alone. ``device`` ``cuda`` picks this rank's local GPU and NCCL.

    ``device`` is checked like inference checks it (:func:`siamface.service.check_device`):
    an invalid or unsupported device, or ``cuda`` without CUDA, is a
    :class:`~siamface.errors.ConfigError` before any process group is joined, never a silent
    fall back to the CPU.
    """
    from siamface.service import check_device

    parsed = check_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = parsed.type == "cuda"
    if use_cuda and world > 1:
        dev = str(check_device(f"cuda:{local}"))  # one GPU per local rank
    else:
        dev = str(parsed)
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``values`` over ranks (unchanged when running alone)."""
    if not info.distributed:
        return values
    out = values.clone().to(info.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return (out / info.world_size).cpu()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group (if this process joined one)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shutdown_if_initialized() -> None:
    """Destroy the default process group if this process is in one (a no-op otherwise).
    ``siamface train`` calls it when a run ends, whether it finished or failed."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
