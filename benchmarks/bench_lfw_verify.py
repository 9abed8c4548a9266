"""LFW View 2 verification with the full pipeline (MTCNN-aligned chips + backbone, no
training), standard 10-fold protocol: the threshold is chosen on 9 folds, applied to the 10th.

    .venv/bin/python benchmarks/bench_lfw_verify.py                 # default model, both flips
    .venv/bin/python benchmarks/bench_lfw_verify.py --select largest --backbone dlib-resnet

Prints accuracy (mean +- std over the 10 folds) without and with flip averaging, the AUC, the
detection rate over the 7,701 images the pairs use, and the time taken.
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
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


def embed_pairs(service, paths: list[Path], batch_size: int):
    """Embeddings of each image, plain and flip-averaged, and the detected flags."""
    plain, flipped, detected = [], [], []
    model = service.model
    with torch.inference_mode():
        for start in tqdm(range(0, len(paths), batch_size), desc="embed", unit="batch"):
            crops = service.pipeline.crop_batch(paths[start:start + batch_size])
            chips = np.stack([c.chip for c in crops])
            x = model.backbone.preprocess(chips)
            emb, _ = model.forward_single(x)
            emb_flip, _ = model.forward_single(x.flip(3))
            plain.append(emb.numpy())
            flipped.append(((emb + emb_flip) / 2).numpy())
            detected.extend(c.detected for c in crops)
    return np.concatenate(plain), np.concatenate(flipped), np.array(detected)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.lfw / "pairs.txt").is_file():
        print(f"LFW not found at {args.lfw}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from siamface.data.lfw import read_view2
    from siamface.metrics import kfold_verification, roc_auc
    from siamface.service import load

    service = load(args.model, backbone=args.backbone, crop=args.crop, select=args.select)
    pairs = read_view2(args.lfw)
    index: dict[Path, int] = {}
    for pair in pairs:
        for path in pair.paths(args.lfw):
            index.setdefault(path, len(index))
    paths = list(index)
    start = time.perf_counter()
    plain, flipped, detected = embed_pairs(service, paths, args.batch_size)
    seconds = time.perf_counter() - start
    ia = np.array([index[p.paths(args.lfw)[0]] for p in pairs])
    ib = np.array([index[p.paths(args.lfw)[1]] for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    figures = {
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
    print(f"{'embedding':12s} {'accuracy':>18s} {'AUC':>8s}  thresholds")
    for name, emb in (("plain", plain), ("flip-avg", flipped)):
        d = np.linalg.norm(emb[ia] - emb[ib], axis=1)
        result = kfold_verification(d, same, folds)
        std_sample = float(np.std(result["accuracies"], ddof=1))
        auc = roc_auc(d, same)
        figures[name] = {"mean": float(result["mean"]), "std": std_sample,
                         "accuracies": [float(a) for a in result["accuracies"]],
                         "thresholds": [float(t) for t in result["thresholds"]], "auc": auc}
        print(f"{name:12s} {100 * result['mean']:8.2f}% +- {100 * std_sample:.2f} {auc:8.4f}  "
              f"{np.min(result['thresholds']):.3f}..{np.max(result['thresholds']):.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
