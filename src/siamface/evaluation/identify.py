"""One-to-many identification (the FACECOM gallery task): enrol known persons in a
:class:`Gallery`, rank its persons for each probe by Euclidean embedding distance, and score the
ranking with :func:`identification_report` (top-1 / top-k accuracy, macro F1, and open-set
figures when an acceptance threshold is given). :func:`identify_folders` does all of it for a
gallery folder and a probe folder.

Search is exact. Distances are computed in torch, a block of probes at a time (so the memory
held stays near ``Gallery.block_elements`` floats whatever the sizes), with the
``|p|^2 + |g|^2 - 2 p.g`` product in float32 to find the candidates, then each candidate's
distance recomputed directly in float64 (so the order does not depend on float32 rounding).
Ties are broken by person id (``np.unique`` order). Galleries of more than
``FAISS_MIN_VECTORS`` vectors use a FAISS flat (exact) index for the candidates when ``faiss`` is
importable (``pip install 'siamface[faiss]'``); without it the torch search is used at any size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siamface.errors import ConfigError, DatasetError

__all__ = [
    "FAISS_MIN_VECTORS",
    "MODES",
    "Gallery",
    "IdentifyResult",
    "identification_report",
    "identify_folders",
    "open_identify_folder",
]

MODES = ("mean", "nearest")
FAISS_MIN_VECTORS = 100_000
_REL_TOL = 1e-5  # float32 candidate margin, relative to the squared norms involved


def _faiss():
    try:
        import faiss  # optional: siamface[faiss]
    except ImportError:
        return None
    return faiss


class Gallery:
    """Enrolled persons and their vectors.

    ``mode="mean"``: one template per person, the mean of their embeddings. ``mode="nearest"``:
    every embedding is kept and a person's distance is the smallest over their images.
    ``use_faiss``: ``"auto"`` (FAISS when importable and the gallery holds more than
    ``FAISS_MIN_VECTORS`` vectors), ``True`` (required) or ``False``.
    """

    def __init__(self, *, block_elements: int = 1 << 24, use_faiss: bool | str = "auto"):
        if use_faiss not in ("auto", True, False):
            raise ConfigError(f"use_faiss must be 'auto', True or False, not {use_faiss!r}")
        self.block_elements = int(block_elements)
        self.use_faiss = use_faiss
        self.mode = "mean"
        self.persons: list[str] = []
        self.vectors = np.zeros((0, 0), np.float64)  # (V, D): templates or every image
        self.owner = np.zeros(0, np.int64)  # (V,) index into persons
        self.counts = np.zeros(0, np.int64)  # images enrolled per person
        self._index = None

    def __len__(self) -> int:
        return len(self.persons)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def enroll(self, embeddings: np.ndarray, person_ids: Sequence[Any], *,
               mode: str = "mean") -> Gallery:
        """Replace the gallery with these embeddings (N, D) of ``person_ids`` (N,); returns
        self. Rows must be finite (drop images without a face first)."""
        if mode not in MODES:
            raise ConfigError(f"gallery mode {mode!r} is not one of {', '.join(MODES)}")
        emb = np.asarray(embeddings, np.float64)
        ids = np.asarray([str(p) for p in person_ids], dtype=object)
        if emb.ndim != 2 or emb.shape[0] != len(ids):
            raise DatasetError(f"embeddings {emb.shape} and {len(ids)} person ids do not match; "
                               "expected an (N, D) array and N ids")
        if emb.shape[0] == 0:
            raise DatasetError("nothing to enrol: the gallery has no embeddings")
        if not np.isfinite(emb).all():
            bad = int((~np.isfinite(emb).all(axis=1)).sum())
            raise DatasetError(f"{bad} gallery embedding(s) are not finite (images without a "
                               "face); leave them out before enrolling")
        persons, owner = np.unique(ids.astype(str), return_inverse=True)
        self.mode = mode
        self.persons = [str(p) for p in persons]
        self.counts = np.bincount(owner, minlength=len(persons)).astype(np.int64)
        if mode == "mean":
            sums = np.zeros((len(persons), emb.shape[1]))
            np.add.at(sums, owner, emb)
            self.vectors = sums / self.counts[:, None]
            self.owner = np.arange(len(persons), dtype=np.int64)
        else:
            order = np.argsort(owner, kind="stable")
            self.vectors = emb[order]
            self.owner = owner[order].astype(np.int64)
        self._index = None
        return self

    # -- search -------------------------------------------------------------------------------

    def _faiss_wanted(self):
        if self.use_faiss is False:
            return None
        faiss = _faiss()
        if self.use_faiss is True and faiss is None:
            raise ConfigError("use_faiss=True but faiss is not installed; "
                              "pip install 'siamface[faiss]' or use use_faiss='auto'")
        if faiss is None or (self.use_faiss == "auto" and len(self.vectors) <= FAISS_MIN_VECTORS):
            return None
        return faiss

    def search(self, probes: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest persons of each probe (M, D): ids (M, k') as an object array of
        person ids and their Euclidean distances (M, k') ascending, ``k' = min(k, persons)``.
        A probe row that is not finite gets ``None`` ids and ``inf`` distances."""
        if not self.persons:
            raise DatasetError("the gallery is empty: enrol persons before searching")
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        q = np.asarray(probes, np.float64)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DatasetError(f"probe embeddings have shape {q.shape}; expected (M, {self.dim})")
        kk = min(int(k), len(self.persons))
        ids = np.full((len(q), kk), None, dtype=object)
        dist = np.full((len(q), kk), np.inf)
        finite = np.flatnonzero(np.isfinite(q).all(axis=1))
        if len(finite) == 0:
            return ids, dist
        faiss = self._faiss_wanted()
        rows = max(1, self.block_elements // max(1, len(self.vectors)))
        g64 = torch.from_numpy(self.vectors)
        g32 = g64.float()
        g_sq = (g32 * g32).sum(1)
        owner = torch.from_numpy(self.owner)
        for start in range(0, len(finite), rows):
            sel = finite[start:start + rows]
            p64 = torch.from_numpy(q[sel])
            if faiss is not None:
                r, j = self._faiss_candidates(faiss, q[sel], kk)
            else:
                r, j = self._torch_candidates(p64, g32, g_sq, owner, kk)
            best_p, best_d = _refine(p64, g64, owner, r, j, kk)
            ids[sel] = np.asarray(self.persons, dtype=object)[best_p]
            dist[sel] = best_d
        return ids, dist

    def _torch_candidates(self, p64, g32, g_sq, owner, kk):
        """(row, vector) pairs certain to include every vector a top-``kk`` person needs."""
        p32 = p64.float()
        p_sq = (p32 * p32).sum(1)
        d2 = (p_sq[:, None] + g_sq[None, :] - 2.0 * (p32 @ g32.T)).clamp_min_(0)
        if self.mode == "nearest":
            per_person = torch.full((len(p32), len(self.persons)), float("inf"))
            per_person.scatter_reduce_(1, owner.expand(len(p32), -1), d2, "amin")
        else:
            per_person = d2
        kth = torch.topk(per_person, kk, dim=1, largest=False).values[:, -1]
        margin = _REL_TOL * (p_sq + g_sq.max()) + 1e-12
        r, j = torch.nonzero(d2 <= (kth + margin)[:, None], as_tuple=True)
        return r, j

    def _faiss_candidates(self, faiss, block: np.ndarray, kk: int):
        """Candidates from a FAISS flat index: enough neighbours for ``kk`` distinct persons
        (searching deeper until there are), plus everything as close as the last one."""
        if self._index is None:
            self._index = faiss.IndexFlatL2(self.dim)
            self._index.add(np.ascontiguousarray(self.vectors, np.float32))
        x = np.ascontiguousarray(block, np.float32)
        depth = kk if self.mode == "mean" else min(len(self.vectors), kk * 4)
        while True:
            d2, nn = self._index.search(x, depth)
            enough = all(len(set(self.owner[row[row >= 0]])) >= kk for row in nn)
            if enough or depth >= len(self.vectors):
                break
            depth = min(len(self.vectors), depth * 2)
        p_sq = (x.astype(np.float64) ** 2).sum(1)
        g_max = float((self.vectors ** 2).sum(1).max())
        margin = _REL_TOL * (p_sq + g_max) + 1e-12
        r, j = [], []
        for i, (drow, nrow) in enumerate(zip(d2, nn)):
            keep = nrow >= 0
            drow, nrow = drow[keep], nrow[keep]
            # the kk-th distinct person's distance bounds who may still belong in the top kk
            first = {}
            for dv, n in zip(drow, nrow):
                first.setdefault(int(self.owner[n]), float(dv))
            bound = sorted(first.values())[min(kk, len(first)) - 1] + margin[i]
            chosen = nrow[drow <= bound]
            r.append(np.full(len(chosen), i))
            j.append(chosen)
        return torch.from_numpy(np.concatenate(r)), torch.from_numpy(np.concatenate(j))


def _refine(p64: torch.Tensor, g64: torch.Tensor, owner: torch.Tensor, r: torch.Tensor,
            j: torch.Tensor, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 distances of candidate pairs, each person's minimum, the best ``kk``
    persons per row ordered by (distance, person index)."""
    d = torch.sqrt(((p64[r] - g64[j]) ** 2).sum(1)).numpy()
    rows = r.numpy()
    person = owner[j].numpy()
    order = np.lexsort((person, d, rows))
    rows, person, d = rows[order], person[order], d[order]
    # first occurrence of each (row, person) is its minimum
    key = rows * (int(person.max()) + 1) + person
    _, first = np.unique(key, return_index=True)
    first.sort()
    rows, person, d = rows[first], person[first], d[first]
    starts = np.searchsorted(rows, np.arange(len(p64)))
    take = starts[:, None] + np.arange(kk)[None, :]
    return person[take], d[take]


# -- figures ----------------------------------------------------------------------------------


def _rate(count: int, total: int) -> float | None:
    return float(count) / total if total else None


def identification_report(true_ids: Sequence[Any], ranked_ids: Any, ranked_distances: Any, *,
                          k: int = 5, open_set_threshold: float | None = None,
                          known: Sequence[Any] | None = None) -> dict:
    """Figures of a ranking, as plain JSON-ready values.

    ``true_ids`` (M,) are the probes' persons, ``ranked_ids`` / ``ranked_distances`` (M, k')
    what :meth:`Gallery.search` returned; ``known`` the enrolled person ids (None: every probe's
    person counts as enrolled). Accuracy and macro F1 are over enrolled probes only:
    ``top1`` (best match right), ``topk`` (right person in the first ``k`` columns),
    ``macro_f1`` (scikit-learn's macro F1 of the top-1 predictions, over every person that is
    a true or a predicted label, zero where undefined). With ``open_set_threshold`` T a probe
    is accepted when its best distance <= T, otherwise "unknown": ``open_set`` then gives the
    detection-and-identification rate (enrolled, accepted and right) and the false-accept rate
    (not enrolled yet accepted), with their counts. Rates without probes to count are None.
    """
    from sklearn.metrics import f1_score

    true = [str(t) for t in true_ids]
    ranked = np.asarray(ranked_ids, dtype=object).reshape(len(true), -1)
    dist = np.asarray(ranked_distances, np.float64).reshape(len(true), -1)
    if k < 1:
        raise ConfigError(f"k must be at least 1, not {k}")
    known_set = set(true) if known is None else {str(p) for p in known}
    enrolled = np.array([t in known_set for t in true], bool)
    cols = min(k, ranked.shape[1])
    top1_pred = [None if ranked.shape[1] == 0 or ranked[i, 0] is None else str(ranked[i, 0])
                 for i in range(len(true))]
    hit1 = np.array([p == t for p, t in zip(top1_pred, true)], bool)
    hitk = np.array([t in {str(x) for x in ranked[i, :cols] if x is not None}
                     for i, t in enumerate(true)], bool)
    n_enrolled = int(enrolled.sum())
    idx = np.flatnonzero(enrolled)
    macro_f1 = None
    if n_enrolled:
        y_true = [true[i] for i in idx]
        y_pred = ["" if top1_pred[i] is None else top1_pred[i] for i in idx]
        labels = sorted(set(y_true) | (set(y_pred) - {""}))
        macro_f1 = float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                  zero_division=0))
    report: dict[str, Any] = {
        "probes": len(true),
        "enrolled_probes": n_enrolled,
        "unknown_probes": len(true) - n_enrolled,
        "k": int(k),
        "top1": _rate(int(hit1[enrolled].sum()), n_enrolled),
        "topk": _rate(int(hitk[enrolled].sum()), n_enrolled),
        "top1_correct": int(hit1[enrolled].sum()),
        "topk_correct": int(hitk[enrolled].sum()),
        "macro_f1": macro_f1,
        "f1_persons": len({true[i] for i in idx} | ({top1_pred[i] for i in idx} - {None})),
        "open_set": None,
    }
    if open_set_threshold is not None:
        t = float(open_set_threshold)
        best = dist[:, 0] if dist.shape[1] else np.full(len(true), np.inf)
        accepted = best <= t
        unknown = ~enrolled
        report["open_set"] = {
            "threshold": t,
            "detection_identification_rate": _rate(int((enrolled & hit1 & accepted).sum()),
                                                   n_enrolled),
            "detected_identified": int((enrolled & hit1 & accepted).sum()),
            "accepted_wrong_person": int((enrolled & ~hit1 & accepted).sum()),
            "rejected_enrolled": int((enrolled & ~accepted).sum()),
            "false_accept_rate": _rate(int((unknown & accepted).sum()), int(unknown.sum())),
            "false_accepts": int((unknown & accepted).sum()),
            "unknown_probes": int(unknown.sum()),
        }
    return report


# -- folders ----------------------------------------------------------------------------------


@dataclass
class IdentifyResult:
    """What :func:`identify_folders` found: the figures (``report``), one row per probe with a
    face (probe path, true id, ranked ids and distances, correct, enrolled, accepted) and the
    images skipped, as (path, reason), from the gallery and the probes."""

    report: dict
    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"report": self.report, "probes": self.rows,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def open_identify_folder(folder: str | os.PathLike, what: str = "gallery"):
    """A gallery or probe folder as a ``FaceDataset``: person folders when it has sub-folders,
    else a flat folder; :class:`DatasetError` when it is missing or holds no image."""
    from siamface.data import open_dataset
    from siamface.io import find_images

    folder = Path(folder)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise DatasetError(f"{what} folder {folder} {state}; pass a folder of person folders "
                           "(<folder>/<person>/*.jpg) or of images named <person>_*.jpg")
    if not find_images(folder):
        raise DatasetError(f"{what} folder {folder} has no images; expected "
                           f"{folder}/<person>/*.jpg or {folder}/<person>_<n>.jpg")
    layout = "flat" if not any(p.is_dir() and not p.name.startswith(".")
                               for p in folder.iterdir()) else "folders"
    return open_dataset(folder, layout)


def identify_folders(service, gallery_dir: str | os.PathLike, probes_dir: str | os.PathLike, *,
                     k: int = 5, mode: str = "mean", open_set_threshold: float | None = None,
                     cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                     progress: bool = True) -> IdentifyResult:
    """Enrol ``gallery_dir`` and rank its persons for every image of ``probes_dir``.

    Both are person folders (``<dir>/<person>/*.jpg``, ``distortion/`` sub-folders included)
    or flat folders (person id = file name up to the first ``_`` or ``-``). Images without a
    face are skipped and listed. :class:`DatasetError` when the gallery has no usable face, or
    (closed set: no ``open_set_threshold``) when no probe's person is enrolled.
    """
    from siamface.evaluation.embeddings import embed_paths

    if mode not in MODES:
        raise ConfigError(f"gallery mode {mode!r} is not one of {', '.join(MODES)}")
    if k < 1:
        raise ConfigError(f"k must be at least 1, not {k}")
    gallery_data = open_identify_folder(gallery_dir, "gallery")
    probe_data = open_identify_folder(probes_dir, "probes")
    opts = {"cache_dir": cache_dir, "use_cache": use_cache, "progress": progress}
    g_emb = embed_paths(service, [r.path for r in gallery_data.records], desc="gallery", **opts)
    g_ids = [r.person_id for r in gallery_data.records]
    if not g_emb.has_face.any():
        raise DatasetError(f"no face found in any of the {len(g_ids)} gallery image(s) of "
                           f"{gallery_dir}; first reason: {g_emb.skipped[0][1]}")
    keep = np.flatnonzero(g_emb.has_face)
    gallery = Gallery().enroll(g_emb.embeddings[keep], [g_ids[i] for i in keep], mode=mode)
    known = set(gallery.persons)

    p_records = probe_data.records
    p_ids = [r.person_id for r in p_records]
    if open_set_threshold is None and not known.intersection(p_ids):
        raise DatasetError(
            f"none of the {len(set(p_ids))} probe person(s) of {probes_dir} (e.g. "
            f"{', '.join(sorted(set(p_ids))[:3])}) is enrolled in the gallery {gallery_dir} "
            f"(e.g. {', '.join(gallery.persons[:3])}); name probe persons as in the gallery, "
            "or pass an open-set threshold to measure false accepts of unknown persons")
    p_emb = embed_paths(service, [r.path for r in p_records], desc="probes", **opts)
    use = np.flatnonzero(p_emb.has_face)
    if open_set_threshold is None and not known.intersection(p_ids[i] for i in use):
        raise DatasetError(f"no probe image of an enrolled person has a face ({len(use)} of "
                           f"{len(p_ids)} probe image(s) have one); nothing to identify")
    ranked, dist = gallery.search(p_emb.embeddings[use], k=k)
    true = [p_ids[i] for i in use]
    report = identification_report(true, ranked, dist, k=k,
                                   open_set_threshold=open_set_threshold, known=known)
    report.update({
        "mode": mode,
        "gallery_persons": len(gallery),
        "gallery_images": len(keep),
        "probe_images": len(p_records),
        "skipped_gallery": len(g_emb.skipped),
        "skipped_probes": len(p_emb.skipped),
    })
    rows = []
    for n, i in enumerate(use):
        ids_row = [str(x) for x in ranked[n]]
        d_row = [float(x) for x in dist[n]]
        rows.append({
            "probe": str(p_records[i].path),
            "true_id": p_ids[i],
            "ranked_ids": ids_row,
            "distances": d_row,
            "correct": bool(ids_row and ids_row[0] == p_ids[i]),
            "enrolled": p_ids[i] in known,
            "accepted": None if open_set_threshold is None
            else bool(d_row and d_row[0] <= open_set_threshold),
        })
    return IdentifyResult(report, rows, list(g_emb.skipped) + list(p_emb.skipped))
