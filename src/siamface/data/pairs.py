"""Verification pairs: one sampler (:class:`PairSampler`) for training batches drawn on the fly
(half genuine, half impostor) and for fixed, seeded evaluation pairs. Pairs are indices into a
``FaceDataset``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from siamface.data.lfw import LFWPair
from siamface.data.records import FaceDataset
from siamface.errors import DatasetError

__all__ = ["IndexPair", "PairSampler", "evaluation_pairs", "index_lfw_pairs"]

log = logging.getLogger(__name__)


class IndexPair(NamedTuple):
    """Two record indices and whether they show the same person."""

    a: int
    b: int
    same: bool


class PairSampler:
    """The one pair sampler: person labels indexed so that pair draws are O(1).

    :meth:`draw` makes vectorised training batches, even positions genuine (an image of a
    person with 2+ images and another image of that person), odd positions impostor (two
    images of different persons), so every batch is half and half. :meth:`genuine` and
    :meth:`impostor` draw one pair each, for :func:`evaluation_pairs`. Labels are ``0..P-1``
    (``FaceDataset.person_labels()``); a person's images are in record order.
    """

    def __init__(self, person_labels: np.ndarray | Sequence[int]):
        labels = np.asarray(person_labels, dtype=np.int64)
        self.person_of = labels
        self.order = np.argsort(labels, kind="stable")
        persons, self.start, self.count = np.unique(labels[self.order], return_index=True,
                                                    return_counts=True)
        if persons.size < 2:
            raise DatasetError(
                f"{persons.size} person(s); impostor pairs need 2 or more persons")
        if not np.array_equal(persons, np.arange(persons.size)):
            raise DatasetError("person labels must be 0..P-1")
        self.position = np.empty_like(labels)
        self.position[self.order] = np.arange(labels.size) - self.start[labels[self.order]]
        self.multi_images = np.flatnonzero(self.count[labels] >= 2)
        self.multi_persons = np.flatnonzero(self.count >= 2)
        if self.multi_images.size == 0:
            raise DatasetError("no person has 2 or more images, so there are no genuine pairs")

    def images_of(self, person: int) -> np.ndarray:
        """Record indices of ``person``, in record order."""
        return self.order[self.start[person]:self.start[person] + self.count[person]]

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
        """(a, b, same) for ``n`` pairs."""
        n_gen, n_imp = (n + 1) // 2, n // 2
        anchor = self.multi_images[rng.integers(self.multi_images.size, size=n_gen)]
        person = self.person_of[anchor]
        other = rng.integers(0, self.count[person] - 1)
        other += other >= self.position[anchor]
        partner = self.order[self.start[person] + other]
        ia = rng.integers(self.person_of.size, size=n_imp)
        ib = rng.integers(self.person_of.size, size=n_imp)
        clash = self.person_of[ia] == self.person_of[ib]
        while clash.any():
            ib[clash] = rng.integers(self.person_of.size, size=int(clash.sum()))
            clash = self.person_of[ia] == self.person_of[ib]
        a = np.empty(n, np.int64)
        b = np.empty(n, np.int64)
        a[0::2], b[0::2], a[1::2], b[1::2] = anchor, partner, ia, ib
        same = np.zeros(n, np.float32)
        same[0::2] = 1.0
        return a, b, same

    def genuine(self, rng: np.random.Generator, anchor: int) -> IndexPair:
        """``anchor`` (an image of a person with 2+ images) and another image of that person."""
        group = self.images_of(int(self.person_of[anchor]))
        b = anchor
        while b == anchor:
            b = int(group[rng.integers(group.size)])
        return IndexPair(anchor, b, True)

    def impostor(self, rng: np.random.Generator) -> IndexPair:
        """Any image and an image of someone else."""
        size = self.person_of.size
        a = b = int(rng.integers(size))
        while self.person_of[b] == self.person_of[a]:
            b = int(rng.integers(size))
        return IndexPair(a, b, False)


def _first_seen_labels(dataset: FaceDataset) -> np.ndarray:
    """Person labels numbered in the order persons first appear in ``dataset``."""
    groups = dataset.person_indices()  # insertion order: first appearance
    labels = np.empty(len(dataset), dtype=np.int64)
    for label, indices in enumerate(groups.values()):
        labels[indices] = label
    return labels


def evaluation_pairs(
    dataset: FaceDataset, n_pairs: int, *, seed: int = 0, max_tries: int = 100
) -> list[IndexPair]:
    """A fixed list of ``n_pairs`` distinct pairs (``n_pairs // 2`` genuine first, then the
    rest impostor), the same for the same dataset and ``seed``. Genuine pairs pick a person
    uniformly, then two of their images, so prolific persons do not dominate. If the dataset
    has fewer distinct genuine pairs, the list is shorter (logged)."""
    if n_pairs < 2:
        raise DatasetError(f"n_pairs must be at least 2, got {n_pairs}")
    sampler = PairSampler(_first_seen_labels(dataset))
    rng = np.random.default_rng(seed)
    wanted = {True: n_pairs // 2, False: n_pairs - n_pairs // 2}
    out: list[IndexPair] = []
    for same, count in wanted.items():
        seen: set[tuple[int, int]] = set()
        misses = 0
        while len(seen) < count and misses < max_tries * count:
            if same:
                person = sampler.multi_persons[rng.integers(sampler.multi_persons.size)]
                group = sampler.images_of(int(person))
                pair = sampler.genuine(rng, anchor=int(group[rng.integers(group.size)]))
            else:
                pair = sampler.impostor(rng)
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
