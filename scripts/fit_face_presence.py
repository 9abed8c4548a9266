"""Fit the face-presence model of centre-crop fallbacks (siamface.detect.presence) and its cut-off.

Reads sets that benchmarks/bench_face_presence.py collected (``--sets FILE`` there: distorted
LFW View 2 images MTCNN misses, and generated and natural non-face images it also misses),
computes :data:`siamface.detect.presence.FEATURES` for every image, and fits boosted trees
(scikit-learn's HistGradientBoostingClassifier: depth 3, 200 trees, learning rate 0.05; the
score may only rise with the networks' logit and only fall with the landmark spread) to tell
the faces from the non-faces.

The cut-off is chosen out of fold: each set file is scored by trees fitted on the other
files, and the cut-off is the middle (in logit space) of the range where both the pooled
out-of-fold pass rate of the single-distortion misses and the rejection rate of the
non-faces reach ``--target``. Those out-of-fold figures are printed per file: they are what a
draw the trees never saw gets. The trees written are then fitted on every file.

Usage (from the repository root; collect the sets first, one bench run per seed):
    PYTHONPATH=src .venv/bin/python scripts/fit_face_presence.py \\
        --sets presence-seed0.npz presence-seed1.npz ... \\
        [--out src/siamface/assets/face-presence.safetensors] [--target 0.99]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_face_presence import cutoff_range, load_sets, middle_cutoff

from siamface.detect.presence import FEATURES, MONOTONE, FacePresence
from siamface.detect.trees import TreeEnsemble

DEFAULT_OUT = REPO / "src" / "siamface" / "assets" / "face-presence.safetensors"
TREE_PARAMS = {"max_depth": 3, "max_iter": 200, "learning_rate": 0.05, "early_stopping": False,
               "random_state": 0}


def read_set(path: Path, presence: FacePresence) -> dict:
    """Features, labels (1 = face) and kinds of one sets file, and the bench settings it was
    collected with."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    args = argparse.Namespace(**meta["args"])
    missed, _, kept_neg, *_ = load_sets(path, args)
    groups = [(name, im) for name, ims in missed.items() for im in ims]
    groups += [(f"non-face:{family}", im) for family, im in kept_neg]
    x = presence.features([im for _, im in groups])
    kinds = np.array([name for name, _ in groups])
    label = np.array([not k.startswith("non-face:") for k in kinds])
    strong = np.array([k.startswith("strong:") for k in kinds])
    print(f"{path.name}: {int((label & ~strong).sum())} misses, {int(strong.sum())} strong "
          f"misses, {int((~label).sum())} non-faces ({meta['args']})")
    return {"x": x, "label": label, "strong": strong, "kinds": kinds, "args": meta["args"],
            "name": path.name}


def fit_trees(x: np.ndarray, label: np.ndarray):
    from sklearn.ensemble import HistGradientBoostingClassifier

    monotone = [MONOTONE.get(f, 0) for f in FEATURES]
    return HistGradientBoostingClassifier(monotonic_cst=monotone, **TREE_PARAMS).fit(x, label)


def to_ensemble(clf, meta: dict) -> TreeEnsemble:
    """The fitted classifier's trees as :class:`TreeEnsemble` arrays (padded to one size)."""
    trees = [predictors[0].nodes for predictors in clf._predictors]
    width = max(len(t) for t in trees)
    arrays = {name: np.zeros((len(trees), width), dtype)
              for name, dtype in (("feature", np.int64), ("threshold", np.float64),
                                  ("left", np.int64), ("right", np.int64),
                                  ("value", np.float64), ("is_leaf", bool))}
    arrays["is_leaf"][:] = True  # padding nodes are leaves nobody reaches
    for i, nodes in enumerate(trees):
        n = len(nodes)
        arrays["feature"][i, :n] = nodes["feature_idx"]
        arrays["threshold"][i, :n] = nodes["num_threshold"]
        arrays["left"][i, :n] = nodes["left"]
        arrays["right"][i, :n] = nodes["right"]
        arrays["value"][i, :n] = nodes["value"]
        arrays["is_leaf"][i, :n] = nodes["is_leaf"].astype(bool)
    return TreeEnsemble(**arrays, baseline=float(np.ravel(clf._baseline_prediction)[0]),
                        features=FEATURES, meta=meta)


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / max(n, 1):.2f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=Path, nargs="+", required=True,
                        help="sets files from bench_face_presence.py --sets (two or more)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if len(args.sets) < 2:
        parser.error("out-of-fold figures need two or more sets files")
    missing = [p for p in args.sets if not p.is_file()]
    if missing:
        parser.error(f"no such sets file: {', '.join(map(str, missing))}")
    torch.set_num_threads(args.threads)

    presence = FacePresence()
    sets = [read_set(p, presence) for p in args.sets]

    oof = []
    for k, held in enumerate(sets):
        rest = [s for i, s in enumerate(sets) if i != k]
        clf = fit_trees(np.concatenate([s["x"] for s in rest]),
                        np.concatenate([s["label"] for s in rest]))
        oof.append(clf.decision_function(held["x"]))
    sig = [1 / (1 + np.exp(-z)) for z in oof]
    pos = np.concatenate([p[s["label"] & ~s["strong"]] for p, s in zip(sig, sets, strict=True)])
    neg = np.concatenate([p[~s["label"]] for p, s in zip(sig, sets, strict=True)])
    low, high = cutoff_range(pos, neg, args.target)
    if not low < high:
        print(f"no cut-off reaches {args.target:.0%} on both sides out of fold "
              f"(range ({low:.4g}, {high:.4g}]); taking the middle anyway")
    cutoff = float(f"{middle_cutoff(min(low, high), max(low, high)):.3g}")

    print(f"\nOut of fold (each file scored by trees fitted on the others), cut-off {cutoff:g} "
          f"(the {args.target:.0%} range is ({low:.4g}, {high:.4g}]):")
    figures = []
    for p, s in zip(sig, sets, strict=True):
        std, strong, nonface = s["label"] & ~s["strong"], s["strong"], ~s["label"]
        row = {"file": s["name"], "args": s["args"],
               "misses_pass": [int((p[std] >= cutoff).sum()), int(std.sum())],
               "strong_pass": [int((p[strong] >= cutoff).sum()), int(strong.sum())],
               "non_faces_rejected": [int((p[nonface] < cutoff).sum()), int(nonface.sum())]}
        figures.append(row)
        print(f"  {s['name']:<28} misses pass {_pct(*row['misses_pass'])}, strong "
              f"{_pct(*row['strong_pass'])}, non-faces rejected "
              f"{_pct(*row['non_faces_rejected'])}")
    total = {key: [sum(r[key][0] for r in figures), sum(r[key][1] for r in figures)]
             for key in ("misses_pass", "strong_pass", "non_faces_rejected")}
    print(f"  {'all':<28} misses pass {_pct(*total['misses_pass'])}, strong "
          f"{_pct(*total['strong_pass'])}, non-faces rejected "
          f"{_pct(*total['non_faces_rejected'])}")
    per_kind: dict[str, list[int]] = {}
    for p, s in zip(sig, sets, strict=True):
        for kind in np.unique(s["kinds"]):
            m = s["kinds"] == kind
            ok = (p[m] < cutoff) if kind.startswith("non-face:") else (p[m] >= cutoff)
            got = per_kind.setdefault(str(kind), [0, 0])
            got[0] += int(ok.sum())
            got[1] += int(m.sum())
    print("  per kind (pass for faces, rejected for non-faces):")
    for kind, (k, n) in sorted(per_kind.items()):
        print(f"    {kind:<34} {_pct(k, n)}")

    clf = fit_trees(np.concatenate([s["x"] for s in sets]),
                    np.concatenate([s["label"] for s in sets]))
    meta = {"cutoff": cutoff, "target": args.target, "params": TREE_PARAMS,
            "monotone": {f: MONOTONE.get(f, 0) for f in FEATURES},
            "sets": [{"file": s["name"], "args": s["args"]} for s in sets],
            "out_of_fold": {"per_file": figures, "total": total, "per_kind": per_kind,
                            "range": [low, high]}}
    ensemble = to_ensemble(clf, meta)
    check = ensemble.decision(sets[0]["x"])
    if not np.allclose(check, clf.decision_function(sets[0]["x"]), atol=1e-9):
        raise SystemExit("the flattened trees disagree with scikit-learn's")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ensemble.save(args.out)
    print(f"\n{ensemble.feature.shape[0]} trees (depth {ensemble.depth}) written to {args.out} "
          f"(digest {ensemble.digest()}); set DEFAULT_CUTOFF = {cutoff:g} in "
          f"siamface/detect/presence.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
