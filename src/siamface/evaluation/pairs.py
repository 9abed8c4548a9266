"""The pairs an evaluation scores, as arrays over one list of image files: protocol or
generated pairs of a dataset, their distorted variants, and pairs drawn inside groups."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamface.data import FaceDataset, IndexPair, evaluation_pairs
from siamface.errors import DatasetError

__all__ = ["ImageIndex", "PairSet", "dataset_pairs", "distorted_pairs", "group_pairs"]

log = logging.getLogger(__name__)
NO_KIND = "none"


class ImageIndex:
    """Distinct image files, each with one row: the evaluation embeds each file once."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._rows: dict[str, int] = {}

    def add(self, path: str | Path) -> int:
        key = str(path)
        if key not in self._rows:
            self._rows[key] = len(self.paths)
            self.paths.append(key)
        return self._rows[key]

    def row(self, path: str | Path) -> int | None:
        """The row of ``path``, or None when it is not in the index."""
        return self._rows.get(str(path))

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class PairSet:
    """Pairs as parallel arrays: image rows ``a`` and ``b`` (into an :class:`ImageIndex`),
    the truth ``same``, the distortion ``kind`` of the pair, the ``cluster`` (person label
    of the first image: the bootstrap resamples people) and the protocol ``folds`` (or None)."""

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    kind: np.ndarray
    cluster: np.ndarray
    folds: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.same.size)

    def subset(self, mask: np.ndarray) -> PairSet:
        return PairSet(self.a[mask], self.b[mask], self.same[mask], self.kind[mask],
                       self.cluster[mask], None if self.folds is None else self.folds[mask])

    @staticmethod
    def concat(sets: list[PairSet]) -> PairSet:
        folds = None if any(s.folds is None for s in sets) else np.concatenate(
            [s.folds for s in sets])
        return PairSet(*(np.concatenate([getattr(s, f) for s in sets])
                         for f in ("a", "b", "same", "kind", "cluster")), folds=folds)


def _person_labels(dataset: FaceDataset) -> np.ndarray:
    labels = np.empty(len(dataset), np.int64)
    for label, rows in enumerate(dataset.person_indices().values()):
        labels[rows] = label
    return labels


def _from_index_pairs(dataset: FaceDataset, pairs: list[IndexPair], images: ImageIndex,
                      folds: np.ndarray | None) -> PairSet:
    labels = _person_labels(dataset)
    a = np.array([images.add(dataset[p.a].path) for p in pairs], np.int64)
    b = np.array([images.add(dataset[p.b].path) for p in pairs], np.int64)
    kinds = np.array([dataset[p.b].distortion or dataset[p.a].distortion or NO_KIND
                      for p in pairs], dtype=object)
    return PairSet(a, b, np.array([p.same for p in pairs], bool), kinds,
                   labels[[p.a for p in pairs]], folds)


def dataset_pairs(dataset: FaceDataset, images: ImageIndex, *,
                  pairs: list[IndexPair] | None = None, folds: np.ndarray | None = None,
                  n_pairs: int = 3000, seed: int = 0) -> PairSet:
    """The given protocol ``pairs`` (indices into ``dataset``), or ``n_pairs`` generated ones
    (half genuine) with ``folds`` assigned by person so no person spans two folds."""
    if pairs is None:
        counts = [len(rows) for rows in dataset.person_indices().values()]
        if not any(c >= 2 for c in counts):
            raise DatasetError(
                f"{dataset.name}: pairs cannot be built: no person has two images "
                f"({len(counts)} persons, one image each); genuine pairs need at least one "
                "person with two or more images (flat folders take the person id from the file "
                "name up to the first '_' or '-')")
        pairs = evaluation_pairs(dataset, n_pairs, seed=seed)
        out = _from_index_pairs(dataset, pairs, images, None)
        fold_of_person = np.random.default_rng(seed).permutation(out.cluster.max() + 1) % 10
        out.folds = fold_of_person[out.cluster]
        return out
    return _from_index_pairs(dataset, pairs, images, folds)


def _find_distorted(kind_dir: Path, rel: Path) -> Path | None:
    """The copy of ``rel`` under ``kind_dir``, matching the longest tail of its path (a copy
    may have been written from the dataset folder or from a folder inside it)."""
    parts = rel.parts
    for start in range(len(parts)):
        candidate = kind_dir.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def distorted_pairs(dataset: FaceDataset, base: PairSet, images: ImageIndex,
                    distorted: Path, data_root: Path) -> tuple[PairSet, dict[str, int]]:
    """Each base pair again with its second image replaced by its distorted copy, once per
    kind folder of ``distorted`` (``siamface distort``'s mirror layout: ``<kind>/<path>``).
    Returns the pairs and, per kind, how many base pairs had no copy."""
    distorted = Path(distorted)
    if not distorted.is_dir():
        raise DatasetError(f"distorted copy {distorted} is not a folder")
    kinds = sorted(p for p in distorted.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not kinds:
        raise DatasetError(f"{distorted} has no kind folders; write one with "
                           f"`siamface distort {data_root} {distorted}`")
    root = Path(data_root).resolve()
    sets, missing = [], {}
    for kind_dir in kinds:
        keep, rows = [], []
        lookup: dict[int, int | None] = {}
        for i, row_b in enumerate(base.b):
            if row_b not in lookup:
                path = Path(images.paths[row_b]).resolve()
                try:
                    rel = path.relative_to(root)
                except ValueError:
                    rel = Path(path.name)
                copy = _find_distorted(kind_dir, rel)
                lookup[row_b] = None if copy is None else images.add(copy)
            if lookup[row_b] is not None:
                keep.append(i)
                rows.append(lookup[row_b])
        missing[kind_dir.name] = len(base) - len(keep)
        if not keep:
            continue
        sub = base.subset(np.array(keep, np.int64))
        sub.b = np.array(rows, np.int64)
        sub.kind = np.full(len(keep), kind_dir.name, dtype=object)
        sets.append(sub)
    if not sets:
        raise DatasetError(
            f"none of the pairs' images has a copy under {distorted}/<kind>/ (looked for "
            f"their paths relative to {data_root}); write the copy with "
            f"`siamface distort {data_root} {distorted}`")
    return PairSet.concat(sets), missing


def _impostors_only(dataset: FaceDataset, n: int, seed: int) -> list[IndexPair]:
    """Up to ``n`` distinct impostor pairs of a dataset in which nobody has two images."""
    labels = _person_labels(dataset)
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int]] = set()
    for _ in range(20 * n):
        if len(seen) >= n:
            break
        a, b = (int(v) for v in rng.integers(len(dataset), size=2))
        if labels[a] != labels[b]:
            seen.add((min(a, b), max(a, b)))
    return [IndexPair(a, b, False) for a, b in sorted(seen)]


def group_pairs(dataset: FaceDataset, labels: list[str | None], images: ImageIndex, *,
                per_group: int, seed: int, pool: set[str] | None = None) -> PairSet:
    """For each group value, ``per_group`` pairs drawn inside the group, half genuine when the
    group has people with two images (impostors of the same group are the hard ones).
    ``pool`` limits the images to those paths (the evaluation's own images) when given.
    ``kind`` holds the group value; groups with fewer than two images are left out."""
    rows_of: dict[str, list[int]] = {}
    for i, (record, value) in enumerate(zip(dataset, labels)):
        if value is not None and (pool is None or str(record.path) in pool):
            rows_of.setdefault(value, []).append(i)
    sets = []
    for value, rows in sorted(rows_of.items()):
        members = FaceDataset([dataset[i] for i in rows], name=f"{dataset.name} [{value}]")
        if len(members.person_indices()) < 2:
            log.warning("group %r has fewer than two persons: no pairs", value)
            continue
        try:
            pairs = evaluation_pairs(members, per_group, seed=seed)
        except DatasetError:  # nobody in the group has two images: impostors only
            pairs = _impostors_only(members, per_group - per_group // 2, seed)
        sub = _from_index_pairs(members, pairs, images, None)
        sub.kind = np.full(len(sub), value, dtype=object)
        sets.append(sub)
    if not sets:
        raise DatasetError("no group has two persons: per-group pairs cannot be built")
    return PairSet.concat(sets)
