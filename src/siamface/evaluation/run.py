"""One evaluation: a model, a dataset and its pairs in; an :class:`Evaluation` out (figures
with confidence intervals, per distortion kind and per group, plus what the plots need)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamface import metrics as M
from siamface.data import FaceDataset, IndexPair
from siamface.evaluation.embeddings import EmbeddedImages, embed_paths
from siamface.evaluation.pairs import (
    NO_KIND,
    ImageIndex,
    PairSet,
    dataset_pairs,
    distorted_pairs,
    group_pairs,
)
from siamface.evaluation.result import Evaluation, SamplePair

__all__ = ["EvaluationOptions", "evaluate", "pair_distances"]

FARS = (1e-2, 1e-3)
ALL_DISTORTED = "all distorted"  # the row pooling every distortion kind


@dataclass
class EvaluationOptions:
    """How to evaluate (everything but the model and the data)."""

    n_pairs: int = 3000  # generated pairs, when the data has no protocol pairs
    seed: int = 0
    threshold: float | None = None  # None: the model's own
    distorted: Path | None = None  # a ``siamface distort`` copy of the data
    groups: dict[str, list[str | None]] = field(default_factory=dict)  # column -> per record
    group_pairs: int = 1000  # pairs drawn inside each group
    samples: int = 16
    errors_first: bool = False
    bootstrap: int = 1000
    cache_dir: Path | None = None
    use_cache: bool = True
    progress: bool = True
    workers: int = 1  # processes detecting and embedding faces (see embed_paths)


def pair_distances(embedded: EmbeddedImages, pairs: PairSet, regions=None,
                   reference: float | None = None) -> np.ndarray:
    """Euclidean distance per pair; ``inf`` (never a match: no verdict) where a face is absent.
    With ``regions`` (:class:`~siamface.regions.RegionThresholds`) the distances are
    normalised so that ``d <= reference`` is each pair's own region threshold."""
    ea, eb = embedded.embeddings[pairs.a], embedded.embeddings[pairs.b]
    d = np.linalg.norm(ea - eb, axis=1).astype(np.float64)
    present = embedded.has_face[pairs.a] & embedded.has_face[pairs.b]
    if regions is not None and present.any():
        d[present] = regions.normalise(d[present], ea[present], eb[present], reference)
    d[~present] = np.inf
    return d


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to python, NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _cis(statistics: dict, pairs: PairSet, arrays: tuple, n_boot: int, seed: int
         ) -> dict[Any, list[float] | None]:
    """[low, high] of each statistic on the same resamples of people (None for one that
    cannot be resampled, or with ``n_boot`` 0)."""
    out: dict[Any, list[float] | None] = dict.fromkeys(statistics)
    if n_boot <= 0:
        return out
    with contextlib.suppress(ValueError):  # all together, the common case
        cis = M.bootstrap_cis(statistics, *arrays, clusters=pairs.cluster, n_boot=n_boot,
                              seed=seed)
        return {name: [ci["low"], ci["high"]] for name, ci in cis.items()}
    for name, fn in statistics.items():  # one of them fails: keep the others
        with contextlib.suppress(ValueError):
            ci = M.bootstrap_ci(fn, *arrays, clusters=pairs.cluster, n_boot=n_boot, seed=seed)
            out[name] = [ci["low"], ci["high"]]
    return out


def verification_figures(d: np.ndarray, pairs: PairSet, threshold: float, *, n_boot: int,
                         seed: int) -> dict[str, Any]:
    """Every verification figure of one set of pairs at the operating ``threshold``."""
    same = pairs.same
    out: dict[str, Any] = dict(M.error_rates(d, same, threshold))
    out["pairs"] = len(pairs)
    out["no_verdict_pairs"] = int(np.isinf(d).sum())
    both = same.any() and not same.all()
    statistics = {"accuracy": lambda dd, ss: M.verification_accuracy(dd, ss, threshold)}
    if both:
        statistics.update({far: lambda dd, ss, _f=far: M.tar_at_far_rate(dd, ss, _f)
                           for far in FARS})
    cis = _cis(statistics, pairs, (d, same), n_boot, seed)
    out["accuracy_ci"] = cis["accuracy"]
    if not both:
        return out
    out["auc"] = M.roc_auc(d, same)
    rate = M.eer(d, same)
    out["eer"], out["eer_threshold"] = rate["eer"], rate["threshold"]
    out["best_threshold"] = M.best_accuracy_threshold(d, same)
    out["tar_at_far"] = {}
    for far in FARS:
        row = dict(M.tar_at_far(d, same, far))
        row["ci"] = cis[far]
        out["tar_at_far"][f"{far:.0e}"] = row
    k = None
    if pairs.folds is not None and np.unique(pairs.folds).size >= 2:
        with contextlib.suppress(ValueError):  # a fold's complement lacks a class
            k = M.kfold_verification(d, same, pairs.folds)
    if k is not None:
        out["kfold"] = {"folds": int(np.unique(pairs.folds).size), "mean": k["mean"],
                        "std": float(np.std(k["accuracies"], ddof=1)),
                        "accuracies": k["accuracies"], "thresholds": k["thresholds"]}
    return out


def _kind_table(d: np.ndarray, pairs: PairSet, embedded: EmbeddedImages, threshold: float,
                n_boot: int, seed: int) -> dict[str, Any]:
    table = {}
    kinds = sorted(set(pairs.kind), key=lambda k: (k != NO_KIND, k))
    masks = [(kind, pairs.kind == kind) for kind in kinds]
    if len([k for k in kinds if k != NO_KIND]) >= 2:
        masks.append((ALL_DISTORTED, pairs.kind != NO_KIND))
    for kind, mask in masks:
        sub = pairs.subset(mask)
        row = verification_figures(d[mask], sub, threshold, n_boot=n_boot, seed=seed)
        second = np.unique(sub.b)
        row["detection_rate"] = float(embedded.detected[second].mean())
        row["retry_detection_rate"] = sum(_found_by_retry(embedded, second).values()) / max(
            1, second.size)
        table[kind] = {k: row.get(k) for k in (
            "pairs", "accuracy", "accuracy_ci", "fmr", "fnmr", "best_threshold", "kfold",
            "detection_rate", "retry_detection_rate", "no_verdict_pairs", "auc")}
        if table[kind]["kfold"] is not None:
            table[kind]["kfold"] = {k: row["kfold"][k] for k in ("mean", "std")}
    return table


def _gender_figures(embedded: EmbeddedImages, rows: np.ndarray, truth: np.ndarray,
                    classes: tuple[str, str]) -> dict[str, Any] | None:
    prob, labels = embedded.gender_prob[rows], truth[rows]
    known = (labels >= 0) & np.isfinite(prob)
    if not known.any():
        return None
    report = M.gender_report(labels[known], prob[known], class_names=classes)
    report["classes"] = list(classes)
    return report


def _samples(embedded: EmbeddedImages, pairs: PairSet, d: np.ndarray, threshold: float,
             n: int, seed: int, errors_first: bool, classes: tuple[str, str]
             ) -> list[SamplePair]:
    if n <= 0 or len(pairs) == 0:
        return []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    if errors_first:
        wrong = (d <= threshold) != pairs.same
        order = np.concatenate([order[wrong[order]], order[~wrong[order]]])
    out = []
    for i in order[:n]:
        a, b = int(pairs.a[i]), int(pairs.b[i])
        chips = embedded.chip(a), embedded.chip(b)
        if chips[0] is None or chips[1] is None:
            continue
        verdict = None if np.isinf(d[i]) else bool(d[i] <= threshold)
        out.append(SamplePair(
            chips[0], chips[1], Path(embedded.paths[a]).name, Path(embedded.paths[b]).name,
            _gender_text(embedded.gender_prob[a], classes),
            _gender_text(embedded.gender_prob[b], classes),
            None if np.isinf(d[i]) else float(d[i]), bool(pairs.same[i]), verdict,
            str(pairs.kind[i])))
    return out


def _gender_text(p: float, classes: tuple[str, str]) -> str | None:
    if not np.isfinite(p):
        return None
    return f"{classes[1]} {p:.0%}" if p >= 0.5 else f"{classes[0]} {1 - p:.0%}"


def evaluate(service, dataset: FaceDataset, *, pairs: list[IndexPair] | None = None,
             folds: np.ndarray | None = None, data_root: str | Path | None = None,
             options: EvaluationOptions | None = None,
             data_description: dict[str, Any] | None = None) -> Evaluation:
    """Score ``dataset`` with ``service``: protocol ``pairs`` (with ``folds``) or generated
    ones, their distorted variants and per-group pairs, each image embedded once (cached)."""
    options = options or EvaluationOptions()
    started = time.perf_counter()
    threshold = service.threshold if options.threshold is None else float(options.threshold)
    source = service.threshold_source_text() if options.threshold is None else "user"
    # region thresholds: distances normalised to the global threshold (a user's replaces them)
    regions = service.regions if options.threshold is None else None
    images = ImageIndex()
    base = dataset_pairs(dataset, images, pairs=pairs, folds=folds, n_pairs=options.n_pairs,
                         seed=options.seed)
    pool = set(images.paths)
    extra, missing = None, {}
    if options.distorted is not None:
        extra, missing = distorted_pairs(dataset, base, images, Path(options.distorted),
                                         Path(data_root or ""))
    groups = {column: group_pairs(dataset, labels, images, per_group=options.group_pairs,
                                  seed=options.seed, pool=pool)
              for column, labels in options.groups.items()}
    embedded = embed_paths(service, images.paths, cache_dir=options.cache_dir,
                           use_cache=options.use_cache, progress=options.progress,
                           workers=options.workers)
    d = pair_distances(embedded, base, regions, threshold)
    classes = tuple(service.gender_classes)
    figures = verification_figures(d, base, threshold, n_boot=options.bootstrap,
                                   seed=options.seed)
    metrics: dict[str, Any] = {
        "siamface_version": _version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": _model_description(service),
        "data": {**(data_description or {}), **_data_counts(dataset, base, embedded, pairs)},
        "threshold": {"value": threshold, "source": source,
                      "calibration": service.info.calibration or None,
                      "regions": None if regions is None else {
                          "regions": regions.n_regions, "fmr": regions.fmr,
                          "source": regions.source,
                          "distances": "normalised: d * threshold / the pair's threshold"}},
        "verification": figures,
        "bootstrap": {"samples": options.bootstrap, "level": 0.95, "unit": "person",
                      "seed": options.seed},
    }
    truth = np.full(len(images), -1, np.int64)
    for record in dataset:
        row = images.row(record.path)
        if row is not None:
            truth[row] = record.gender_label
    base_rows = np.unique(np.concatenate([base.a, base.b]))
    metrics["gender"] = (_gender_figures(embedded, base_rows, truth, classes)
                         if service.gender_available else None)
    all_pairs, all_d = base, d
    if extra is not None:
        d_extra = pair_distances(embedded, extra, regions, threshold)
        both = PairSet.concat([base, extra])
        all_pairs, all_d = both, np.concatenate([d, d_extra])
        metrics["distortions"] = _kind_table(all_d, both, embedded, threshold,
                                             options.bootstrap, options.seed)
        metrics["data"]["distorted"] = {"path": str(options.distorted),
                                        "pairs_without_copy": missing}
    elif len(set(base.kind)) > 1:
        metrics["distortions"] = _kind_table(d, base, embedded, threshold, options.bootstrap,
                                             options.seed)
    else:
        metrics["distortions"] = None
    metrics["groups"] = {
        column: _group_report(embedded, group_set, options.groups[column], dataset, images,
                              truth, threshold, classes, service.gender_available,
                              options.bootstrap, options.seed, regions)
        for column, group_set in groups.items()} or None
    samples = _samples(embedded, all_pairs, all_d, threshold, options.samples, options.seed,
                       options.errors_first, classes)
    metrics["seconds"] = time.perf_counter() - started
    gender_rows = base_rows[(truth[base_rows] >= 0) & np.isfinite(embedded.gender_prob[base_rows])]
    return Evaluation(
        metrics=_clean(metrics), distances=d, same=base.same.copy(),
        kinds=base.kind.astype(str), gender_true=truth[gender_rows],
        gender_prob=embedded.gender_prob[gender_rows], samples=samples)


def _group_report(embedded: EmbeddedImages, pairs: PairSet, labels: list[str | None],
                  dataset: FaceDataset, images: ImageIndex, truth: np.ndarray,
                  threshold: float, classes: tuple[str, str], gender: bool, n_boot: int,
                  seed: int, regions=None) -> dict[str, Any]:
    d = pair_distances(embedded, pairs, regions, threshold)
    report = M.group_error_rates(d, pairs.same, pairs.kind.astype(str), threshold)
    for value, row in report["groups"].items():
        _rate_intervals(row, d, pairs, pairs.kind == value, threshold, n_boot, seed)
    image_groups = {}
    for record, value in zip(dataset, labels):
        row = images.row(record.path)
        if row is not None and value is not None:
            image_groups[row] = value
    for value, row in report["groups"].items():
        rows = np.array([r for r, v in image_groups.items() if v == value], np.int64)
        row["images"] = int(rows.size)
        row["gender"] = (_gender_figures(embedded, rows, truth, classes)
                         if gender and rows.size else None)
        if row["gender"] is not None:
            row["gender"] = {k: row["gender"][k] for k in ("accuracy", "per_class", "n")}
    return report


def _rate_intervals(row: dict[str, Any], d: np.ndarray, pairs: PairSet, mask: np.ndarray,
                    threshold: float, n_boot: int, seed: int) -> None:
    """Bootstrap intervals (people resampled) of a group's FMR and FNMR."""
    for key, side, wrong in (("fmr", ~pairs.same, lambda x: x <= threshold),
                             ("fnmr", pairs.same, lambda x: x > threshold)):
        chosen = mask & side
        row[f"{key}_ci"] = None
        if chosen.any() and n_boot > 0:
            with contextlib.suppress(ValueError):
                ci = M.bootstrap_ci(lambda x, _w=wrong: float(np.mean(_w(x))), d[chosen],
                                    clusters=pairs.cluster[chosen], n_boot=n_boot, seed=seed)
                row[f"{key}_ci"] = [ci["low"], ci["high"]]


def _model_description(service) -> dict[str, Any]:
    pipeline = service.pipeline
    return {
        "description": service.describe(),
        "path": None if service.model_path is None else str(service.model_path),
        "id": service.model_id,
        "backbone": service.info.backbone,
        "flip": service.flip,
        "crop": pipeline.crop_mode,
        "select": pipeline.select,
        "fallback_policy": pipeline.fallback_policy,
        "gender_trained": service.gender_available,
    }


def _found_by_retry(embedded: EmbeddedImages, rows: np.ndarray) -> dict[str, int]:
    """How many of the images ``rows`` each detection retry found a face in."""
    counts: dict[str, int] = {}
    for r in rows:
        entry = embedded.entries[r]
        by = None if entry is None else entry.detected_by
        if by is not None and by != "detector":
            counts[by] = counts.get(by, 0) + 1
    return dict(sorted(counts.items()))


def _data_counts(dataset: FaceDataset, base: PairSet, embedded: EmbeddedImages,
                 protocol_pairs) -> dict[str, Any]:
    rows = np.unique(np.concatenate([base.a, base.b]))
    unreadable = sum(1 for e in (embedded.entries[r] for r in rows)
                     if e is None or e.chip is None)
    return {
        "dataset_images": len(dataset),
        "persons": len(dataset.person_indices()),
        "images": int(rows.size),
        "pairs": len(base),
        "genuine": int(base.same.sum()),
        "impostor": int((~base.same).sum()),
        "protocol": "protocol pairs" if protocol_pairs is not None else "generated",
        "images_without_face": int((~embedded.has_face[rows]).sum()) - unreadable,
        "images_unreadable": unreadable,
        "images_detected": int(embedded.detected[rows].sum()),
        "images_found_by_retry": _found_by_retry(embedded, rows),
        "embeddings_computed": embedded.computed,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("siamface")
    except PackageNotFoundError:
        return "unknown"
