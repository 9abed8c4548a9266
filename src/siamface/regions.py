"""Thresholds that depend on the pair: calibration by region of the embedding space.

One global distance threshold admits very different shares of impostors in different parts of
the embedding space (faces of a group the backbone saw little of sit closer together). Here the
space is cut into regions (k-means of a diverse calibration set), and for every pair of regions
the threshold is the distance below which ``fmr`` of that cell's impostor pairs fall, so every
region admits the same share of impostors (in the spirit of Fair Score Normalization, Terhörst
et al. 2020, and FairCal, Salvador et al. 2022). A pair's threshold is the cell of its two faces'
nearest centroids. Impostor pairs need no identity labels: two photos drawn from a large set of
different people are almost never one person (pass ``person_ids`` where they are known).

Pure numpy at use; fitting needs scikit-learn's KMeans. The fitted thresholds are data in the
checkpoint (:meth:`RegionThresholds.to_dict`), read without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RegionThresholds", "fit_region_thresholds"]

DEFAULT_REGIONS = 16
MIN_MEMBERS = 40  # a region with fewer calibration faces borrows its thresholds
MAX_PAIRS = 200_000  # impostor pairs per cell; cells with fewer possible pairs use all of them


@dataclass(frozen=True)
class RegionThresholds:
    """Centroids (K, D) and a symmetric (K, K) threshold matrix fitted at false-match rate
    ``fmr``; ``overall`` is the one threshold at that rate over all calibration pairs (the
    checkpoint's global threshold); ``source`` names the calibration data; ``members`` counts
    the calibration faces of each region."""

    centroids: np.ndarray
    thresholds: np.ndarray
    fmr: float
    overall: float
    source: str
    members: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        c = np.asarray(self.centroids, np.float32)
        t = np.asarray(self.thresholds, np.float32)
        if c.ndim != 2 or t.shape != (c.shape[0], c.shape[0]):
            raise ValueError(f"region thresholds need centroids (K, D) and thresholds (K, K); "
                             f"got {c.shape} and {t.shape}")
        if not np.all(np.isfinite(t)) or np.any(t <= 0):
            raise ValueError("region thresholds must be finite and positive")
        object.__setattr__(self, "centroids", c)
        object.__setattr__(self, "thresholds", t)

    @property
    def n_regions(self) -> int:
        return int(self.centroids.shape[0])

    def regions(self, embeddings: Any) -> np.ndarray:
        """Index of the nearest centroid of each row of ``embeddings`` (N, D)."""
        e = np.atleast_2d(np.asarray(embeddings, np.float32))
        d2 = ((e * e).sum(1)[:, None] - 2.0 * e @ self.centroids.T
              + (self.centroids * self.centroids).sum(1)[None, :])
        return np.argmin(d2, axis=1)

    def pair_thresholds(self, a: Any, b: Any) -> np.ndarray:
        """The threshold of each pair of rows of ``a`` and ``b`` (N, D each)."""
        return self.thresholds[self.regions(a), self.regions(b)].astype(np.float64)

    def pair_threshold(self, a: Any, b: Any) -> float:
        """The threshold of one pair of embeddings."""
        return float(self.pair_thresholds(np.atleast_2d(a), np.atleast_2d(b))[0])

    def normalise(self, distances: Any, a: Any, b: Any, reference: float) -> np.ndarray:
        """Distances rescaled so that ``distance' <= reference`` exactly when ``distance`` is
        within the pair's own threshold (score normalisation: ROC curves and k-fold protocols
        then see the region calibration)."""
        d = np.asarray(distances, np.float64)
        return d * (float(reference) / self.pair_thresholds(a, b))

    def describe(self) -> str:
        return (f"region thresholds ({self.n_regions} regions, FMR {100 * self.fmr:g}% per "
                f"cell, fitted on {self.source})")

    def to_dict(self) -> dict[str, Any]:
        return {"centroids": np.round(self.centroids, 6).tolist(),
                "thresholds": np.round(self.thresholds, 6).tolist(),
                "fmr": float(self.fmr), "overall": float(self.overall), "source": self.source,
                "members": list(self.members)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionThresholds:
        try:
            return cls(np.array(data["centroids"], np.float32),
                       np.array(data["thresholds"], np.float32), float(data["fmr"]),
                       float(data["overall"]), str(data.get("source", "")), tuple(int(m) for m in data.get("members", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed region thresholds: {exc}") from exc


def _cell_pairs(members_a: np.ndarray, members_b: np.ndarray, same_cell: bool,
                rng: np.random.Generator, max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of a cell: all of them when there are at most ``max_pairs``, else a
    uniform sample of ``max_pairs``."""
    na, nb = members_a.size, members_b.size
    total = na * (na - 1) // 2 if same_cell else na * nb
    if total <= max_pairs:
        if same_cell:
            i, j = np.triu_indices(na, k=1)
            return members_a[i], members_a[j]
        i, j = np.meshgrid(np.arange(na), np.arange(nb), indexing="ij")
        return members_a[i.ravel()], members_b[j.ravel()]
    i = rng.integers(0, na, max_pairs)
    j = rng.integers(0, nb, max_pairs)
    if same_cell:
        keep = i != j
        i, j = i[keep], j[keep]
    return members_a[i], members_b[j]


def _impostor_quantile(embeddings: np.ndarray, ia: np.ndarray, ib: np.ndarray,
                       persons: np.ndarray | None, fmr: float) -> float | None:
    if persons is not None:
        keep = persons[ia] != persons[ib]
        ia, ib = ia[keep], ib[keep]
    if ia.size < max(20, int(np.ceil(5 / fmr))):  # too few to place the quantile
        return None
    d = np.linalg.norm(embeddings[ia] - embeddings[ib], axis=1)
    return float(np.quantile(d, fmr, method="linear"))


def fit_region_thresholds(embeddings: Any, *, fmr: float, n_regions: int = DEFAULT_REGIONS,
                          person_ids: Sequence[Any] | None = None, source: str = "",
                          seed: int = 0, max_pairs: int = MAX_PAIRS,
                          min_members: int = MIN_MEMBERS) -> RegionThresholds:
    """Fit region thresholds on calibration ``embeddings`` (N, D) of many different people.

    Regions are k-means clusters. Each cell (pair of regions) gets the ``fmr`` quantile of its
    impostor distances; a cell whose regions have fewer than ``min_members`` faces, or too
    few impostor pairs, takes the mean of its two regions' own thresholds, and a region
    without its own takes the global quantile."""
    from sklearn.cluster import KMeans

    if not 0.0 < fmr < 0.5:
        raise ValueError(f"fmr must be in (0, 0.5), got {fmr}")
    e = np.asarray(embeddings, np.float32)
    if e.ndim != 2 or not np.all(np.isfinite(e)):
        raise ValueError("embeddings must be a finite (N, D) array (drop rows without a face)")
    if e.shape[0] < 2 * n_regions:
        raise ValueError(f"{e.shape[0]} calibration faces are too few for {n_regions} regions")
    persons = None if person_ids is None else np.asarray([str(p) for p in person_ids])
    if persons is not None and persons.size != e.shape[0]:
        raise ValueError(f"person_ids ({persons.size}) and embeddings ({e.shape[0]}) differ")
    rng = np.random.default_rng(seed)
    kmeans = KMeans(n_clusters=n_regions, n_init=4, random_state=seed).fit(e)
    centroids = kmeans.cluster_centers_.astype(np.float32)
    labels = kmeans.labels_  # each face's nearest centroid
    members = [np.flatnonzero(labels == k) for k in range(n_regions)]
    everyone = np.arange(e.shape[0])
    global_t = _impostor_quantile(e, *_cell_pairs(everyone, everyone, True, rng, max_pairs),
                                  persons, fmr)
    if global_t is None:
        raise ValueError("too few impostor pairs to calibrate at this FMR")
    cells = np.full((n_regions, n_regions), np.nan)
    for a in range(n_regions):
        for b in range(a, n_regions):
            if min(members[a].size, members[b].size) < min_members:
                continue
            q = _impostor_quantile(e, *_cell_pairs(members[a], members[b], a == b, rng,
                                                   max_pairs), persons, fmr)
            if q is not None:
                cells[a, b] = cells[b, a] = q
    own = np.where(np.isnan(np.diag(cells)), global_t, np.diag(cells))
    fallback = (own[:, None] + own[None, :]) / 2.0
    thresholds = np.where(np.isnan(cells), fallback, cells)
    np.fill_diagonal(thresholds, own)
    return RegionThresholds(centroids, thresholds.astype(np.float32), fmr, global_t, source,
                            tuple(int(m.size) for m in members))
