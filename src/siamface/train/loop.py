"""One stage's epochs on cached inputs: pair batches, the multi-task loss, validation,
early stopping with the best weights restored. Every epoch's randomness (pairs, views,
dropout) derives from ``(seed, stage, epoch)``, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from siamface.data.pairs import PairSampler
from siamface.metrics import (
    gender_report,
    kfold_verification,
    verification_accuracy,
    youden_threshold,
)
from siamface.train.distributed import DistInfo, all_reduce_mean
from siamface.train.features import TopModel
from siamface.train.objective import MultiTaskLoss

__all__ = ["Evaluation", "StageInputs", "epoch_seed", "evaluate", "train_epoch"]

LOSS_PARTS = ("total", "verification", "gender_a", "gender_b")
EVAL_CHUNK_PAIRS = 512


@dataclass
class StageInputs:
    """Cached inputs of one stage: training activations (N, V, ...) with gender and person
    labels and the training pair draw; validation activations (M, V, ...) with labels and
    fixed validation pairs (a, b, same). ``same_image_share`` of the genuine training pairs
    pair two different views of one image."""

    train_x: torch.Tensor
    train_gender: torch.Tensor
    train_person: torch.Tensor
    sampler: PairSampler
    pairs_per_epoch: int
    val_x: torch.Tensor
    val_gender: torch.Tensor
    val_person: torch.Tensor
    val_a: torch.Tensor
    val_b: torch.Tensor
    val_same: torch.Tensor
    same_image_share: float = 0.0


@dataclass
class Evaluation:
    """Validation results: mean loss parts, pair distances and per-image gender logits."""

    losses: dict[str, float]
    distances: np.ndarray
    same: np.ndarray
    logits: np.ndarray
    gender: np.ndarray

    def metrics(self, threshold: float | None = None) -> dict[str, float]:
        """Loss parts, verification accuracy at the Youden threshold of these pairs (or at
        ``threshold``), its 5-fold cross-validated version, and gender accuracy / balanced accuracy / female F1."""
        out = {f"val_{k}": v for k, v in self.losses.items()}
        t = youden_threshold(self.distances, self.same) if threshold is None else threshold
        out["val_threshold"] = float(t)
        out["val_accuracy"] = verification_accuracy(self.distances, self.same, t)
        # val_accuracy uses a threshold fitted on these same pairs (optimistic); the 5-fold
        # figure chooses each fold's threshold on the other folds only.
        if self.distances.size >= 50:
            folds = np.arange(self.distances.size) % 5
            try:
                cv = kfold_verification(self.distances, self.same, folds, method="youden")
                out["val_accuracy_cv"] = float(cv["mean"])
            except ValueError:  # a fold without both classes
                pass
        if (self.gender >= 0).any():
            report = gender_report(self.gender, 1.0 / (1.0 + np.exp(-self.logits)))
            out["val_gender_accuracy"] = report["accuracy"]
            out["val_gender_balanced_accuracy"] = report["balanced_accuracy"]
            out["val_female_f1"] = report["per_class"]["female"]["f1"]
        return out


def epoch_seed(seed: int, stage_index: int, epoch: int) -> int:
    """The seed of one epoch's randomness."""
    return (int(seed) * 1_000_003 + stage_index * 10_007 + epoch) % (2**31 - 1)


def _epoch_pairs(inputs: StageInputs, seed: int, stage_index: int, epoch: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(epoch_seed(seed, stage_index, epoch))
    a, b, same = inputs.sampler.draw(inputs.pairs_per_epoch, rng)
    views = inputs.train_x.shape[1]
    va, vb = rng.integers(views, size=a.size), rng.integers(views, size=a.size)
    if inputs.same_image_share > 0:  # draws nothing more otherwise
        rows = np.flatnonzero((same > 0) & (rng.random(a.size) < inputs.same_image_share))
        b[rows] = a[rows]
        vb[rows] = (va[rows] + rng.integers(1, views, size=rows.size)) % views
    return a, b, same, va, vb


def train_epoch(top: TopModel, module: nn.Module, loss_fn: MultiTaskLoss,
                optimizer: torch.optim.Optimizer, inputs: StageInputs, *, seed: int,
                stage_index: int, epoch: int, batch_size: int, max_steps: int | None,
                info: DistInfo, on_step: Callable[[int, float], None] | None = None
                ) -> dict[str, float]:
    """One epoch of pair batches; each rank takes its share of every batch and DDP averages
    the gradients. Returns the mean loss parts over the epoch (over all ranks)."""
    torch.manual_seed(epoch_seed(seed, stage_index, epoch))
    a, b, same, va, vb = _epoch_pairs(inputs, seed, stage_index, epoch)
    steps = math.ceil(len(a) / batch_size)
    if max_steps is not None:
        steps = min(steps, max_steps)
    top.train()
    sums = torch.zeros(len(LOSS_PARTS), dtype=torch.float64)
    device = info.device
    for step in range(steps):
        rows = np.arange(step * batch_size, min((step + 1) * batch_size, len(a)))
        # a contiguous share: pairs alternate genuine / impostor, so every rank gets both
        # (a strided share would give one rank only genuine pairs)
        rows = np.array_split(rows, info.world_size)[info.rank]
        xa = inputs.train_x[a[rows], va[rows]].to(device)
        xb = inputs.train_x[b[rows], vb[rows]].to(device)
        emb, logit = module(torch.cat([xa, xb]))
        n = len(rows)
        parts = loss_fn(
            emb[:n], emb[n:], logit[:n], logit[n:], torch.from_numpy(same[rows]).to(device),
            inputs.train_gender[a[rows]].to(device), inputs.train_gender[b[rows]].to(device),
            inputs.train_person[a[rows]].to(device), inputs.train_person[b[rows]].to(device),
        )
        optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        optimizer.step()
        values = torch.tensor([float(parts[k].detach()) for k in LOSS_PARTS],
                              dtype=torch.float64)
        sums += values
        if on_step is not None:
            on_step(step, float(values[0]))
    mean = all_reduce_mean(sums / max(steps, 1), info)
    return {k: float(v) for k, v in zip(LOSS_PARTS, mean)}


@torch.no_grad()
def embed_cached(top: TopModel, x: torch.Tensor, device: str = "cpu",
                 batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and gender logits of cached activations (N, V, ...) in eval mode, each the
    mean over the V views (V = 2 when validating with flip averaging)."""
    was_training = top.training
    top.eval()
    embs, logits = [], []
    try:
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size].to(device)
            emb, logit = top(chunk.flatten(0, 1))
            embs.append(emb.unflatten(0, chunk.shape[:2]).mean(dim=1).cpu())
            logits.append(logit.unflatten(0, chunk.shape[:2]).mean(dim=1).cpu())
    finally:
        top.train(was_training)
    return torch.cat(embs), torch.cat(logits)


def evaluate(top: TopModel, loss_fn: MultiTaskLoss, inputs: StageInputs,
             device: str = "cpu") -> Evaluation:
    """Validation loss parts over the fixed validation pairs, plus distances and logits.

    The losses are averaged over chunks of ``EVAL_CHUNK_PAIRS`` pairs in a fixed shuffled
    order, like training batches: the batch-wide losses (triplet, pair hinge) compare every
    image of a chunk with every other, which over all pairs at once would need memory growing
    with the square of their number."""
    emb, logit = embed_cached(top, inputs.val_x, device)
    a, b = inputs.val_a, inputs.val_b
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(a)))
    sums = torch.zeros(len(LOSS_PARTS), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(order), EVAL_CHUNK_PAIRS):
            rows = order[start:start + EVAL_CHUNK_PAIRS]
            ca, cb = a[rows], b[rows]
            parts = loss_fn(emb[ca], emb[cb], logit[ca], logit[cb], inputs.val_same[rows],
                            inputs.val_gender[ca], inputs.val_gender[cb],
                            inputs.val_person[ca], inputs.val_person[cb])
            sums += torch.tensor([float(parts[k]) for k in LOSS_PARTS],
                                 dtype=torch.float64) * len(rows)
        distances = top.model.distance(emb[a], emb[b])
    return Evaluation(
        losses={k: float(v) for k, v in zip(LOSS_PARTS, sums / max(len(order), 1))},
        distances=distances.numpy().astype(np.float64),
        same=inputs.val_same.numpy().astype(bool),
        logits=logit.numpy().astype(np.float64),
        gender=inputs.val_gender.numpy(),
    )
