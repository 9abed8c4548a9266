"""Choose a model's verification threshold on the user's own pairs and write a checkpoint copy
that carries it, with what data and method chose it."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from siamface.checkpoint import CheckpointInfo, save_checkpoint, with_threshold
from siamface.data import FaceDataset, IndexPair
from siamface.errors import DatasetError
from siamface.evaluation.embeddings import embed_paths
from siamface.evaluation.pairs import ImageIndex, dataset_pairs, distorted_pairs
from siamface.evaluation.run import EvaluationOptions, pair_distances
from siamface.metrics import ThresholdCalibrator, error_rates
from siamface.regions import DEFAULT_REGIONS, MIN_MEMBERS, RegionThresholds, fit_region_thresholds

__all__ = ["Calibration", "calibrate", "save_calibrated"]


@dataclass
class Calibration:
    """A fitted calibrator and what it was fitted on (``record`` goes into the checkpoint)."""

    calibrator: ThresholdCalibrator | None  # None for the region method
    previous: float
    previous_source: str
    before: dict[str, Any]  # error rates on the calibration pairs at the previous threshold
    after: dict[str, Any]  # ... and at the new one
    record: dict[str, Any]
    regions: RegionThresholds | None = None

    @property
    def threshold(self) -> float:
        if self.regions is not None:
            return float(self.regions.overall)
        return float(self.calibrator.threshold_)


def calibrate(service, dataset: FaceDataset, *, method: str = "youden", far: float = 1e-3,
              pairs: list[IndexPair] | None = None, folds: np.ndarray | None = None,
              data_root: str | os.PathLike | None = None,
              options: EvaluationOptions | None = None,
              data_description: dict[str, Any] | None = None) -> Calibration:
    """Fit a :class:`ThresholdCalibrator` on ``dataset``'s pairs (protocol ``pairs`` or
    generated ones). With ``options.distorted`` it is fitted on the distorted pairs only (each
    pair's second image replaced by its copy, every kind pooled): the conditions the
    threshold is meant for. Pairs without a verdict (a face absent) are left out.

    ``method="region"`` fits region thresholds (:mod:`siamface.regions`) at false-match rate
    ``far`` on every image of ``dataset`` (impostors: pairs of different people), and reports
    the pairs' error rates before and at them."""
    options = options or EvaluationOptions()
    images = ImageIndex()
    chosen = base = dataset_pairs(dataset, images, pairs=pairs, folds=folds,
                                  n_pairs=options.n_pairs, seed=options.seed)
    if options.distorted is not None:
        chosen, _ = distorted_pairs(dataset, base, images, Path(options.distorted),
                                    Path(data_root or ""))
    used = np.unique(np.concatenate([chosen.a, chosen.b]))  # not the clean copies replaced
    if method == "region":  # fitted on every image of the dataset: embed them all at once
        used = np.union1d(used, [images.add(r.path) for r in dataset])
    embedded = embed_paths(service, [images.paths[r] for r in used],
                           cache_dir=options.cache_dir, use_cache=options.use_cache,
                           progress=options.progress, workers=options.workers)
    position = np.empty(len(images), np.int64)
    position[used] = np.arange(used.size)
    chosen.a, chosen.b = position[chosen.a], position[chosen.b]
    d = pair_distances(embedded, chosen)
    scored = np.isfinite(d)
    d, same = d[scored], chosen.same[scored]
    if same.all() or not same.any():
        raise DatasetError(
            f"{dataset.name}: calibration needs genuine and impostor pairs with a face in both "
            f"images; got {int(same.sum())} genuine and {int((~same).sum())} impostor")
    regions = None
    if method == "region":
        rows = position[[images.row(r.path) for r in dataset]]
        regions = _fit_regions(embedded, rows, dataset, far, options.seed, data_description)
        calibrator = None
        scored_rows = chosen.subset(scored)
        d_after = regions.normalise(d, embedded.embeddings[scored_rows.a],
                                    embedded.embeddings[scored_rows.b], regions.overall)
        after = error_rates(d_after, same, regions.overall)
    else:
        calibrator = ThresholdCalibrator(method=method, far=far).fit(d, same)
        after = error_rates(d, same, calibrator.threshold_)
    record = {
        "method": method,
        **({"far": far} if method in ("far", "region") else {}),
        **({"regions": regions.n_regions} if regions is not None else {}),
        "data": data_description or {"description": dataset.name},
        "pairs": int(same.size),
        "genuine": int(same.sum()),
        "impostor": int((~same).sum()),
        "pairs_without_verdict": int((~scored).sum()),
        "distorted": None if options.distorted is None else {
            "path": str(options.distorted), "kinds": sorted(set(chosen.kind.astype(str)))},
        "seed": options.seed if pairs is None else None,
        "previous_threshold": service.threshold,
        "previous_source": service.info.threshold_source,
        "model": service.model_id,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return Calibration(calibrator, service.threshold, service.info.threshold_source,
                       error_rates(d, same, service.threshold), after, record, regions)


def _fit_regions(embedded, rows: np.ndarray, dataset: FaceDataset, far: float, seed: int,
                 data_description: dict[str, Any] | None) -> RegionThresholds:
    """Region thresholds on the faces of ``dataset`` (its records' ``rows`` of ``embedded``)."""
    face = embedded.has_face[rows]
    n_faces = int(face.sum())
    n_regions = max(1, min(DEFAULT_REGIONS, n_faces // (2 * MIN_MEMBERS)))
    where = (data_description or {}).get("description") or dataset.name
    persons = [r.person_id for r, keep in zip(dataset, face) if keep]
    try:
        return fit_region_thresholds(embedded.embeddings[rows[face]], fmr=far,
                                     n_regions=n_regions, person_ids=persons,
                                     source=f"{n_faces} faces of {where}", seed=seed)
    except ValueError as exc:
        raise DatasetError(f"{dataset.name}: cannot fit region thresholds ({exc})") from exc


def source_text(calibration: Calibration) -> str:
    """How the threshold was chosen, in a few words (the checkpoint's threshold source)."""
    rec = calibration.record
    how = (f"far {rec['far']:g}" if rec["method"] == "far" else
           f"region ({rec['regions']} regions, FMR {rec['far']:g})" if rec["method"] == "region"
           else rec["method"])
    where = rec["data"].get("description") or rec["data"].get("path") or "user data"
    kinds = f", distorted: {', '.join(rec['distorted']['kinds'])}" if rec["distorted"] else ""
    if calibration.regions is not None:
        return f"{how} fitted on {calibration.regions.source}{kinds}"
    return f"{how} on {rec['pairs']} pairs of {where}{kinds}"


def save_calibrated(service, calibration: Calibration, out: str | os.PathLike
                    ) -> CheckpointInfo:
    """Write a checkpoint copy of ``service``'s model with the calibrated threshold."""
    regions = None if calibration.regions is None else calibration.regions.to_dict()
    if service.model_path is not None:
        return with_threshold(service.model_path, out, threshold=calibration.threshold,
                              threshold_source=source_text(calibration),
                              calibration=calibration.record, regions=regions)
    info = save_checkpoint(out, service.model, threshold=calibration.threshold,
                           threshold_source=source_text(calibration), gender_trained=False,
                           preprocessing={"crop": service.pipeline.crop_mode,
                                          "select": service.pipeline.select,
                                          "flip_average": bool(service.flip)})
    return with_threshold(out, out, threshold=info.threshold,
                          threshold_source=info.threshold_source,
                          calibration=calibration.record, regions=regions)
