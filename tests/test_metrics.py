"""siamface.metrics: thresholds against brute force, k-fold protocol, gender report, error
rates, EER, DET, TAR@FAR, bootstrap intervals and per-group figures against sklearn or slow
reference loops."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from siamface.errors import SiamfaceError, UnknownNameError
from siamface.metrics import (
    NotFittedError,
    ThresholdCalibrator,
    best_accuracy_threshold,
    bootstrap_ci,
    bootstrap_cis,
    det_curve,
    eer,
    error_rates,
    far_threshold,
    gender_by_group,
    gender_report,
    group_error_rates,
    kfold_verification,
    roc_auc,
    roc_curve,
    tar_at_far,
    tar_at_far_rate,
    threshold_sweep,
    verification_accuracy,
    youden_threshold,
)


def _pairs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    distances = np.where(same, rng.normal(0.6, 0.2, n), rng.normal(1.2, 0.25, n))
    return distances, same


def _brute(distances, same, score):
    """Best score over every distance used as a threshold (d <= t)."""
    best = -np.inf
    for t in np.unique(distances):
        pred = distances <= t
        best = max(best, score(pred, same))
    return best


def _acc(pred, same):
    return np.mean(pred == same)


def _youden(pred, same):
    return pred[same].mean() - pred[~same].mean()


def test_thresholds_reach_brute_force_optimum():
    d, s = _pairs()
    t_acc = best_accuracy_threshold(d, s)
    assert verification_accuracy(d, s, t_acc) == pytest.approx(_brute(d, s, _acc))
    t_j = youden_threshold(d, s)
    assert _youden(d <= t_j, s) == pytest.approx(_brute(d, s, _youden))
    # the threshold sits in a gap, not on a sample
    assert not np.isin(t_acc, d) and not np.isin(t_j, d)


def test_threshold_direction_smaller_is_same():
    d = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 1.0])
    s = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    t = youden_threshold(d, s)
    assert 0.3 < t < 0.8 and t == pytest.approx(0.55)
    assert best_accuracy_threshold(d, s) == pytest.approx(0.55)
    assert roc_auc(d, s) == 1.0


def test_roc_curve_matches_sklearn():
    d, s = _pairs(200, 1)
    fpr, tpr, thr = roc_curve(d, s)
    assert roc_auc(d, s) == pytest.approx(roc_auc_score(s, -d))
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    k = len(thr) // 2
    assert tpr[k] == pytest.approx(np.mean(d[s] <= thr[k]))
    assert fpr[k] == pytest.approx(np.mean(d[~s] <= thr[k]))


def test_sweep_rates_are_exact():
    d, s = _pairs(50, 2)
    sweep = threshold_sweep(d, s)
    for t, tpr, fpr, acc in zip(*(sweep[k] for k in ("threshold", "tpr", "fpr", "accuracy"))):
        assert tpr == pytest.approx(np.mean(d[s] <= t))
        assert fpr == pytest.approx(np.mean(d[~s] <= t))
        assert acc == pytest.approx(np.mean((d <= t) == s))
    assert sweep["tpr"][0] == 0 and sweep["tpr"][-1] == 1


def test_kfold_threshold_chosen_on_other_folds_only():
    d, s = _pairs(600, 3)
    folds = np.repeat(np.arange(10), 60)
    result = kfold_verification(d, s, folds)
    assert set(result) >= {"mean", "std", "accuracies", "thresholds"}
    for k in range(10):
        train = folds != k
        expected_t = best_accuracy_threshold(d[train], s[train])
        assert result["thresholds"][k] == pytest.approx(expected_t)
        assert result["accuracies"][k] == pytest.approx(np.mean((d[~train] <= expected_t)
                                                                == s[~train]))
    assert result["mean"] == pytest.approx(np.mean(result["accuracies"]))
    assert result["std"] == pytest.approx(np.std(result["accuracies"]))
    # an integer k gives contiguous folds, as LFW's pairs.txt order
    assert kfold_verification(d, s, 10)["mean"] == pytest.approx(result["mean"])
    youden = kfold_verification(d, s, 10, method="youden")
    assert youden["thresholds"][0] == pytest.approx(youden_threshold(d[60:], s[60:]))


def test_kfold_leaks_nothing_from_the_test_fold():
    # fold 0 is labelled backwards: a threshold tuned on it would score well, one chosen on
    # the other folds must score badly there.
    d = np.concatenate([np.linspace(0, 1, 20), np.linspace(0, 1, 80)])
    s = np.concatenate([np.arange(20) >= 10, np.arange(80) % 40 < 20])
    folds = np.concatenate([np.zeros(20, int), np.repeat([1, 2], 40)])
    result = kfold_verification(d, s, folds)
    assert result["accuracies"][0] <= 0.5


def test_metric_input_errors():
    with pytest.raises(ValueError, match="both same-person and different-person"):
        youden_threshold([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="same length"):
        roc_auc([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="NaN"):
        best_accuracy_threshold([0.1, np.nan], [True, False])
    with pytest.raises(UnknownNameError, match="valid: youden, accuracy"):
        kfold_verification(*_pairs(), 10, method="eer")


def test_gender_report_matches_sklearn():
    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.25).astype(float)
    prob = np.clip(y * 0.4 + rng.random(300) * 0.6, 0, 1)
    y_with_unknown = np.concatenate([y, [-1, np.nan]])
    prob_with_unknown = np.concatenate([prob, [0.9, 0.1]])
    report = gender_report(y_with_unknown, prob_with_unknown)
    pred = prob >= 0.5
    assert report["n"] == 300 and report["n_unknown"] == 2
    assert report["accuracy"] == pytest.approx(np.mean(pred == y))
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    female = report["per_class"]["female"]
    tp = np.sum(pred & (y == 1))
    assert female["precision"] == pytest.approx(tp / pred.sum())
    assert female["recall"] == pytest.approx(tp / (y == 1).sum())
    assert female["support"] == int((y == 1).sum())
    cm = report["confusion_matrix"]
    assert cm.shape == (2, 2) and cm.sum() == 300 and cm[1, 1] == tp
    assert report["roc_auc"] == pytest.approx(roc_auc_score(y, prob))
    custom = gender_report([0, 1], [0.2, 0.6], threshold=0.7, class_names=("m", "f"))
    assert set(custom["per_class"]) == {"m", "f"} and custom["accuracy"] == 0.5
    with pytest.raises(ValueError, match="0, 1 or -1/NaN"):
        gender_report([0, 2], [0.1, 0.2])


def test_threshold_calibrator_estimator_rule():
    calibrator = ThresholdCalibrator("accuracy")
    assert calibrator.method == "accuracy" and not hasattr(calibrator, "threshold_")
    with pytest.raises(NotFittedError, match="call fit"):
        calibrator.predict([0.3])
    assert isinstance(NotFittedError("x"), SiamfaceError)
    d, s = _pairs()
    assert calibrator.fit(d, s) is calibrator
    assert calibrator.threshold_ == pytest.approx(best_accuracy_threshold(d, s))
    assert np.array_equal(calibrator.predict(d), d <= calibrator.threshold_)
    assert calibrator.score(d, s) == pytest.approx(_brute(d, s, _acc))
    assert ThresholdCalibrator().fit(d, s).threshold_ == pytest.approx(youden_threshold(d, s))
    with pytest.raises(UnknownNameError, match="valid: youden, accuracy"):
        ThresholdCalibrator("median").fit(d, s)


# ----------------------------------------------------------------------------- helpers


def _tied_pairs(n: int = 400, seed: int = 0, n_inf: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with many tied distances (one decimal) and ``n_inf`` pairs without a verdict."""
    d, s = _pairs(n, seed)
    d = np.round(d, 1)
    if n_inf:
        d[np.random.default_rng(seed + 100).choice(n, n_inf, replace=False)] = np.inf
    return d, s


def _candidates(d):
    """Candidate thresholds by hand: below the smallest finite distance, every midpoint
    between consecutive distinct finite distances, the largest."""
    values = sorted({float(x) for x in d if np.isfinite(x)})
    mids = [(a + b) / 2.0 for a, b in itertools.pairwise(values)]
    return [float(np.nextafter(values[0], -np.inf)), *mids, values[-1]]


def _counts(d, s, t):
    """(tp, fn, fp, tn) at one threshold, counted directly."""
    d, s = np.asarray(d), np.asarray(s, dtype=bool)
    accepted = d <= t
    return (int((accepted & s).sum()), int((~accepted & s).sum()),
            int((accepted & ~s).sum()), int((~accepted & ~s).sum()))


def _assert_plain(obj):
    """Only python scalars, lists, dicts and None (no numpy), and valid strict JSON."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert type(key) in (str, int, float, bool), type(key)
            _assert_plain(value)
    elif isinstance(obj, list):
        for value in obj:
            _assert_plain(value)
    else:
        assert obj is None or type(obj) in (bool, int, float, str), type(obj)
    json.dumps(obj, allow_nan=False)


# ----------------------------------------------------------------------------- error rates


def test_error_rates_match_sklearn_on_ties():
    d, s = _tied_pairs(500, 5, n_inf=7)
    t = best_accuracy_threshold(d, s)
    rates = error_rates(d, s, t)
    _assert_plain(rates)
    pred = d <= t
    assert rates["confusion_matrix"] == skm.confusion_matrix(s, pred, labels=[True, False]
                                                             ).tolist()
    assert rates["macro_f1"] == pytest.approx(
        skm.f1_score(s, pred, labels=[True, False], average="macro"))
    assert rates["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(s, pred))
    assert rates["accuracy"] == pytest.approx(skm.accuracy_score(s, pred))
    assert rates["accuracy"] == verification_accuracy(d, s, t)
    tp, fn, fp, tn = _counts(d, s, t)
    assert (rates["tp"], rates["fn"], rates["fp"], rates["tn"]) == (tp, fn, fp, tn)
    assert rates["false_matches"] == fp and rates["false_non_matches"] == fn
    assert rates["genuine"] == s.sum() and rates["impostors"] == (~s).sum()
    assert rates["fmr"] == pytest.approx(fp / (fp + tn))
    assert rates["fnmr"] == pytest.approx(fn / (tp + fn))
    assert rates["no_verdict_pairs"] == 7 and rates["threshold"] == t


def test_error_rates_hand_checked():
    d = [0.1, 0.4, np.inf, 0.3, 0.6, np.inf]
    s = [True, True, True, False, False, False]
    rates = error_rates(d, s, 0.35)
    assert rates["confusion_matrix"] == [[1, 2], [1, 2]]
    assert rates["accuracy"] == 0.5 and rates["balanced_accuracy"] == 0.5
    assert rates["fmr"] == pytest.approx(1 / 3) and rates["fnmr"] == pytest.approx(2 / 3)
    assert rates["macro_f1"] == pytest.approx((2 / 5 + 4 / 7) / 2)
    assert rates["no_verdict_pairs"] == 2
    # one class only: the other class's rate is undefined, F1 of the absent class is 0
    genuine_only = error_rates([0.1, 0.2, 0.9], [True, True, True], 0.5)
    _assert_plain(genuine_only)
    assert genuine_only["fmr"] is None and genuine_only["impostors"] == 0
    assert genuine_only["fnmr"] == pytest.approx(1 / 3)
    assert genuine_only["balanced_accuracy"] == pytest.approx(2 / 3)
    assert genuine_only["macro_f1"] == pytest.approx(skm.f1_score(
        [1, 1, 1], [1, 1, 0], labels=[1, 0], average="macro", zero_division=0))
    assert error_rates([0.1], [False], 0.5)["fnmr"] is None


def test_error_rates_input_errors():
    with pytest.raises(ValueError, match="same length"):
        error_rates([0.1, 0.2], [True], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        error_rates([0.1, np.nan], [True, False], 0.5)
    with pytest.raises(ValueError, match="-inf"):
        error_rates([0.1, -np.inf], [True, False], 0.5)
    with pytest.raises(ValueError, match="no pairs"):
        error_rates([], [], 0.5)
    for bad in (np.nan, np.inf, "0.5", None):
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            error_rates([0.1, 0.2], [True, False], bad)


# ----------------------------------------------------------------------------- +inf distances


def test_inf_distances_sweep_roc_and_thresholds():
    d, s = _tied_pairs(300, 6, n_inf=12)
    sweep = threshold_sweep(d, s)
    assert np.isfinite(sweep["threshold"]).all()
    assert np.array_equal(sweep["threshold"], _candidates(d))
    for t, tpr, fpr, acc in zip(*(sweep[k] for k in ("threshold", "tpr", "fpr", "accuracy"))):
        tp, fn, fp, tn = _counts(d, s, t)
        assert tpr == pytest.approx(tp / (tp + fn)) and fpr == pytest.approx(fp / (fp + tn))
        assert acc == pytest.approx((tp + tn) / d.size)
    # the +inf pairs are accepted at no threshold of the sweep
    assert sweep["tpr"][-1] == pytest.approx(np.isfinite(d[s]).mean())
    for chooser in (youden_threshold, best_accuracy_threshold):
        assert np.isfinite(chooser(d, s))
    # ranking: +inf ranks as the farthest, as any finite distance above every other would
    stand_in = np.where(np.isinf(d), 100.0, d)
    assert roc_auc(d, s) == pytest.approx(roc_auc_score(s, -stand_in))
    fpr, tpr, thr = roc_curve(d, s)
    ref_fpr, ref_tpr, ref_thr = skm.roc_curve(s, -stand_in, drop_intermediate=False)
    assert np.array_equal(fpr, ref_fpr) and np.array_equal(tpr, ref_tpr)
    assert thr[-1] == np.inf and np.array_equal(thr[:-1], -ref_thr[:-1])
    assert fpr[-1] == tpr[-1] == 1.0
    with pytest.raises(ValueError, match=r"every distance is \+inf"):
        threshold_sweep([np.inf, np.inf], [True, False])


def test_roc_auc_with_ties_matches_sklearn():
    d, s = _tied_pairs(400, 7)
    assert roc_auc(d, s) == pytest.approx(roc_auc_score(s, -d))
    with pytest.raises(ValueError, match="both same-person and different-person"):
        roc_auc([0.1, 0.2], [False, False])


# ----------------------------------------------------------------------------- EER and DET


def _slow_eer(d, s):
    """Smallest candidate threshold minimising |FMR - FNMR| (exact fractions)."""
    best = None
    for t in _candidates(d):
        tp, fn, fp, tn = _counts(d, s, t)
        fmr, fnmr = Fraction(fp, fp + tn), Fraction(fn, tp + fn)
        if best is None or abs(fmr - fnmr) < best[0]:
            best = (abs(fmr - fnmr), t, (fmr + fnmr) / 2)
    return best[1], float(best[2])


@pytest.mark.parametrize("seed, n_inf", [(8, 0), (9, 5), (10, 30)])
def test_eer_matches_brute_force(seed, n_inf):
    d, s = _tied_pairs(300, seed, n_inf)
    result = eer(d, s)
    _assert_plain(result)
    threshold, value = _slow_eer(d, s)
    assert result["threshold"] == threshold
    assert result["eer"] == pytest.approx(value)
    assert result["fmr"] == pytest.approx(np.mean(d[~s] <= threshold))
    assert result["fnmr"] == pytest.approx(np.mean(d[s] > threshold))


def test_eer_hand_checked():
    assert eer([0.1, 0.2, 0.3, 0.8, 0.9, 1.0], [1, 1, 1, 0, 0, 0]) == pytest.approx(
        {"eer": 0.0, "threshold": 0.55, "fmr": 0.0, "fnmr": 0.0})
    # genuine 0.1, 0.5; impostor 0.3, 0.7: the rates meet at 1/2 between 0.3 and 0.5
    assert eer([0.1, 0.5, 0.3, 0.7], [1, 1, 0, 0]) == pytest.approx(
        {"eer": 0.5, "threshold": 0.4, "fmr": 0.5, "fnmr": 0.5})
    with pytest.raises(ValueError, match="both same-person and different-person"):
        eer([0.1, 0.2], [True, True])


@pytest.mark.parametrize("n_inf", [0, 9])
def test_det_curve_matches_sklearn(n_inf):
    d, s = _tied_pairs(400, 11, n_inf)
    fmr, fnmr, thr = det_curve(d, s)
    stand_in = np.where(np.isinf(d), 100.0, d)
    ref_fmr, ref_fnmr, ref_thr = skm.det_curve(s, -stand_in)
    assert np.array_equal(fmr, ref_fmr) and np.array_equal(fnmr, ref_fnmr)
    assert np.array_equal(np.where(thr == np.inf, 100.0, thr), -ref_thr)
    assert (thr == np.inf).sum() == (1 if n_inf else 0)
    for f, fn, t in zip(fmr, fnmr, thr):  # the rates of "distance <= threshold"
        assert f == pytest.approx(np.mean(d[~s] <= t))
        assert fn == pytest.approx(np.mean(d[s] > t))
    with pytest.raises(ValueError, match="same length"):
        det_curve([0.1], [True, False])


# ----------------------------------------------------------------------------- TAR@FAR


def _slow_tar_at_far(d, s, far):
    """Largest candidate threshold with FMR <= far, by an explicit loop."""
    chosen = None
    for t in _candidates(d):
        tp, fn, fp, tn = _counts(d, s, t)
        if fp / (fp + tn) <= far:
            chosen = (t, tp / (tp + fn), fp, fp + tn)
    return chosen


@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.1, 0.5])
def test_tar_at_far_matches_slow_loop(far):
    d, s = _tied_pairs(2000, 12, n_inf=20)
    d = np.where(np.isfinite(d), d + np.random.default_rng(1).normal(0, 1e-3, d.size), d)
    result = tar_at_far(d, s, far)
    _assert_plain(result)
    t, tar, false_accepts, impostors = _slow_tar_at_far(d, s, far)
    assert result["threshold"] == t and result["tar"] == pytest.approx(tar)
    assert result["false_accepts"] == false_accepts and result["impostors"] == impostors
    assert result["far_actual"] == pytest.approx(false_accepts / impostors)
    assert result["far_actual"] <= far
    assert result["far"] == far
    assert result["few_false_accepts"] == (false_accepts < 10)
    assert far_threshold(d, s, far) == t


def test_tar_at_far_hand_checked_and_errors():
    # impostors at 0.2, 0.5, 0.6, 0.9; genuine at 0.1, 0.3, 0.4: FAR 0.25 allows one impostor
    d = [0.2, 0.5, 0.6, 0.9, 0.1, 0.3, 0.4]
    s = [0, 0, 0, 0, 1, 1, 1]
    result = tar_at_far(d, s, 0.25)
    assert result == pytest.approx({"tar": 1.0, "threshold": 0.45, "far": 0.25,
                                    "far_actual": 0.25, "false_accepts": 1, "impostors": 4,
                                    "few_false_accepts": True})
    # below one impostor in four: nothing between the first impostor and the next sample
    assert tar_at_far(d, s, 0.2)["threshold"] == pytest.approx(0.15)
    assert tar_at_far(d, s, 0.2)["tar"] == pytest.approx(1 / 3)
    for bad in (0, 1, -0.1, 1.5, np.nan, "0.1", True):
        with pytest.raises(ValueError, match="far must be a false accept rate"):
            tar_at_far(d, s, bad)
    with pytest.raises(ValueError, match="both same-person and different-person"):
        tar_at_far([0.1, 0.2], [False, False], 0.1)


def test_far_calibrator_and_kfold():
    d, s = _pairs(800, 13)
    calibrator = ThresholdCalibrator(method="far", far=0.05)
    assert calibrator.far == 0.05 and not hasattr(calibrator, "threshold_")
    assert calibrator.fit(d, s).threshold_ == far_threshold(d, s, 0.05)
    assert np.mean(calibrator.predict(d[~s])) <= 0.05
    assert "far=0.05" in repr(calibrator)
    assert ThresholdCalibrator("far").far == 1e-3
    wrong = ThresholdCalibrator(method="far", far=2.0)  # stored as given, checked in fit
    assert wrong.far == 2.0
    with pytest.raises(ValueError, match="far must be a false accept rate strictly between"):
        wrong.fit(d, s)
    ThresholdCalibrator(method="youden", far=2.0).fit(d, s)  # far unused by youden
    folds = np.arange(d.size) % 4
    result = kfold_verification(d, s, folds, method="far", far=0.05)
    for k in range(4):
        train = folds != k
        assert result["thresholds"][k] == far_threshold(d[train], s[train], 0.05)
    with pytest.raises(ValueError, match="far must be"):
        kfold_verification(d, s, folds, method="far", far=0)


# ----------------------------------------------------------------------------- k-fold


def _slow_kfold(d, s, fold_of):
    """For each fold: the smallest candidate threshold with the most correct training
    pairs (explicit loop), applied to the fold."""
    accuracies, thresholds = [], []
    for fold in sorted(set(fold_of.tolist())):
        train = [i for i in range(d.size) if fold_of[i] != fold]
        test = [i for i in range(d.size) if fold_of[i] == fold]
        best_t, best_correct = None, -1
        for t in _candidates(d[train]):
            correct = sum((d[i] <= t) == s[i] for i in train)
            if correct > best_correct:
                best_t, best_correct = t, correct
        thresholds.append(best_t)
        accuracies.append(sum((d[i] <= best_t) == s[i] for i in test) / len(test))
    return np.array(accuracies), np.array(thresholds)


def test_kfold_matches_slow_reference_loop():
    d, s = _tied_pairs(300, 14, n_inf=6)
    fold_of = np.random.default_rng(14).integers(0, 5, d.size)
    result = kfold_verification(d, s, fold_of)
    accuracies, thresholds = _slow_kfold(d, s, fold_of)
    assert np.array_equal(result["thresholds"], thresholds)
    assert result["accuracies"] == pytest.approx(accuracies)
    assert result["mean"] == pytest.approx(accuracies.mean())
    assert result["std"] == pytest.approx(accuracies.std())
    assert np.array_equal(result["folds"], np.arange(5))
    contiguous = kfold_verification(d, s, 6)
    accuracies, thresholds = _slow_kfold(d, s, np.repeat(np.arange(6), 50))
    assert np.array_equal(contiguous["thresholds"], thresholds)
    assert contiguous["accuracies"] == pytest.approx(accuracies)


# ----------------------------------------------------------------------------- bootstrap


def _accuracy_at(threshold):
    return lambda d, s: float(np.mean((d <= threshold) == s))


def _slow_bootstrap(statistic, d, s, clusters=None, n_boot=200, level=0.95, seed=0):
    """The documented draws, one resample at a time, rows gathered by hand."""
    rng = np.random.default_rng(seed)
    values, failed = [], 0
    ids = None if clusters is None else sorted(set(np.asarray(clusters).tolist()))
    for _ in range(n_boot):
        if ids is None:
            rows = rng.integers(0, d.size, size=d.size).tolist()
        else:
            rows = []
            for k in rng.integers(0, len(ids), size=len(ids)):
                rows.extend(i for i in range(d.size) if clusters[i] == ids[k])
        try:
            values.append(statistic(np.array([d[i] for i in rows]),
                                    np.array([s[i] for i in rows])))
        except ValueError:
            failed += 1
    alpha = (1 - level) / 2
    return (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)), failed)


@pytest.mark.parametrize("use_clusters", [False, True])
def test_bootstrap_matches_slow_loop(use_clusters):
    d, s = _tied_pairs(300, 15)
    clusters = np.random.default_rng(15).integers(0, 40, d.size) * 7 if use_clusters else None
    statistic = _accuracy_at(0.9)
    result = bootstrap_ci(statistic, d, s, clusters=clusters, n_boot=200, level=0.9, seed=3)
    _assert_plain(result)
    low, high, failed = _slow_bootstrap(statistic, d, s, clusters, 200, 0.9, 3)
    assert result["low"] == pytest.approx(low) and result["high"] == pytest.approx(high)
    assert result["estimate"] == pytest.approx(statistic(d, s)) and failed == 0
    assert result["unit"] == ("cluster" if use_clusters else "pair")
    assert (result["samples"], result["failed"], result["level"]) == (200, 0, 0.9)
    again = bootstrap_ci(statistic, d, s, clusters=clusters, n_boot=200, level=0.9, seed=3)
    assert again == result
    other_seed = bootstrap_ci(statistic, d, s, clusters=clusters, n_boot=200, level=0.9, seed=4)
    assert other_seed != result


def test_bootstrap_cluster_mode_keeps_clusters_whole():
    sizes = {10: 1, 20: 2, 30: 5, 40: 3, 50: 4}
    clusters = np.array([c for c, n in sizes.items() for _ in range(n)])
    rng = np.random.default_rng(16)
    order = rng.permutation(clusters.size)  # rows of one cluster need not be adjacent
    clusters = clusters[order]
    row = np.arange(clusters.size)
    seen = []

    def statistic(row_ids, cluster_ids):
        assert np.array_equal(clusters[row_ids], cluster_ids)  # the rows travel together
        for c in np.unique(cluster_ids):
            taken = row_ids[cluster_ids == c]
            copies = taken.size // sizes[c]
            assert taken.size % sizes[c] == 0
            assert np.array_equal(np.sort(taken), np.repeat(np.flatnonzero(clusters == c),
                                                            copies))
        seen.append(row_ids.size)
        return float(row_ids.size)

    result = bootstrap_ci(statistic, row, clusters, clusters=clusters, n_boot=100)
    assert len(set(seen)) > 1  # the resample size follows the clusters drawn
    assert result["estimate"] == clusters.size


def test_bootstrap_cis_equals_one_interval_at_a_time():
    d, s = _tied_pairs(300, 21)
    people = np.arange(d.size) // 3
    statistics = {"accuracy": lambda dd, ss: verification_accuracy(dd, ss, 0.5),
                  "tar": lambda dd, ss: tar_at_far_rate(dd, ss, 1e-2)}
    together = bootstrap_cis(statistics, d, s, clusters=people, n_boot=200, seed=3)
    for name, fn in statistics.items():
        assert together[name] == bootstrap_ci(fn, d, s, clusters=people, n_boot=200, seed=3)

    def fails_unless_unchanged(dd, ss):
        if not np.array_equal(dd, d):  # every resample but one that is the data itself
            raise ValueError("resampled")
        return 0.0

    with pytest.raises(ValueError, match="failed"):
        bootstrap_cis({"ok": statistics["accuracy"], "bad": fails_unless_unchanged},
                      d, s, n_boot=200)


def test_bootstrap_interval_sanity():
    small = _pairs(300, 17)
    large = _pairs(4800, 17)
    statistic = _accuracy_at(0.9)
    narrow = bootstrap_ci(statistic, *large)
    wide = bootstrap_ci(statistic, *small)
    for result in (narrow, wide):
        assert result["low"] <= result["estimate"] <= result["high"]
    assert narrow["high"] - narrow["low"] < (wide["high"] - wide["low"]) / 2
    assert bootstrap_ci(statistic, *small, level=0.5)["high"] - \
        bootstrap_ci(statistic, *small, level=0.5)["low"] < wide["high"] - wide["low"]


def test_bootstrap_failed_resamples_are_counted():
    # one genuine pair in four: about a third of the resamples draw no genuine pair
    d, s = np.array([0.1, 0.5, 0.6, 0.9]), np.array([True, False, False, False])
    result = bootstrap_ci(roc_auc, d, s, n_boot=150)
    _, _, failed = _slow_bootstrap(roc_auc, d, s, n_boot=150)
    assert result["failed"] == failed and 20 < failed < 80
    assert result["estimate"] == 1.0

    def failing_every(period):
        calls = []

        def statistic(x):  # the first call (the estimate) succeeds
            calls.append(x.size)
            if len(calls) > 1 and (len(calls) - 1) % period == 0:
                raise ValueError("one class only")
            return float(x.mean())

        return statistic

    half = bootstrap_ci(failing_every(2), np.arange(100.0), n_boot=100)
    assert half["failed"] == 50  # exactly half may fail
    with pytest.raises(ValueError, match="failed .* on 100 of 100 resamples"):
        bootstrap_ci(failing_every(1), np.arange(100.0), n_boot=100,
                     clusters=np.arange(100) % 3)


def test_bootstrap_input_errors():
    statistic = _accuracy_at(0.5)
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(statistic, [0.1, 0.2], [True])
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_ci(statistic, np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="at least one array"):
        bootstrap_ci(statistic)
    with pytest.raises(ValueError, match="no rows"):
        bootstrap_ci(statistic, [], [])
    with pytest.raises(ValueError, match="one id per row"):
        bootstrap_ci(statistic, [0.1, 0.2], [True, False], clusters=[1])
    for level in (0, 1, 1.5):
        with pytest.raises(ValueError, match="level must be strictly between 0 and 1"):
            bootstrap_ci(statistic, [0.1, 0.2], [True, False], level=level)
    for n_boot in (0, -1, 2.5):
        with pytest.raises(ValueError, match="n_boot must be a positive integer"):
            bootstrap_ci(statistic, [0.1, 0.2], [True, False], n_boot=n_boot)


# ----------------------------------------------------------------------------- gender


def test_gender_report_macro_f1_matches_sklearn():
    rng = np.random.default_rng(19)
    y = (rng.random(300) < 0.3).astype(int)
    prob = np.clip(y * 0.35 + rng.random(300) * 0.65, 0, 1)
    report = gender_report(y, prob)
    pred = (prob >= 0.5).astype(int)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro",
                                                            labels=[0, 1]))
    assert report["per_class"]["male"]["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label=0))
    one_class = gender_report([0, 0, 0], [0.1, 0.7, 0.2])
    assert one_class["macro_f1"] == pytest.approx(skm.f1_score(
        [0, 0, 0], [0, 1, 0], average="macro", labels=[0, 1], zero_division=0))
    assert one_class["roc_auc"] is None


def test_gender_by_group_reuses_gender_report():
    rng = np.random.default_rng(20)
    y = (rng.random(200) < 0.5).astype(float)
    prob = np.clip(y * 0.4 + rng.random(200) * 0.6, 0, 1)
    groups = np.array(["a", "b", "c", "d"])[rng.integers(0, 3, 200)]
    y[groups == "c"] = np.where(rng.random((groups == "c").sum()) < 0.5, -1, y[groups == "c"])
    groups[:3], y[:3] = "d", [-1, np.nan, -1]  # group d: no known label
    result = gender_by_group(y, prob, groups, threshold=0.6, class_names=("m", "f"))
    _assert_plain(result)
    assert set(result) == {"a", "b", "c", "d"} and result["d"] is None
    for g in "abc":
        mask = groups == g
        expected = gender_report(y[mask], prob[mask], 0.6, ("m", "f"))
        assert result[g] == {"accuracy": expected["accuracy"], "n": expected["n"],
                             "per_class": expected["per_class"]}
        known = mask & (y >= 0)
        assert result[g]["accuracy"] == pytest.approx(
            skm.accuracy_score(y[known], prob[known] >= 0.6))
    by_int = gender_by_group([0, 1, 1, 0], [0.2, 0.8, 0.3, 0.1], np.array([1, 1, 2, 2]))
    assert set(by_int) == {1, 2} and all(type(k) is int for k in by_int)
    assert by_int[2]["per_class"]["female"]["recall"] == 0.0
    with pytest.raises(ValueError, match="one value per pair"):
        gender_by_group([0, 1], [0.2, 0.8], ["a"])
    with pytest.raises(ValueError, match="same length"):
        gender_by_group([0, 1], [0.2], ["a", "b"])
    with pytest.raises(ValueError, match="no known labels"):
        gender_by_group([-1, np.nan], [0.2, 0.8], ["a", "b"])


# ----------------------------------------------------------------------------- groups


def test_group_error_rates_per_group_and_ratios():
    d, s = _tied_pairs(600, 21, n_inf=6)
    groups = np.random.default_rng(21).choice(["x", "y", "z"], d.size)
    t = best_accuracy_threshold(d, s)
    result = group_error_rates(d, s, groups, t)
    _assert_plain(result)
    assert set(result["groups"]) == {"x", "y", "z"}
    for g, row in result["groups"].items():
        mask = groups == g
        tp, fn, fp, tn = _counts(d[mask], s[mask], t)
        assert (row["pairs"], row["genuine"], row["impostor"]) == (mask.sum(), tp + fn, fp + tn)
        assert row["accuracy"] == pytest.approx((tp + tn) / mask.sum())
        assert row["fmr"] == pytest.approx(fp / (fp + tn))
        assert row["fnmr"] == pytest.approx(fn / (tp + fn))
        assert row["best_threshold"] == best_accuracy_threshold(d[mask], s[mask])
        assert row["best_accuracy"] == pytest.approx(
            verification_accuracy(d[mask], s[mask], row["best_threshold"]))
    fmrs = [row["fmr"] for row in result["groups"].values()]
    fnmrs = [row["fnmr"] for row in result["groups"].values()]
    assert result["ratios"]["fmr"] == pytest.approx(max(fmrs) / min(fmrs))
    assert result["ratios"]["fnmr"] == pytest.approx(max(fnmrs) / min(fnmrs))
    assert result["notes"] == {}


def test_group_error_rates_hand_checked_edge_cases():
    d = [0.1, 0.6, 0.3, 0.8, 0.2, 0.4, 0.9, 0.7]
    s = [1, 1, 0, 0, 1, 1, 1, 1]
    groups = [1, 1, 1, 1, 2, 2, 3, 3]  # group 1 mixed; groups 2 and 3 genuine only
    result = group_error_rates(d, s, groups, 0.5)
    _assert_plain(result)
    g1, g2, g3 = (result["groups"][k] for k in (1, 2, 3))
    assert (g1["fmr"], g1["fnmr"], g1["accuracy"]) == (0.5, 0.5, 0.5)
    assert g1["best_threshold"] == pytest.approx(0.2) and g1["best_accuracy"] == 0.75
    assert g2["fmr"] is None and g2["fnmr"] == 0.0 and g2["best_threshold"] is None
    assert g3["fnmr"] == 1.0 and g3["best_accuracy"] is None
    # fmr: defined in group 1 only -> 1.0; fnmr: 0 in group 2, 1 in group 3 -> infinite
    assert result["ratios"] == {"fmr": 1.0, "fnmr": None}
    assert set(result["notes"]) == {"fnmr"} and "infinite" in result["notes"]["fnmr"]
    no_impostors = group_error_rates([0.1, 0.2], [1, 1], ["a", "b"], 0.5)
    assert no_impostors["ratios"] == {"fmr": None, "fnmr": 1.0}
    assert "undefined" in no_impostors["notes"]["fmr"]
    with pytest.raises(ValueError, match="one value per pair"):
        group_error_rates([0.1, 0.2], [1, 0], ["a"], 0.5)
    with pytest.raises(ValueError, match="groups contain NaN"):
        group_error_rates([0.1, 0.2], [1, 0], [1.0, np.nan], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        group_error_rates([0.1, np.nan], [1, 0], ["a", "b"], 0.5)


def test_tar_at_far_rate_equals_tar_at_far():
    from siamface.metrics import tar_at_far_rate

    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(4, 400))
        d = np.round(rng.random(n), int(rng.integers(1, 4)))  # many ties
        if trial % 3 == 0:
            d[rng.random(n) < 0.1] = np.inf  # pairs without a verdict
        s = rng.random(n) < 0.5
        s[0], s[1] = True, False
        if not np.isfinite(d).any():
            continue
        for far in (1e-3, 1e-2, 0.1, 0.25, 0.5, 0.99):
            assert tar_at_far_rate(d, s, far) == tar_at_far(d, s, far)["tar"], (trial, far)
