"""Verification pairs: training pairs drawn on the fly (half genuine, half impostor) and
fixed, seeded evaluation pairs. Pairs are indices into a ``FaceDataset``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from siamface.data.lfw import LFWPair
from siamface.data.records import FaceDataset
from siamface.errors import DatasetError

__all__ = ["IndexPair", "TrainingPairs", "evaluation_pairs", "index_lfw_pairs"]

log = logging.getLogger(__name__)


class IndexPair(NamedTuple):
    """Two record indices and whether they show the same person."""

    a: int
    b: int
    same: bool


class _PersonIndex:
    """Arrays that make pair drawing O(1): the person of each record and each person's
    record indices."""

    def __init__(self, dataset: FaceDataset):
        groups = dataset.person_indices()
        if len(groups) < 2:
            raise DatasetError(
                f"{dataset.name} has {len(groups)} person(s); impostor pairs need 2 or more"
            )
        self.groups = [np.asarray(idx, dtype=np.int64) for idx in groups.values()]
        self.person_of = np.empty(len(dataset), dtype=np.int64)
        for p, idx in enumerate(self.groups):
            self.person_of[idx] = p
        self.multi = np.array([p for p, idx in enumerate(self.groups) if len(idx) >= 2])
        if self.multi.size == 0:
            raise DatasetError(
                f"{dataset.name}: no person has 2 or more images, so there are no genuine pairs"
            )
        self.multi_images = np.concatenate([self.groups[p] for p in self.multi])
        self.size = len(dataset)

    def genuine(self, rng: np.random.Generator, anchor: int | None = None) -> IndexPair:
        a = int(self.multi_images[rng.integers(self.multi_images.size)]) if anchor is None \
            else anchor
        group = self.groups[self.person_of[a]]
        b = a
        while b == a:
            b = int(group[rng.integers(group.size)])
        return IndexPair(a, b, True)

    def impostor(self, rng: np.random.Generator, anchor: int | None = None) -> IndexPair:
        a = int(rng.integers(self.size)) if anchor is None else anchor
        b = a
        while self.person_of[b] == self.person_of[a]:
            b = int(rng.integers(self.size))
        return IndexPair(a, b, False)


class TrainingPairs(Sequence[IndexPair]):
    """Pairs drawn on the fly: item ``i`` is genuine when ``i`` is even, impostor when odd,
    so every epoch is half and half. The draw depends only on ``(seed, epoch, i)``, so it is
    reproducible and the same in every DataLoader worker; call ``set_epoch`` for new pairs.

    A genuine pair takes an image of a person with 2+ images and another image of that
    person; an impostor pair takes any image and an image of someone else.
    """

    def __init__(self, dataset: FaceDataset, pairs_per_epoch: int | None = None, *,
                 seed: int = 0):
        self.dataset = dataset
        self.pairs_per_epoch = int(pairs_per_epoch or len(dataset))
        if self.pairs_per_epoch < 1:
            raise DatasetError(f"pairs_per_epoch must be positive, got {pairs_per_epoch}")
        self.seed = seed
        self.epoch = 0
        self._index = _PersonIndex(dataset)

    def set_epoch(self, epoch: int) -> None:
        """Draw a different set of pairs for ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"pair {i} out of range for {len(self)} pairs")
        i %= len(self)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        return self._index.genuine(rng) if i % 2 == 0 else self._index.impostor(rng)


def evaluation_pairs(
    dataset: FaceDataset, n_pairs: int, *, seed: int = 0, max_tries: int = 100
) -> list[IndexPair]:
    """A fixed list of ``n_pairs`` distinct pairs (``n_pairs // 2`` genuine first, then the
    rest impostor), the same for the same dataset and ``seed``. Genuine pairs pick a person
    uniformly, then two of their images, so prolific persons do not dominate. If the dataset
    has fewer distinct genuine pairs, the list is shorter (logged)."""
    if n_pairs < 2:
        raise DatasetError(f"n_pairs must be at least 2, got {n_pairs}")
    index = _PersonIndex(dataset)
    rng = np.random.default_rng(seed)
    wanted = {True: n_pairs // 2, False: n_pairs - n_pairs // 2}
    out: list[IndexPair] = []
    for same, count in wanted.items():
        seen: set[tuple[int, int]] = set()
        misses = 0
        while len(seen) < count and misses < max_tries * count:
            if same:
                person = index.multi[rng.integers(index.multi.size)]
                group = index.groups[person]
                pair = index.genuine(rng, anchor=int(group[rng.integers(group.size)]))
            else:
                pair = index.impostor(rng)
            key = (min(pair.a, pair.b), max(pair.a, pair.b))
            if key in seen:
                misses += 1
                continue
            seen.add(key)
            out.append(pair)
        if len(seen) < count:
            log.warning("only %d distinct %s pairs found of %d wanted", len(seen),
                        "genuine" if same else "impostor", count)
    return out


def index_lfw_pairs(dataset: FaceDataset, pairs: Sequence[LFWPair]) -> list[IndexPair]:
    """LFW protocol pairs as indices into ``dataset`` (matched by person and ``Name_NNNN``);
    a pair whose image is not in the dataset raises ``DatasetError``."""
    lookup = {(r.person_id, r.path.stem): i for i, r in enumerate(dataset)}
    out: list[IndexPair] = []
    for pair in pairs:
        keys = ((pair.name1, f"{pair.name1}_{pair.index1:04d}"),
                (pair.name2, f"{pair.name2}_{pair.index2:04d}"))
        for key in keys:
            if key not in lookup:
                raise DatasetError(f"LFW pair image {key[1]} is not in {dataset.name}")
        out.append(IndexPair(lookup[keys[0]], lookup[keys[1]], pair.same))
    return out
