"""What an evaluation produced, in one object the report writers read: the figures
(``metrics``, exactly what ``metrics.json`` holds) and the arrays behind the plots.

``metrics`` layout (keys that do not apply are absent or None)::

    model:        {description, path, sha256, backbone, flip, crop, select, fallback_policy}
    data:         {description, path, layout, images, persons, pairs, genuine, impostor,
                   protocol ("lfw-pairs" | "generated"), seed, images_without_face,
                   images_unreadable}
    threshold:    {value, source}            the operating threshold and how it was chosen
    verification: {accuracy, accuracy_ci [lo, hi], balanced_accuracy, macro_f1, fmr, fnmr,
                   auc, eer, eer_threshold,
                   tar_at_far: {"1e-02": {tar, ci [lo, hi], threshold, false_accepts,
                                          impostors, few_false_accepts}, "1e-03": {...}},
                   confusion_matrix [[same->same, same->different],
                                     [different->same, different->different]],
                   kfold: {folds, mean, std, accuracies [...], thresholds [...]} | None,
                   no_verdict_pairs}
    gender:       {accuracy, balanced_accuracy, macro_f1, roc_auc, n, n_unknown,
                   per_class: {male: {precision, recall, f1, support}, female: {...}},
                   confusion_matrix [[..], [..]] (rows true, columns predicted),
                   classes [male, female]} | None
    distortions:  {kind: {pairs, accuracy, accuracy_ci, fmr, fnmr, detection_rate,
                          no_verdict_pairs}} | None   ("none" = undistorted pairs)
    groups:       {column: {groups: {value: {images, pairs, genuine, impostor, accuracy,
                                             fmr, fnmr, best_threshold, best_accuracy,
                                             gender: {accuracy, per_class}|None}},
                            ratios: {fmr, fnmr}}} | None   (worst / best group)
    bootstrap:    {samples, level, unit ("person" | "pair"), seed}
    seconds:      wall time of the evaluation
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Evaluation", "SamplePair"]


@dataclass(frozen=True)
class SamplePair:
    """One scored pair for the visual samples: both crops, their genders, the verdict."""

    chip_a: np.ndarray = field(repr=False)  # (S, S, 3) uint8
    chip_b: np.ndarray = field(repr=False)
    name_a: str = ""
    name_b: str = ""
    gender_a: str | None = None  # e.g. "female 97%"
    gender_b: str | None = None
    distance: float | None = None  # None: no verdict (a face was absent)
    same: bool = False  # the truth
    predicted: bool | None = None  # the verdict at the operating threshold
    kind: str = "none"  # distortion tag of the pair

    @property
    def correct(self) -> bool:
        return self.predicted is not None and self.predicted == self.same


@dataclass
class Evaluation:
    """Figures and arrays of one evaluation. ``distances`` / ``same`` / ``kinds`` have one
    entry per scored pair (pairs without a verdict have distance ``inf``); ``gender_true`` /
    ``gender_prob`` one per image with a face and a known label."""

    metrics: dict[str, Any]
    distances: np.ndarray
    same: np.ndarray
    kinds: np.ndarray
    gender_true: np.ndarray | None = None
    gender_prob: np.ndarray | None = None
    samples: list[SamplePair] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return float(self.metrics["threshold"]["value"])
