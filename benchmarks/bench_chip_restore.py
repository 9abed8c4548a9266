"""Restoring the aligned chip before it is embedded: which restoration helps which distortion.

The shipped default model, LFW View 2 pairs of the chosen folds (fold 0 by default: 600
pairs), the second chip of each pair distorted at one severity (``siamface.augment.distort``
on the cached aligned chip, seeded by the image's index, as ``bench_lfw_trained.py`` does),
then one restoration of ``siamface.detect.restore`` applied to that chip (or to both chips)
before embedding; ``gated`` is what the service does (``siamface.chip_restore``: the noise
gate on both chips, then the model's embedding gates, e.g. its fog gate, each restoration only
where its gate fires). Prints the accuracy at the model's own operating threshold and at the best
threshold on these pairs, per distortion kind and restoration, and the noise gate's figures:
``siamface.chip_restore.noise_sigma`` (Immerkaer 1996) on the grey chip, its range on clean
chips and on each kind.

Usage (repository root; chips come from ``benchmarks/_lfw_cache.py``'s cache):
    PYTHONPATH=src .venv/bin/python benchmarks/bench_chip_restore.py --severity 4
    ... --folds 0,1 --kinds fog,noise --restorations none,denoise,dehaze
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lfw_cache import DEFAULT_CACHE, DEFAULT_LFW, lfw_records

# "gated": the face pipeline's default chip restorations (siamface.chip_restore), each
# applied only where its gate fires
RESTORATIONS = ("none", "gated", "median3", "denoise", "dehaze", "thick_fog", "derain", "clahe")


def restore_chip(chip: np.ndarray, name: str) -> np.ndarray:
    import cv2

    from siamface.detect.restore import restore

    if name == "none":
        return chip
    if name == "gated":
        from siamface.chip_restore import DEFAULT_CHIP_RESTORE
        from siamface.chip_restore import restore_chip as gated

        return gated(chip, DEFAULT_CHIP_RESTORE)[0]
    if name == "median3":
        return cv2.medianBlur(np.ascontiguousarray(chip), 3)
    return restore(chip, name)


def accuracies(d: np.ndarray, t: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Accuracy at the per-pair operating thresholds ``t`` and at the best single threshold."""
    from siamface.metrics import best_accuracy_threshold, verification_accuracy

    best = verification_accuracy(d, same, best_accuracy_threshold(d, same))
    return float(((d <= t) == same).mean()), best


def main(argv: list[str] | None = None) -> int:
    from siamface.augment import DISTORTIONS, distort
    from siamface.chip_restore import noise_sigma
    from siamface.data import read_view2
    from siamface.service import load

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--folds", default="0")
    p.add_argument("--severity", type=int, default=4, choices=(1, 2, 3, 4, 5))
    p.add_argument("--kinds", default="all")
    p.add_argument("--restorations", default=",".join(RESTORATIONS))
    args = p.parse_args(argv)
    if not args.lfw.is_dir():
        print(f"LFW not found at {args.lfw} (see ../shared/data/lfw/README)", file=sys.stderr)
        return 2
    kinds = list(DISTORTIONS) if args.kinds == "all" else args.kinds.split(",")
    names = args.restorations.split(",")
    folds = {int(f) for f in args.folds.split(",")}

    dataset, chips, available = lfw_records(args.lfw, args.cache)
    index = {f"{r.person_id}/{r.path.name}": i for i, r in enumerate(dataset)}
    pairs = [q for q in read_view2(args.lfw) if q.fold in folds]
    ia = np.array([index[f"{q.name1}/{q.name1}_{q.index1:04d}.jpg"] for q in pairs])
    ib = np.array([index[f"{q.name2}/{q.name2}_{q.index2:04d}.jpg"] for q in pairs])
    keep = available[ia] & available[ib]
    ia, ib = ia[keep], ib[keep]
    same = np.array([q.same for q, k in zip(pairs, keep) if k])
    service = load()
    print(f"{service.describe()}\n{len(same)} pairs (folds {sorted(folds)}), "
          f"{int((~keep).sum())} left out (no chip), second chip at severity {args.severity}")

    def embed(chip_list: list[np.ndarray]) -> np.ndarray:
        return service._run_chips(np.stack(chip_list))[0]

    def gated_embed(chip_list: list[np.ndarray]) -> tuple[np.ndarray, list[str | None]]:
        _, emb, _, by = service._embed_chips(np.stack([restore_chip(c, "gated")
                                                       for c in chip_list]))
        return emb, by

    first = [np.asarray(chips[i]) for i in ia]
    ea = embed(first)
    gated_first = gated_embed(first)[0] if "gated" in names else None
    clean_b = [np.asarray(chips[i]) for i in ib]
    sigmas = {"clean": [noise_sigma(c) for c in clean_b]}
    print(f"\n{'second chip':12s} {'restoration':12s} {'at model t':>10s} {'best t':>8s}")
    for kind in ["clean", *kinds]:
        seconds = clean_b if kind == "clean" else [
            distort(c, kind, seed=int(i), severity=args.severity) for c, i in zip(clean_b, ib)]
        if kind != "clean":
            sigmas[kind] = [noise_sigma(c) for c in seconds]
        for name in names:
            first_e, fired = ea, ""
            if name == "gated":  # as the service embeds faces: both chips, embedding gates too
                first_e = gated_first
                eb, by = gated_embed(seconds)
                fired = f"  fog gate fired on {np.mean([b == 'dehaze' for b in by]):.1%}"
            else:
                eb = embed([restore_chip(c, name) for c in seconds])
            d = np.linalg.norm(first_e - eb, axis=1)
            acc, best = accuracies(d, service.pair_thresholds(first_e, eb), same)
            print(f"{kind:12s} {name:12s} {acc:10.2%} {best:8.2%}{fired}", flush=True)
        if kind == "clean":
            for name in (n for n in names if n not in ("none", "gated")):
                both_a = embed([restore_chip(c, name) for c in first])
                eb = embed([restore_chip(c, name) for c in seconds])
                d = np.linalg.norm(both_a - eb, axis=1)
                acc, best = accuracies(d, service.pair_thresholds(both_a, eb), same)
                print(f"{'clean':12s} {name + ' both':12s} {acc:10.2%} {best:8.2%}", flush=True)
    print(f"\nnoise estimate (grey levels) {'min':>6s} {'p1':>6s} {'median':>7s} {'p99':>6s} "
          f"{'max':>6s}")
    for kind, values in sigmas.items():
        v = np.asarray(values)
        print(f"{kind:28s} {v.min():6.2f} {np.percentile(v, 1):6.2f} {np.median(v):7.2f} "
              f"{np.percentile(v, 99):6.2f} {v.max():6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
