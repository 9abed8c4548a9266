"""LFW View 2 verification with the full pipeline (MTCNN-aligned chips + backbone, no
training), standard 10-fold protocol: the threshold is chosen on 9 folds, applied to the 10th.

    .venv/bin/python benchmarks/bench_lfw_verify.py --backbone dlib-resnet   # untrained
    .venv/bin/python benchmarks/bench_lfw_verify.py                 # default model (trained
                                                                    # on LFW: not held out)
    .venv/bin/python benchmarks/bench_lfw_verify.py --select largest --backbone dlib-resnet
    .venv/bin/python benchmarks/bench_lfw_verify.py --distort all      # robustness table
    .venv/bin/python benchmarks/bench_lfw_verify.py --backbone dlib-resnet --distort all \
        --severity 4 --retries none                                 # strong, no retries

With --distort, the second image of every pair is distorted (siamface.augment.distort, seeded by
the image's path) and the protocol is run again for each distortion kind separately.

Prints accuracy (mean +- std over the 10 folds) without and with flip averaging, the AUC, the
detection rate over the 7,701 images the pairs use, and the time taken.

--fallback-policy (default: the library's, auto) decides what an image without a detected face
gives: a pair with an absent face has no verdict, and is counted as a rejection (NO MATCH), so
it is an error for a genuine pair. The number of such pairs is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--backbone", default=None, help="untrained backbone instead of a model")
    p.add_argument("--crop", choices=("aligned", "padded", "center"), default=None)
    p.add_argument("--select", choices=("largest", "central", "score"), default=None)
    p.add_argument("--fallback-policy", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--distort", default=None,
                   help="a distortion kind, a comma-separated list, or 'all'")
    p.add_argument("--severity", type=int, default=None,
                   help="the distortions' severity, 1-5 (default: 3, siamface distort's)")
    p.add_argument("--retries", nargs="+", default=None,
                   help="detection retries by name, or 'none' (default: the library's)")
    return p.parse_args(argv)


NO_VERDICT = 1e6  # the distance given to a pair with an absent face: never a match


def pair_distances(emb_a: np.ndarray, emb_b: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """Distances of aligned rows; pairs where ``absent`` is set have no verdict."""
    d = np.linalg.norm(emb_a - emb_b, axis=1)
    d[absent] = NO_VERDICT
    return d


def embed_pairs(service, paths: list, batch_size: int, desc: str = "embed"):
    """Embeddings of each image (path or array), plain and flip-averaged, detected flags and
    absent flags (no face under the service's fallback policy)."""
    plain, flipped, detected, absent = [], [], [], []
    model = service.model
    with torch.inference_mode():
        for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch"):
            crops = service.pipeline.crop_batch(paths[start:start + batch_size])
            chips = np.stack([c.chip for c in crops])
            x = model.backbone.preprocess(chips)
            emb, _ = model.forward_single(x)
            emb_flip, _ = model.forward_single(x.flip(3))
            plain.append(emb.numpy())
            flipped.append(((emb + emb_flip) / 2).numpy())
            detected.extend(c.detected for c in crops)
            absent.extend(c.no_face is not None for c in crops)
    return (np.concatenate(plain), np.concatenate(flipped), np.array(detected),
            np.array(absent))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.lfw / "pairs.txt").is_file():
        print(f"LFW not found at {args.lfw}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from siamface.data.lfw import read_view2
    from siamface.metrics import kfold_verification, roc_auc
    from siamface.service import load

    retries = None if args.retries is None else [r for r in args.retries if r != "none"]
    service = load(args.model, backbone=args.backbone, crop=args.crop, select=args.select,
                   fallback_policy=args.fallback_policy, retries=retries)
    layout = service.info.training.get("config", {}).get("data", {}).get("layout")
    if layout == "lfw":
        print("warning: this model was trained on LFW, so these are not held-out figures; "
              "use --backbone dlib-resnet, or benchmarks/bench_lfw_trained.py for trained "
              "models", file=sys.stderr)
    pairs = read_view2(args.lfw)
    index: dict[Path, int] = {}
    for pair in pairs:
        for path in pair.paths(args.lfw):
            index.setdefault(path, len(index))
    paths = list(index)
    start = time.perf_counter()
    plain, flipped, detected, absent = embed_pairs(service, paths, args.batch_size)
    seconds = time.perf_counter() - start
    ia = np.array([index[p.paths(args.lfw)[0]] for p in pairs])
    ib = np.array([index[p.paths(args.lfw)[1]] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    no_verdict = absent[ia] | absent[ib]
    figures = {
        "fallback_policy": args.fallback_policy,
        "absent": int(absent.sum()),
        "no_verdict_pairs": int(no_verdict.sum()),
        "model": args.model or ("untrained " + args.backbone if args.backbone else "default"),
        "backbone": service.info.backbone,
        "crop": service.pipeline.crop_mode,
        "select": service.pipeline.select,
        "images": len(paths),
        "detected": int(detected.sum()),
        "detection_rate": float(detected.mean()),
        "seconds": seconds,
    }
    print(f"\nLFW View 2, 10-fold: {service.info.backbone}, crop {figures['crop']}, "
          f"select {figures['select']}, model {figures['model']}")
    print(f"faces detected: {figures['detected']}/{len(paths)} "
          f"({100 * figures['detection_rate']:.2f}%); {seconds:.0f} s "
          f"({1000 * seconds / len(paths):.1f} ms/image incl. detection, both flips)")
    print(f"fallback policy {args.fallback_policy}: {figures['absent']} images without a face, "
          f"{figures['no_verdict_pairs']} pairs without a verdict (counted as NO MATCH)")
    print(f"{'embedding':12s} {'accuracy':>18s} {'AUC':>8s}  thresholds")
    for name, emb in (("plain", plain), ("flip-avg", flipped)):
        d = pair_distances(emb[ia], emb[ib], no_verdict)
        result = kfold_verification(d, same, folds)
        std_sample = float(np.std(result["accuracies"], ddof=1))
        auc = roc_auc(d, same)
        figures[name] = {"mean": float(result["mean"]), "std": std_sample,
                         "accuracies": [float(a) for a in result["accuracies"]],
                         "thresholds": [float(t) for t in result["thresholds"]], "auc": auc}
        print(f"{name:12s} {100 * result['mean']:8.2f}% +- {100 * std_sample:.2f} {auc:8.4f}  "
              f"{np.min(result['thresholds']):.3f}..{np.max(result['thresholds']):.3f}")
    if args.distort:
        figures["distorted"] = distorted_figures(args, service, pairs, plain, flipped, absent,
                                                 index, same, folds)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def distorted_figures(args, service, pairs, plain, flipped, absent, index, same, folds) -> dict:
    """The protocol again with the second image of each pair distorted, per kind."""
    import zlib

    from siamface.augment import DEFAULT_SEVERITY, DISTORTIONS, distort
    from siamface.io import load_image
    from siamface.metrics import kfold_verification

    kinds = list(DISTORTIONS) if args.distort == "all" else args.distort.split(",")
    ia = np.array([index[p.paths(args.lfw)[0]] for p in pairs])
    seconds = sorted({p.paths(args.lfw)[1] for p in pairs})
    where = {path: i for i, path in enumerate(seconds)}
    ib = np.array([where[p.paths(args.lfw)[1]] for p in pairs])
    severity = DEFAULT_SEVERITY if args.severity is None else args.severity
    out = {"severity": severity}
    print(f"\nsecond image of each pair distorted at severity {severity} ({len(seconds)} "
          f"images per kind)")
    print(f"{'distortion':12s} {'plain':>16s} {'flip-avg':>16s} {'detected':>9s} "
          f"{'no verdict':>10s}")
    for kind in kinds:
        images = [distort(load_image(path), kind, seed=zlib.crc32(str(path).encode()),
                          severity=severity) for path in seconds]
        d_plain, d_flip, det, gone = embed_pairs(service, images, args.batch_size, desc=kind)
        no_verdict = absent[ia] | gone[ib]
        row = {"detection_rate": float(det.mean()), "no_verdict_pairs": int(no_verdict.sum())}
        for name, clean, dist in (("plain", plain, d_plain), ("flip-avg", flipped, d_flip)):
            d = pair_distances(clean[ia], dist[ib], no_verdict)
            result = kfold_verification(d, same, folds)
            row[name] = {"mean": float(result["mean"]),
                         "std": float(np.std(result["accuracies"], ddof=1))}
        out[kind] = row
        print(f"{kind:12s} {100 * row['plain']['mean']:7.2f}% +- {100 * row['plain']['std']:.2f}"
              f" {100 * row['flip-avg']['mean']:7.2f}% +- {100 * row['flip-avg']['std']:.2f}"
              f" {100 * row['detection_rate']:8.2f}% {row['no_verdict_pairs']:10d}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
