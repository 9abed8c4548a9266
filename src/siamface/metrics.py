"""Verification and gender metrics: pure numpy, no file I/O.

The standard ones (ROC, AUC, DET, precision / recall / F1, confusion matrix) are written in
numpy rather than imported from sklearn, whose import costs seconds on every evaluation;
``tests/test_metrics.py`` checks each against sklearn.

Verification scores are *distances*: smaller means more alike, and a pair is predicted
"same" when ``distance <= threshold``. Thresholds are chosen among the midpoints between
consecutive distinct distances (plus one below the smallest and the largest), so a chosen
threshold classifies its own data exactly as the best cut does and sits in the gap rather
than on a sample.

A distance of ``+inf`` marks a pair without a verdict (e.g. a face was not found): it is
never a match at a finite threshold, it counts in every rate's denominator, and it never
becomes a threshold (the sweep's thresholds are finite). NaN and ``-inf`` are rejected.
The ranking metrics (``roc_auc``, ``roc_curve``, ``det_curve``) rank such pairs as the
farthest of all. Functions added for reports return plain python values (float, int, list,
None), ready for ``json.dumps``; the curves and the older functions return numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import numpy as np

from siamface.errors import SiamfaceError, UnknownNameError

__all__ = [
    "THRESHOLD_METHODS",
    "NotFittedError",
    "ThresholdCalibrator",
    "best_accuracy_threshold",
    "bootstrap_ci",
    "bootstrap_cis",
    "det_curve",
    "eer",
    "error_rates",
    "far_threshold",
    "gender_by_group",
    "gender_report",
    "group_error_rates",
    "kfold_verification",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "tar_at_far_rate",
    "threshold_sweep",
    "verification_accuracy",
    "youden_threshold",
]

THRESHOLD_METHODS = ("youden", "accuracy", "far")
DEFAULT_FAR = 1e-3
FEW_FALSE_ACCEPTS = 10  # a TAR@FAR resting on fewer false accepts than this is flagged


class NotFittedError(SiamfaceError, ValueError, AttributeError):
    """An estimator was used before ``fit`` (a ValueError and AttributeError, as sklearn's
    ``NotFittedError`` is)."""


# ----------------------------------------------------------------------------- input checks


def _check_pairs(distances: Any, same: Any, *, both_classes: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same).ravel().astype(bool)
    if d.shape != s.shape:
        raise ValueError(f"distances ({d.size}) and same ({s.size}) must have the same length")
    if d.size == 0:
        raise ValueError("no pairs given")
    n_nan = int(np.isnan(d).sum())
    if n_nan:
        raise ValueError(f"distances contain {n_nan} NaN value(s); use +inf for a pair "
                         "without a verdict")
    n_neg_inf = int(np.isneginf(d).sum())
    if n_neg_inf:
        raise ValueError(f"distances contain {n_neg_inf} -inf value(s); only +inf (a pair "
                         "without a verdict) is allowed")
    if both_classes and (s.all() or not s.any()):
        raise ValueError("need both same-person and different-person pairs to choose a threshold")
    return d, s


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, Real) \
            or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def _check_far(far: Any) -> float:
    if isinstance(far, bool) or not isinstance(far, Real) or not 0.0 < far < 1.0:
        raise ValueError(f"far must be a false accept rate strictly between 0 and 1 "
                         f"(e.g. 1e-3), got {far!r}")
    return float(far)


def _check_groups(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups).ravel()
    if g.size != n:
        raise ValueError(f"groups ({g.size}) must have one value per pair ({n})")
    if g.dtype.kind == "f" and np.isnan(g).any():
        raise ValueError("groups contain NaN; give every pair a group value")
    return g


def _plain(value: Any) -> Any:
    """A numpy scalar as the python value (for dict keys and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


# ----------------------------------------------------------------------------- curves


def _accept_counts(d: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct distance (ascending, +inf included) with the genuine (tp) and impostor
    (fp) pairs accepted by ``distance <= it``."""
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]
    last = np.r_[np.flatnonzero(d_sorted[1:] != d_sorted[:-1]), d_sorted.size - 1]
    tp = np.cumsum(s[order])[last]
    return d_sorted[last], tp, last + 1 - tp


def roc_curve(distances: Any, same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` with "same" predicted for ``distance <= threshold``, one
    point per distinct distance (sklearn's ``roc_curve(drop_intermediate=False)`` on the
    negated distances, thresholds given back as distances).

    ``thresholds[0]`` is ``-inf`` (nothing accepted); with +inf distances the last point,
    at threshold ``+inf``, is the only one that accepts them."""
    d, s = _check_pairs(distances, same)
    thresholds, tp, fp = _accept_counts(d, s)
    n_pos = int(s.sum())
    return (np.r_[0.0, fp / (s.size - n_pos)], np.r_[0.0, tp / n_pos],
            np.r_[-np.inf, thresholds])


def _auc_of_ranks(d: np.ndarray, s: np.ndarray) -> float:
    """P(a genuine distance is below an impostor one) + half P(tie) (Mann-Whitney U)."""
    _, inverse, counts = np.unique(d, return_inverse=True, return_counts=True)
    midrank = np.cumsum(counts) - (counts - 1) / 2.0  # ascending ranks, ties averaged
    n_pos = int(s.sum())
    n_neg = s.size - n_pos
    rank_sum_neg = float(midrank[inverse[~s]].sum())
    return (rank_sum_neg - n_neg * (n_neg + 1) / 2.0) / (n_pos * n_neg)


def roc_auc(distances: Any, same: Any) -> float:
    """Area under the ROC curve (1.0 when every same pair is closer than every other;
    +inf distances rank as the farthest, tied with each other)."""
    d, s = _check_pairs(distances, same)
    return _auc_of_ranks(d, s)


def det_curve(distances: Any, same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detection error tradeoff ``(fmr, fnmr, thresholds)`` of ``distance <= threshold``
    (sklearn's ``det_curve`` on the negated distances, thresholds given back as distances).

    sklearn's order is kept: FMR decreasing, FNMR increasing, thresholds descending, from
    the point accepting everything to the first with FMR 0 (``-inf`` when that is accepting
    nothing); a ``+inf`` threshold is the point accepting the +inf pairs. Numpy arrays, for
    plots."""
    d, s = _check_pairs(distances, same)
    thresholds, tp, fp = _accept_counts(d, s)
    thresholds, tp, fp = np.r_[-np.inf, thresholds], np.r_[0, tp], np.r_[0, fp]
    n_pos, n_neg = int(tp[-1]), int(fp[-1])
    first = int(np.searchsorted(fp, fp[0], side="right")) - 1  # the last with FMR 0
    last = int(np.searchsorted(tp, tp[-1])) + 1  # the first accepting every genuine pair
    keep = slice(first, last)
    return (fp[keep][::-1] / n_neg, (n_pos - tp[keep])[::-1] / n_pos,
            thresholds[keep][::-1].astype(np.float64))


# ----------------------------------------------------------------------------- the sweep


def _sweep_counts(d: np.ndarray, s: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Candidate thresholds (ascending, finite) with the genuine (tp) and impostor (fp)
    pairs accepted at each, and the genuine and impostor totals."""
    finite = np.isfinite(d)
    if not finite.any():
        raise ValueError("every distance is +inf (no pair has a verdict): no threshold to "
                         "choose")
    order = np.argsort(d, kind="stable")
    d_sorted, s_sorted = d[order], s[order]
    uniq = np.unique(d[finite])
    below = np.nextafter(uniq[0], -np.inf)
    thresholds = np.concatenate([[below], (uniq[:-1] + uniq[1:]) / 2.0, [uniq[-1]]])
    n_pred_same = np.searchsorted(d_sorted, thresholds, side="right")
    cum_pos = np.concatenate([[0], np.cumsum(s_sorted)])
    tp = cum_pos[n_pred_same]
    fp = n_pred_same - tp
    n_pos = int(s.sum())
    return thresholds, tp, fp, n_pos, s.size - n_pos


def threshold_sweep(distances: Any, same: Any) -> dict[str, np.ndarray]:
    """Every useful threshold with its true/false positive rates and accuracy, as arrays
    ``threshold``, ``tpr``, ``fpr``, ``accuracy`` (ascending thresholds, all finite; a +inf
    distance is accepted at none of them)."""
    d, s = _check_pairs(distances, same, both_classes=False)
    thresholds, tp, fp, n_pos, n_neg = _sweep_counts(d, s)
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


def eer(distances: Any, same: Any) -> dict[str, float]:
    """Equal error rate: where the false match rate (impostors accepted) and the false
    non-match rate (genuine pairs rejected) cross.

    On the sweep's thresholds the two rates are step functions and rarely meet exactly, so
    the threshold chosen is the one minimising ``|FMR - FNMR|`` (compared exactly on the
    counts; the smallest threshold on ties) and ``eer`` is the mean of the two rates there.
    Returns ``eer``, ``threshold``, and the ``fmr`` and ``fnmr`` at it."""
    d, s = _check_pairs(distances, same)
    thresholds, tp, fp, n_pos, n_neg = _sweep_counts(d, s)
    fn = n_pos - tp
    i = int(np.argmin(np.abs(fp * n_pos - fn * n_neg)))  # |fp/n_neg - fn/n_pos|, scaled
    fmr, fnmr = fp[i] / n_neg, fn[i] / n_pos
    return {"eer": float((fmr + fnmr) / 2), "threshold": float(thresholds[i]),
            "fmr": float(fmr), "fnmr": float(fnmr)}


def tar_at_far(distances: Any, same: Any, far: float) -> dict[str, Any]:
    """True accept rate at a false accept rate: the largest sweep threshold whose FMR is at
    most ``far`` (0 < far < 1), and the genuine pairs accepted there.

    Returns ``tar``, ``threshold``, ``far`` (the target), ``far_actual``, ``false_accepts``
    (impostors accepted), ``impostors`` and ``few_false_accepts`` (True when fewer than 10
    impostors are accepted: the operating point then rests on too few errors to be
    reliable, typically because there are too few impostor pairs for this ``far``)."""
    far = _check_far(far)
    d, s = _check_pairs(distances, same)
    thresholds, tp, fp, n_pos, n_neg = _sweep_counts(d, s)
    i = int(np.flatnonzero(fp / n_neg <= far)[-1])  # fp is 0 at the first threshold
    false_accepts = int(fp[i])
    return {
        "tar": float(tp[i] / n_pos),
        "threshold": float(thresholds[i]),
        "far": far,
        "far_actual": float(false_accepts / n_neg),
        "false_accepts": false_accepts,
        "impostors": int(n_neg),
        "few_false_accepts": false_accepts < FEW_FALSE_ACCEPTS,
    }


def tar_at_far_rate(distances: Any, same: Any, far: float) -> float:
    """``tar_at_far(distances, same, far)["tar"]`` in linear time (a partition instead of a
    sort), for bootstrap resamples: with ``k`` the most impostors ``far`` allows, the chosen
    sweep threshold accepts exactly the genuine pairs closer than the (k+1)-th closest
    impostor."""
    far = _check_far(far)
    d, s = _check_pairs(distances, same)
    impostors, genuine = d[~s], d[s]
    k = int(np.floor(far * impostors.size))
    while (k + 1) / impostors.size <= far:  # the float test tar_at_far applies
        k += 1
    while k > 0 and k / impostors.size > far:
        k -= 1
    bound = np.partition(impostors, k)[k]
    return float(np.count_nonzero(genuine < bound) / genuine.size)


def far_threshold(distances: Any, same: Any, far: float = DEFAULT_FAR) -> float:
    """The largest sweep threshold whose false accept rate is at most ``far``
    (``tar_at_far``'s threshold)."""
    return tar_at_far(distances, same, far)["threshold"]


_CHOOSERS: dict[str, Callable[..., float]] = {
    "youden": youden_threshold, "accuracy": best_accuracy_threshold,
}


def _check_method(method: str, far: Any) -> None:
    if method not in THRESHOLD_METHODS:
        raise UnknownNameError("threshold method", method, THRESHOLD_METHODS)
    if method == "far":
        _check_far(far)


def _choose_threshold(method: str, d: Any, s: Any, far: Any) -> float:
    _check_method(method, far)
    if method == "far":
        return far_threshold(d, s, far)
    return _CHOOSERS[method](d, s)


# ----------------------------------------------------------------------------- fixed threshold


def verification_accuracy(distances: Any, same: Any, threshold: float) -> float:
    """Fraction of pairs classified right by ``distance <= threshold``."""
    d, s = _check_pairs(distances, same, both_classes=False)
    return float(np.mean((d <= threshold) == s))


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0  # sklearn's zero_division=0


def error_rates(distances: Any, same: Any, threshold: float) -> dict[str, Any]:
    """Every error figure of ``distance <= threshold`` (a finite threshold) on these pairs.

    ``accuracy``; ``balanced_accuracy`` (mean of TPR and TNR, over the classes present);
    ``fmr`` (false match rate: impostor pairs accepted / impostors, None without impostors);
    ``fnmr`` (false non-match rate: genuine pairs rejected / genuine, None without genuine);
    ``macro_f1`` (mean F1 of the "same" and "different" classes, an absent class scoring 0
    as sklearn's ``zero_division=0``); ``confusion_matrix`` ``[[same->same, same->different],
    [different->same, different->different]]`` (rows truth); the counts ``tp``, ``fn``,
    ``fp``, ``tn``, ``genuine``, ``impostors``, ``false_matches`` (= fp),
    ``false_non_matches`` (= fn) and ``no_verdict_pairs`` (+inf distances, all rejected);
    and ``threshold``."""
    d, s = _check_pairs(distances, same, both_classes=False)
    t = _check_threshold(threshold)
    pred = d <= t
    tp, fn = int((pred & s).sum()), int((~pred & s).sum())
    fp, tn = int((pred & ~s).sum()), int((~pred & ~s).sum())
    genuine, impostors = tp + fn, fp + tn
    recalls = [r for r in (_rate(tp, genuine), _rate(tn, impostors)) if r is not None]
    return {
        "accuracy": (tp + tn) / d.size,
        "balanced_accuracy": float(np.mean(recalls)),
        "fmr": _rate(fp, impostors),
        "fnmr": _rate(fn, genuine),
        "macro_f1": (_f1(tp, fp, fn) + _f1(tn, fn, fp)) / 2,
        "confusion_matrix": [[tp, fn], [fp, tn]],
        "tp": tp, "fn": fn, "fp": fp, "tn": tn,
        "genuine": genuine, "impostors": impostors,
        "false_matches": fp, "false_non_matches": fn,
        "no_verdict_pairs": int(np.isposinf(d).sum()),
        "threshold": t,
    }


def kfold_verification(
    distances: Any, same: Any, folds: int | Sequence[int] | np.ndarray = 10,
    *, method: str = "accuracy", far: float = DEFAULT_FAR,
) -> dict[str, Any]:
    """K-fold verification accuracy: for each fold, the threshold is chosen (``method``
    "accuracy", "youden" or "far", the last at false accept rate ``far``) on the other folds
    only and applied to that fold.

    ``folds`` is the number of contiguous folds (pairs in protocol order, as LFW's
    ``pairs.txt``) or a fold index per pair (``LFWPair.fold``). Returns ``mean``, ``std``
    (population std over folds, as insightface), ``accuracies`` and ``thresholds`` (one per
    fold, numpy arrays) and ``folds`` (the sorted fold ids).
    """
    d, s = _check_pairs(distances, same)
    _check_method(method, far)
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
        threshold = _choose_threshold(method, d[~test], s[~test], far)
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


# ----------------------------------------------------------------------------- bootstrap


def _check_columns(arrays: tuple[Any, ...]) -> list[np.ndarray]:
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    columns = [np.asarray(a) for a in arrays]
    for i, column in enumerate(columns):
        if column.ndim != 1:
            raise ValueError(f"array {i} must be 1-D (one value per row), got shape "
                             f"{column.shape}")
    lengths = {column.size for column in columns}
    if len(lengths) != 1:
        raise ValueError(f"arrays must have the same length, got {[c.size for c in columns]}")
    if not columns[0].size:
        raise ValueError("no rows to resample")
    return columns


def _row_draw(n: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Resample rows: ``rng.integers(0, n, size=n)``."""
    return lambda rng: rng.integers(0, n, size=n)


def _cluster_draw(clusters: Any, n: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Resample clusters: ``k = rng.integers(0, m, size=m)`` indexes the m sorted distinct
    ids; the rows of each drawn cluster follow in draw order (each cluster's rows in their
    original order), a cluster drawn twice coming twice."""
    ids = np.asarray(clusters).ravel()
    if ids.size != n:
        raise ValueError(f"clusters ({ids.size}) must have one id per row ({n})")
    codes = np.unique(ids, return_inverse=True)[1].ravel()
    rows_by_cluster = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes

    def draw(rng: np.random.Generator) -> np.ndarray:
        k = rng.integers(0, sizes.size, size=sizes.size)
        lengths = sizes[k]
        ends = np.cumsum(lengths)
        offsets = np.repeat(starts[k] - (ends - lengths), lengths) + np.arange(ends[-1])
        return rows_by_cluster[offsets]

    return draw


def bootstrap_ci(
    statistic: Callable[..., float], *arrays: Any, clusters: Any = None,
    n_boot: int = 1000, level: float = 0.95, seed: int = 0,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``statistic(*arrays)``.

    ``arrays`` are equal-length 1-D arrays (one row per pair, e.g. distances and same);
    ``statistic`` takes the resampled arrays, in the same order, and returns a float.
    Without ``clusters`` each resample draws rows with replacement. With ``clusters`` (one id
    per row, e.g. the person of a pair) it draws cluster ids with replacement and takes all
    rows of each drawn cluster, duplicates included: resampling people, not pairs, so pairs
    sharing a person stay together. Draws come from ``numpy.random.default_rng(seed)``, the
    result is deterministic. A resample whose statistic raises ``ValueError`` (e.g. one class
    only) is skipped and counted in ``failed``; more than half failing raises ValueError.

    Returns ``estimate`` (statistic on all rows), ``low``, ``high`` (the ``(1 - level) / 2``
    and ``(1 + level) / 2`` quantiles of the resampled statistics), ``level``, ``samples``
    (resamples drawn), ``failed`` and ``unit`` ("cluster" or "pair").
    """
    return bootstrap_cis({"value": statistic}, *arrays, clusters=clusters, n_boot=n_boot,
                         level=level, seed=seed)["value"]


def bootstrap_cis(
    statistics: dict[str, Callable[..., float]], *arrays: Any, clusters: Any = None,
    n_boot: int = 1000, level: float = 0.95, seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """:func:`bootstrap_ci` of several statistics of the same rows, each on the same
    resamples (drawn once): name -> what :func:`bootstrap_ci` returns for that statistic.
    Any statistic failing on more than half of the resamples raises ValueError."""
    columns = _check_columns(arrays)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if isinstance(level, bool) or not isinstance(level, Real) or not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    n = columns[0].size
    draw = _row_draw(n) if clusters is None else _cluster_draw(clusters, n)
    estimates = {name: float(fn(*columns)) for name, fn in statistics.items()}
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {name: [] for name in statistics}
    failed = dict.fromkeys(statistics, 0)
    for _ in range(int(n_boot)):
        rows = draw(rng)
        resampled = [column[rows] for column in columns]
        for name, fn in statistics.items():
            try:
                values[name].append(float(fn(*resampled)))
            except ValueError:
                failed[name] += 1
    alpha = (1.0 - level) / 2.0
    out = {}
    for name in statistics:
        if failed[name] > n_boot / 2:
            raise ValueError(f"the statistic failed (ValueError) on {failed[name]} of {n_boot} "
                             "resamples; too few resamples for an interval")
        low, high = np.quantile(values[name], [alpha, 1.0 - alpha])
        out[name] = {"estimate": estimates[name], "low": float(low), "high": float(high),
                     "level": float(level), "samples": int(n_boot), "failed": failed[name],
                     "unit": "pair" if clusters is None else "cluster"}
    return out


# ----------------------------------------------------------------------------- groups


def _group_rates(d: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    rates = error_rates(d, s, threshold)
    best_threshold = best_accuracy = None
    if rates["genuine"] and rates["impostors"] and np.isfinite(d).any():
        best_threshold = best_accuracy_threshold(d, s)
        best_accuracy = verification_accuracy(d, s, best_threshold)
    return {
        "pairs": int(d.size), "genuine": rates["genuine"], "impostor": rates["impostors"],
        "accuracy": rates["accuracy"], "fmr": rates["fmr"], "fnmr": rates["fnmr"],
        "best_threshold": best_threshold, "best_accuracy": best_accuracy,
    }


def _ratio(values: list[float | None]) -> tuple[float | None, str | None]:
    """Worst / best of the defined values, with a note when there is no finite ratio."""
    defined = [v for v in values if v is not None]
    if not defined:
        return None, "undefined in every group"
    worst, best = max(defined), min(defined)
    if worst == best:
        return 1.0, None
    if best == 0.0:
        return None, f"the best group's rate is 0 and the worst {worst:.6g}: infinite ratio"
    return worst / best, None


def group_error_rates(distances: Any, same: Any, groups: Any, threshold: float
                      ) -> dict[str, Any]:
    """Error rates per group of pairs (one group value per pair) at one operating threshold.

    ``groups``: group value -> ``pairs``, ``genuine``, ``impostor``, ``accuracy``, ``fmr``,
    ``fnmr`` (None where the group lacks impostors / genuine pairs, as ``error_rates``),
    ``best_threshold`` (``best_accuracy_threshold`` of the group's own pairs; None when the
    group lacks a class or every distance is +inf) and ``best_accuracy`` (accuracy there).

    ``ratios``: for ``fmr`` and ``fnmr``, max / min of the rate over the groups where it is
    defined: 1.0 when all are equal (0 included), None when no group defines it, and None
    when the best group's rate is 0 and the worst's is not (an infinite ratio, which JSON
    cannot hold). Each None ratio has its reason in ``notes`` (rate -> text)."""
    d, s = _check_pairs(distances, same, both_classes=False)
    g = _check_groups(groups, d.size)
    t = _check_threshold(threshold)
    per_group = {_plain(v): _group_rates(d[g == v], s[g == v], t) for v in np.unique(g)}
    ratios, notes = {}, {}
    for rate in ("fmr", "fnmr"):
        ratios[rate], note = _ratio([r[rate] for r in per_group.values()])
        if note is not None:
            notes[rate] = note
    return {"groups": per_group, "ratios": ratios, "notes": notes}


# ----------------------------------------------------------------------------- gender


def _check_gender(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t, p, known)``: labels and probabilities as float arrays and the known-label mask."""
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
    return t, p, known


def gender_report(
    y_true: Any, y_prob: Any, threshold: float = 0.5,
    class_names: tuple[str, str] = ("male", "female"),
) -> dict[str, Any]:
    """Gender classification report. ``y_true`` is 0/1 (index into ``class_names``; -1 or NaN
    = unknown, left out and counted in ``n_unknown``), ``y_prob`` the probability of class 1,
    predicted when ``>= threshold``. Returns ``accuracy``, ``balanced_accuracy``,
    ``macro_f1`` (mean F1 of both classes, an absent class scoring 0 as sklearn's
    ``f1_score(average="macro", labels=[0, 1], zero_division=0)``), ``per_class`` (name ->
    precision, recall, f1, support), ``confusion_matrix`` (rows true, columns predicted, in
    ``class_names`` order, a numpy array), ``roc_auc`` (None unless both classes are
    present), ``threshold``, ``n`` and ``n_unknown``."""
    t, p, known = _check_gender(y_true, y_prob)
    t_known = t[known].astype(np.int64)
    pred = (p[known] >= threshold).astype(np.int64)
    confusion = np.zeros((2, 2), np.int64)  # rows true, columns predicted
    np.add.at(confusion, (t_known, pred), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)
    # an empty denominator scores 0, as sklearn's zero_division=0
    precision = hits / np.maximum(predicted, 1)
    recall = hits / np.maximum(support, 1)
    summed = precision + recall
    f1 = 2 * precision * recall / np.where(summed > 0, summed, 1.0)
    both = np.unique(t_known).size == 2
    return {
        "accuracy": float(hits.sum() / max(t_known.size, 1)),
        "balanced_accuracy": float(np.mean(recall[support > 0])),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion,
        "roc_auc": _auc_of_ranks(-p[known], t_known == 1) if both else None,
        "threshold": float(threshold),
        "n": int(known.sum()),
        "n_unknown": int((~known).sum()),
    }


def gender_by_group(
    y_true: Any, y_prob: Any, groups: Any, threshold: float = 0.5,
    class_names: tuple[str, str] = ("male", "female"),
) -> dict[Any, dict[str, Any] | None]:
    """``gender_report`` per group (one group value per image): group value -> ``accuracy``,
    ``n`` (known labels) and ``per_class`` (name -> precision, recall, f1, support), or None
    for a group without a known label."""
    t, p, known = _check_gender(y_true, y_prob)
    g = _check_groups(groups, t.size)
    out: dict[Any, dict[str, Any] | None] = {}
    for value in np.unique(g):
        mask = g == value
        if not known[mask].any():
            out[_plain(value)] = None
            continue
        report = gender_report(t[mask], p[mask], threshold, class_names)
        out[_plain(value)] = {key: report[key] for key in ("accuracy", "n", "per_class")}
    return out


# ----------------------------------------------------------------------------- estimator


class ThresholdCalibrator:
    """Learns a verification distance threshold (sklearn estimator rule).

    ``__init__`` only stores ``method`` ("youden", "accuracy" or "far") and ``far`` (the
    false accept rate the "far" method aims at, 0 < far < 1, checked in ``fit``);
    ``fit(distances, same)`` sets ``threshold_``; ``predict(distances)`` returns "same"
    booleans and raises ``NotFittedError`` before ``fit``.
    """

    def __init__(self, method: str = "youden", far: float = DEFAULT_FAR):
        self.method = method
        self.far = far

    def fit(self, distances: Any, same: Any) -> ThresholdCalibrator:
        """Choose ``threshold_`` on these pairs; returns self."""
        self.threshold_ = _choose_threshold(self.method, distances, same, self.far)
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
        far = f", far={self.far!r}" if self.method == "far" else ""
        fitted = f", threshold_={self.threshold_:.6g}" if hasattr(self, "threshold_") else ""
        return f"ThresholdCalibrator(method={self.method!r}{far}{fitted})"
