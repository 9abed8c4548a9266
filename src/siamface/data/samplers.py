"""Identity-balanced batches for batch-hard mining: each batch holds ``batch_size // m``
persons with ``m`` images each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from siamface.errors import DatasetError

__all__ = ["MPerPersonSampler"]


class MPerPersonSampler(Sampler[list[int]]):
    """A batch sampler (``DataLoader(batch_sampler=...)``) yielding lists of record indices:
    ``batch_size // m`` distinct persons per batch, ``m`` images of each.

    ``person_labels`` is one label per record (``FaceDataset.person_labels()``). Persons with
    fewer than ``min_images`` images are left out; persons with fewer than ``m`` images give
    each image once, then repeats. One epoch visits every kept person once in a shuffled order
    (``len(self)`` batches, a remainder too small for a batch is dropped). The order depends
    only on ``seed`` and the epoch (``set_epoch``).
    """

    def __init__(self, person_labels: Sequence[int] | np.ndarray, m: int, batch_size: int, *,
                 seed: int = 0, min_images: int = 2):
        labels = np.asarray(person_labels)
        if labels.ndim != 1 or labels.size == 0:
            raise DatasetError("person_labels must be a non-empty 1-D sequence of labels")
        if m < 1 or batch_size < m or batch_size % m:
            raise DatasetError(
                f"batch_size ({batch_size}) must be a positive multiple of m ({m})"
            )
        self.m = int(m)
        self.batch_size = int(batch_size)
        self.persons_per_batch = self.batch_size // self.m
        self.seed = seed
        self.epoch = 0
        order = np.argsort(labels, kind="stable")
        uniq, starts = np.unique(labels[order], return_index=True)
        groups = np.split(order, starts[1:])
        self.groups = [g for g in groups if g.size >= min_images]
        if len(self.groups) < self.persons_per_batch:
            raise DatasetError(
                f"a batch needs {self.persons_per_batch} persons with {min_images}+ images "
                f"but only {len(self.groups)} of {uniq.size} persons qualify; lower batch_size "
                f"or raise m"
            )

    def set_epoch(self, epoch: int) -> None:
        """Shuffle differently for ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.groups) // self.persons_per_batch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        persons = rng.permutation(len(self.groups))
        for start in range(0, len(self) * self.persons_per_batch, self.persons_per_batch):
            batch: list[int] = []
            for p in persons[start:start + self.persons_per_batch]:
                group = self.groups[p]
                if group.size >= self.m:
                    picks = rng.choice(group, size=self.m, replace=False)
                else:  # every image once, then repeats to fill m
                    picks = np.resize(rng.permutation(group), self.m)
                batch.extend(int(i) for i in picks)
            yield batch
