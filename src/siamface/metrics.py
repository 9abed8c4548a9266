"""Verification and gender metrics: pure numpy (sklearn for the standard ones), no file I/O.

Verification scores are *distances*: smaller means more alike, and a pair is predicted
"same" when ``distance <= threshold``. Thresholds are chosen among the midpoints between
consecutive distinct distances (plus one below the smallest and the largest), so a chosen
threshold classifies its own data exactly as the best cut does and sits in the gap rather
than on a sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import NotFittedError as _SklearnNotFitted

from siamface.errors import SiamfaceError, UnknownNameError

__all__ = [
    "THRESHOLD_METHODS",
    "NotFittedError",
    "ThresholdCalibrator",
    "best_accuracy_threshold",
    "gender_report",
    "kfold_verification",
    "roc_auc",
    "roc_curve",
    "threshold_sweep",
    "verification_accuracy",
    "youden_threshold",
]

THRESHOLD_METHODS = ("youden", "accuracy")


class NotFittedError(SiamfaceError, _SklearnNotFitted):
    """An estimator was used before ``fit`` (also an sklearn ``NotFittedError``)."""


def _check_pairs(distances: Any, same: Any, *, both_classes: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same).ravel().astype(bool)
    if d.shape != s.shape:
        raise ValueError(f"distances ({d.size}) and same ({s.size}) must have the same length")
    if d.size == 0:
        raise ValueError("no pairs given")
    if not np.isfinite(d).all():
        raise ValueError(f"distances contain {int((~np.isfinite(d)).sum())} NaN/inf value(s)")
    if both_classes and (s.all() or not s.any()):
        raise ValueError("need both same-person and different-person pairs to choose a threshold")
    return d, s


def roc_curve(distances: Any, same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` with "same" predicted for ``distance <= threshold``
    (sklearn's ROC on the negated distances, thresholds given back as distances)."""
    d, s = _check_pairs(distances, same)
    fpr, tpr, thresholds = skm.roc_curve(s, -d, drop_intermediate=False)
    return fpr, tpr, -thresholds


def roc_auc(distances: Any, same: Any) -> float:
    """Area under the ROC curve (1.0 when every same pair is closer than every other)."""
    d, s = _check_pairs(distances, same)
    return float(skm.roc_auc_score(s, -d))


def threshold_sweep(distances: Any, same: Any) -> dict[str, np.ndarray]:
    """Every useful threshold with its true/false positive rates and accuracy, as arrays
    ``threshold``, ``tpr``, ``fpr``, ``accuracy`` (ascending thresholds)."""
    d, s = _check_pairs(distances, same, both_classes=False)
    order = np.argsort(d, kind="stable")
    d_sorted, s_sorted = d[order], s[order]
    uniq = np.unique(d_sorted)
    below = np.nextafter(uniq[0], -np.inf)
    thresholds = np.concatenate([[below], (uniq[:-1] + uniq[1:]) / 2.0, [uniq[-1]]])
    n_pred_same = np.searchsorted(d_sorted, thresholds, side="right")
    cum_pos = np.concatenate([[0], np.cumsum(s_sorted)])
    tp = cum_pos[n_pred_same]
    fp = n_pred_same - tp
    n_pos = int(s.sum())
    n_neg = s.size - n_pos
    tpr = tp / n_pos if n_pos else np.zeros_like(tp, dtype=np.float64)
    fpr = fp / n_neg if n_neg else np.zeros_like(fp, dtype=np.float64)
    accuracy = (tp + (n_neg - fp)) / s.size
    return {"threshold": thresholds, "tpr": tpr, "fpr": fpr, "accuracy": accuracy}


def youden_threshold(distances: Any, same: Any) -> float:
    """The threshold maximising Youden's J = TPR - FPR (the smallest one on ties)."""
    _check_pairs(distances, same)
    sweep = threshold_sweep(distances, same)
    return float(sweep["threshold"][np.argmax(sweep["tpr"] - sweep["fpr"])])


def best_accuracy_threshold(distances: Any, same: Any) -> float:
    """The threshold maximising accuracy (the smallest one on ties)."""
    _check_pairs(distances, same)
    sweep = threshold_sweep(distances, same)
    return float(sweep["threshold"][np.argmax(sweep["accuracy"])])


_CHOOSERS = {"youden": youden_threshold, "accuracy": best_accuracy_threshold}


def verification_accuracy(distances: Any, same: Any, threshold: float) -> float:
    """Fraction of pairs classified right by ``distance <= threshold``."""
    d, s = _check_pairs(distances, same, both_classes=False)
    return float(np.mean((d <= threshold) == s))


def kfold_verification(
    distances: Any, same: Any, folds: int | Sequence[int] | np.ndarray = 10,
    *, method: str = "accuracy",
) -> dict[str, Any]:
    """K-fold verification accuracy: for each fold, the threshold is chosen (``method``
    "accuracy" or "youden") on the other folds only and applied to that fold.

    ``folds`` is the number of contiguous folds (pairs in protocol order, as LFW's
    ``pairs.txt``) or a fold index per pair (``LFWPair.fold``). Returns ``mean``, ``std``
    (population std over folds, as insightface), ``accuracies`` and ``thresholds`` (one per
    fold, numpy arrays) and ``folds`` (the sorted fold ids).
    """
    d, s = _check_pairs(distances, same)
    if method not in _CHOOSERS:
        raise UnknownNameError("threshold method", method, THRESHOLD_METHODS)
    if isinstance(folds, (int, np.integer)):
        k = int(folds)
        if not 2 <= k <= d.size:
            raise ValueError(f"folds must be between 2 and the number of pairs, got {k}")
        fold_of = np.arange(d.size) * k // d.size
    else:
        fold_of = np.asarray(folds).ravel()
        if fold_of.shape != d.shape:
            raise ValueError(f"folds has {fold_of.size} entries for {d.size} pairs")
    fold_ids = np.unique(fold_of)
    if fold_ids.size < 2:
        raise ValueError("k-fold verification needs at least 2 folds")
    accuracies, thresholds = [], []
    for fold in fold_ids:
        test = fold_of == fold
        threshold = _CHOOSERS[method](d[~test], s[~test])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((d[test] <= threshold) == s[test])))
    acc = np.asarray(accuracies)
    return {
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "accuracies": acc,
        "thresholds": np.asarray(thresholds),
        "folds": fold_ids,
    }


def gender_report(
    y_true: Any, y_prob: Any, threshold: float = 0.5,
    class_names: tuple[str, str] = ("male", "female"),
) -> dict[str, Any]:
    """Gender classification report. ``y_true`` is 0/1 (index into ``class_names``; -1 or NaN
    = unknown, left out and counted in ``n_unknown``), ``y_prob`` the probability of class 1,
    predicted when ``>= threshold``. Returns ``accuracy``, ``balanced_accuracy``,
    ``per_class`` (name -> precision, recall, f1, support), ``confusion_matrix`` (rows true,
    columns predicted, in ``class_names`` order), ``roc_auc`` (None unless both classes are
    present), ``threshold``, ``n`` and ``n_unknown``."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_prob, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true ({t.size}) and y_prob ({p.size}) must have the same length")
    known = ~np.isnan(t) & (t >= 0)
    if not known.any():
        raise ValueError("y_true has no known labels (all -1/NaN)")
    bad = np.setdiff1d(np.unique(t[known]), [0.0, 1.0])
    if bad.size:
        raise ValueError(f"y_true must hold 0, 1 or -1/NaN; got {bad[:5]}")
    t_known = t[known].astype(np.int64)
    pred = (p[known] >= threshold).astype(np.int64)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        t_known, pred, labels=[0, 1], zero_division=0
    )
    both = np.unique(t_known).size == 2
    return {
        "accuracy": float(skm.accuracy_score(t_known, pred)),
        "balanced_accuracy": float(np.mean(recall[support > 0])),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": skm.confusion_matrix(t_known, pred, labels=[0, 1]),
        "roc_auc": float(skm.roc_auc_score(t_known, p[known])) if both else None,
        "threshold": float(threshold),
        "n": int(known.sum()),
        "n_unknown": int((~known).sum()),
    }


class ThresholdCalibrator:
    """Learns a verification distance threshold (sklearn estimator rule).

    ``__init__`` only stores ``method`` ("youden" or "accuracy"); ``fit(distances, same)``
    sets ``threshold_``; ``predict(distances)`` returns "same" booleans and raises
    ``NotFittedError`` before ``fit``.
    """

    def __init__(self, method: str = "youden"):
        self.method = method

    def fit(self, distances: Any, same: Any) -> ThresholdCalibrator:
        """Choose ``threshold_`` on these pairs; returns self."""
        if self.method not in _CHOOSERS:
            raise UnknownNameError("threshold method", self.method, THRESHOLD_METHODS)
        self.threshold_ = _CHOOSERS[self.method](distances, same)
        return self

    def _check_fitted(self) -> float:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(
                "this ThresholdCalibrator is not fitted yet; call fit(distances, same) on "
                "calibration pairs before predict"
            )
        return self.threshold_

    def predict(self, distances: Any) -> np.ndarray:
        """Boolean "same person" per distance (``distance <= threshold_``)."""
        threshold = self._check_fitted()
        return np.asarray(distances, dtype=np.float64) <= threshold

    def score(self, distances: Any, same: Any) -> float:
        """Accuracy of ``predict`` on labelled pairs."""
        return verification_accuracy(distances, same, self._check_fitted())

    def __repr__(self) -> str:
        fitted = f", threshold_={self.threshold_:.6g}" if hasattr(self, "threshold_") else ""
        return f"ThresholdCalibrator(method={self.method!r}{fitted})"
