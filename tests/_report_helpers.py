"""A real Evaluation for the report tests: the shipped default model on the four example
photos (kofi_annan_1/2 one person, serena_williams_1 and astronaut two others), every pair
scored, the metrics assembled with siamface.metrics where it has the function and in this
helper where it has not yet (tiny set: one genuine pair among six)."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

import siamface.metrics as sm
import siamface.service
from siamface import examples
from siamface.evaluation.result import Evaluation, SamplePair

HOSTILE = "<script>alert(1)</script>"
PERSON = {"astronaut": "Eileen Collins", "kofi_annan_1": "Kofi Annan",
          "kofi_annan_2": "Kofi Annan", "serena_williams_1": "Serena Williams"}
FEMALE = {"Eileen Collins": 1, "Kofi Annan": 0, "Serena Williams": 1}
KINDS = ["none", "blur", "none", "blur", "jpeg & <q>", "none"]  # one per pair


@functools.lru_cache(maxsize=1)
def example_faces():
    """(service, names, faces) of the example photos, computed once per test process."""
    svc = siamface.service.load()
    names = examples.names()
    faces = svc.faces([examples.path(n) for n in names])
    assert all(f.has_face for f in faces)
    return svc, names, faces


def _rates(d: np.ndarray, s: np.ndarray, t: float) -> dict[str, Any]:
    pred = d <= t
    n_gen, n_imp = int(s.sum()), int((~s).sum())
    return {
        "accuracy": float(np.mean(pred == s)) if d.size else None,
        "fmr": float(np.mean(pred[~s])) if n_imp else None,
        "fnmr": float(np.mean(~pred[s])) if n_gen else None,
    }


def _bootstrap_ci(d: np.ndarray, s: np.ndarray, t: float, n: int = 200) -> list[float]:
    rng = np.random.default_rng(0)
    accs = []
    for _ in range(n):
        idx = rng.integers(0, d.size, d.size)
        accs.append(float(np.mean((d[idx] <= t) == s[idx])))
    return [float(np.quantile(accs, 0.025)), float(np.quantile(accs, 0.975))]


def _eer(d: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    sweep = sm.threshold_sweep(d, s)
    fnr = 1.0 - sweep["tpr"]
    k = int(np.argmin(np.abs(sweep["fpr"] - fnr)))
    return float((sweep["fpr"][k] + fnr[k]) / 2), float(sweep["threshold"][k])


def _tar_at_far(d: np.ndarray, s: np.ndarray, far: float) -> dict[str, Any]:
    sweep = sm.threshold_sweep(d, s)
    ok = np.flatnonzero(sweep["fpr"] <= far)
    k = int(ok[-1])
    impostors = int((~s).sum())
    false_accepts = round(float(sweep["fpr"][k]) * impostors)
    tar = float(sweep["tpr"][k])
    return {"tar": tar, "ci": [tar, tar], "threshold": float(sweep["threshold"][k]),
            "false_accepts": false_accepts, "impostors": impostors,
            "few_false_accepts": far * impostors < 10}


def _kfold(d: np.ndarray, s: np.ndarray, t: float) -> dict[str, Any]:
    try:
        k = sm.kfold_verification(d, s, folds=2)
        return {"folds": k["folds"].tolist(), "mean": k["mean"], "std": k["std"],
                "accuracies": k["accuracies"].tolist(), "thresholds": k["thresholds"].tolist()}
    except ValueError:  # a training fold without a genuine pair: fixed threshold per fold
        halves = np.array_split(np.arange(d.size), 2)
        accs = [float(np.mean((d[h] <= t) == s[h])) for h in halves]
        return {"folds": [0, 1], "mean": float(np.mean(accs)), "std": float(np.std(accs)),
                "accuracies": accs, "thresholds": [t, t]}


def build_evaluation(*, gender: bool = True, distortions: bool = False, groups: bool = False,
                     no_verdict: bool = False, description: str = "the example photos"
                     ) -> Evaluation:
    """``no_verdict``: treat the astronaut as an image without a face (its pairs get distance
    inf and no verdict)."""
    svc, names, faces = example_faces()
    t = float(svc.threshold)
    index_pairs = list(itertools.combinations(range(len(names)), 2))
    dist = np.array([float(np.linalg.norm(faces[i].embedding - faces[j].embedding))
                     for i, j in index_pairs])
    same = np.array([PERSON[names[i]] == PERSON[names[j]] for i, j in index_pairs])
    absent = {names.index("astronaut")} if no_verdict else set()
    verdict = np.array([not ({i, j} & absent) for i, j in index_pairs])
    dist = np.where(verdict, dist, np.inf)
    kinds = np.array(KINDS if distortions else ["none"] * len(index_pairs))
    d, s = dist[verdict], same[verdict]

    pred = d <= t
    rates = _rates(d, s, t)
    eer, eer_threshold = _eer(d, s)
    verification = {
        "accuracy": sm.verification_accuracy(d, s, t),
        "accuracy_ci": _bootstrap_ci(d, s, t),
        "balanced_accuracy": float((1 - rates["fmr"] + 1 - rates["fnmr"]) / 2),
        "macro_f1": float(f1_score(s, pred, average="macro", zero_division=0)),
        "fmr": rates["fmr"], "fnmr": rates["fnmr"],
        "auc": sm.roc_auc(d, s),
        "eer": eer, "eer_threshold": eer_threshold,
        "tar_at_far": {"1e-02": _tar_at_far(d, s, 1e-2), "1e-03": _tar_at_far(d, s, 1e-3)},
        "confusion_matrix": [[int(np.sum(s & pred)), int(np.sum(s & ~pred))],
                             [int(np.sum(~s & pred)), int(np.sum(~s & ~pred))]],
        "kfold": _kfold(d, s, t),
        "no_verdict_pairs": int((~verdict).sum()),
    }

    present = [k for k in range(len(names)) if k not in absent]
    gender_true = np.array([FEMALE[PERSON[names[k]]] for k in present], dtype=np.float64)
    gender_prob = np.array([faces[k].gender.probabilities["female"] for k in present])
    gender_metrics = None
    if gender:
        report = sm.gender_report(gender_true, gender_prob)  # confusion_matrix stays an array
        report["macro_f1"] = float(np.mean([c["f1"] for c in report["per_class"].values()]))
        report["classes"] = ["male", "female"]
        gender_metrics = report

    distortion_metrics = None
    if distortions:
        distortion_metrics = {}
        for kind in sorted(set(kinds.tolist())):
            sel = kinds == kind
            keep = sel & verdict
            r = _rates(dist[keep], same[keep], t) if keep.any() else {
                "accuracy": None, "fmr": None, "fnmr": None}
            distortion_metrics[kind] = {
                "pairs": int(sel.sum()), **r,
                "accuracy_ci": (_bootstrap_ci(dist[keep], same[keep], t) if keep.any()
                                else [None, None]),
                "detection_rate": 1.0, "no_verdict_pairs": int((sel & ~verdict).sum()),
            }

    group_metrics = None
    if groups:
        group_metrics = {}
        columns = {"gender": lambda n: "female" if FEMALE[PERSON[n]] else "male",
                   f"tone {HOSTILE}": lambda n: HOSTILE if n == "astronaut" else "b & c"}
        for column, of in columns.items():
            values = {}
            for value in sorted({of(n) for n in names}):
                sel = np.array([of(names[i]) == value for i, _ in index_pairs]) & verdict
                dg, sg = dist[sel], same[sel]
                r = _rates(dg, sg, t)
                try:
                    best = sm.best_accuracy_threshold(dg, sg)
                    best_acc = sm.verification_accuracy(dg, sg, best)
                except ValueError:
                    best, best_acc = None, None
                values[value] = {
                    "images": sum(of(n) == value for n in names), "pairs": int(sel.sum()),
                    "genuine": int(sg.sum()), "impostor": int((~sg).sum()), **r,
                    "best_threshold": best, "best_accuracy": best_acc, "gender": None,
                }
            fmrs = [v["fmr"] for v in values.values() if v["fmr"] is not None]
            # worst/best with a best of 0 is inf: left here on purpose, write_report nulls it
            ratio = (max(fmrs) / min(fmrs) if fmrs and min(fmrs) > 0
                     else float("inf") if fmrs else None)
            group_metrics[column] = {"groups": values, "ratios": {"fmr": ratio, "fnmr": None}}

    def label(k: int) -> str | None:
        g = faces[k].gender
        return f"{g.label} {g.probability:.0%}" if gender and g is not None else None

    samples = [
        SamplePair(chip_a=faces[i].chip, chip_b=faces[j].chip,
                   name_a=HOSTILE if names[i] == "astronaut" else names[i], name_b=names[j],
                   gender_a=None if i in absent else label(i),
                   gender_b=None if j in absent else label(j),
                   distance=float(dist[n]) if verdict[n] else None, same=bool(same[n]),
                   predicted=bool(dist[n] <= t) if verdict[n] else None, kind=str(kinds[n]))
        for n, (i, j) in enumerate(index_pairs)
    ]

    metrics = {
        "model": {"description": svc.describe(), "path": str(svc.model_path),
                  "sha256": svc.model_id.split(":")[1], "backbone": svc.info.backbone,
                  "flip": svc.flip, "crop": svc.pipeline.crop_mode,
                  "select": svc.pipeline.select, "fallback_policy": svc.pipeline.fallback_policy},
        "data": {"description": description, "path": f"/data/{HOSTILE}/examples",
                 "layout": "flat", "images": len(names), "persons": len(set(PERSON.values())),
                 "pairs": len(index_pairs), "genuine": int(same.sum()),
                 "impostor": int((~same).sum()), "protocol": "generated", "seed": 0,
                 "images_without_face": len(absent), "images_unreadable": 0},
        "threshold": {"value": t, "source": svc.info.threshold_source},
        "verification": verification,
        "gender": gender_metrics,
        "distortions": distortion_metrics,
        "groups": group_metrics,
        "bootstrap": {"samples": 200, "level": 0.95, "unit": "pair", "seed": 0},
        "seconds": 1.25,
    }
    return Evaluation(metrics=metrics, distances=dist, same=same, kinds=kinds,
                      gender_true=gender_true if gender else None,
                      gender_prob=gender_prob if gender else None, samples=samples)
