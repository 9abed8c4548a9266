"""siamface.metrics: thresholds against brute force, k-fold protocol, gender report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from siamface.errors import SiamfaceError, UnknownNameError
from siamface.metrics import (
    NotFittedError,
    ThresholdCalibrator,
    best_accuracy_threshold,
    gender_report,
    kfold_verification,
    roc_auc,
    roc_curve,
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
