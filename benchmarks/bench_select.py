"""Which face to keep when a photo has several: LFW View 2 accuracy per selection rule.

For every image of LFW's ``pairs.txt`` (7,701 images), MTCNN detects the faces once; each rule
(largest, central, score) picks one, the aligned chip goes through dlib-resnet, and pairs are
scored by Euclidean distance. The 10-fold accuracy picks the best-accuracy threshold on 9 folds
and applies it to the 10th. Only images with several faces differ between rules, so each
distinct (image, face) chip is embedded once. Images with no face use the centre crop.

Result (2 CPU cores, shared; detection 1469 s, crop + embed 7,785 chips 183 s): 1,246 of the
7,701 images have 2+ faces; largest and central disagree on 84 images, score and central on 2.
    largest  97.93% +- 0.68
    central  98.98% +- 0.41   (the default, siamface.faces.DEFAULT_SELECT)
    score    98.98% +- 0.41

Usage (from the repository root):
    PYTHONPATH=src .venv/bin/python benchmarks/bench_select.py [--lfw DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from siamface.backbones import create_backbone
from siamface.data.lfw import read_pairs
from siamface.detect import MTCNN
from siamface.faces import FacePipeline, rank_faces
from siamface.io import load_image
from siamface.metrics import kfold_verification

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"
RULES = ("largest", "central", "score")
BATCH = 32


def detect_all(detector: MTCNN, paths: list[Path]) -> tuple[list[np.ndarray], list]:
    images, detections = [], []
    for start in range(0, len(paths), BATCH):
        batch = [load_image(p) for p in paths[start : start + BATCH]]
        images.extend(batch)
        detections.extend(detector.detect_batch(batch))
    return images, detections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--crop", default="aligned", choices=("aligned", "padded"))
    parser.add_argument("--limit", type=int, default=0, help="N pairs spread over all folds (smoke runs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    pairs = read_pairs(args.lfw / "pairs.txt")
    if args.limit:
        pairs = pairs[:: max(1, len(pairs) // args.limit)][: args.limit]
    paths = sorted({p for pair in pairs for p in pair.paths(args.lfw)})
    index = {p: i for i, p in enumerate(paths)}
    detector = MTCNN()
    pipeline = FacePipeline(crop=args.crop, select="largest", detector=detector)

    t0 = time.perf_counter()
    images, detections = detect_all(detector, paths)
    t_detect = time.perf_counter() - t0
    counts = np.array([len(d.boxes) for d in detections])

    # the face each rule keeps (-1: none found, centre crop)
    chosen = {
        rule: np.array([
            int(rank_faces(d.boxes, img.shape, rule)[0]) if len(d.boxes) else -1
            for img, d in zip(images, detections)
        ])
        for rule in RULES
    }
    keys = sorted({(i, int(chosen[r][i])) for r in RULES for i in range(len(paths))})
    t0 = time.perf_counter()
    chips = []
    for i, k in keys:
        face = pipeline.crops_from_detections(images[i], _subset(detections[i], k))[0]
        chips.append(face.chip)
    backbone = create_backbone("dlib-resnet")
    with torch.inference_mode():
        emb = backbone.embed(np.stack(chips)).numpy()
    t_embed = time.perf_counter() - t0
    row = {key: n for n, key in enumerate(keys)}

    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    print(f"{len(pairs)} pairs, {len(paths)} images; faces per image: "
          f"0: {(counts == 0).sum()}, 1: {(counts == 1).sum()}, 2+: {(counts > 1).sum()}; "
          f"rules disagree on {(chosen['largest'] != chosen['central']).sum()} (largest vs "
          f"central), {(chosen['score'] != chosen['central']).sum()} (score vs central) images")
    print(f"detection {t_detect:.0f} s, crop+embed {len(keys)} chips {t_embed:.0f} s "
          f"({torch.get_num_threads()} threads, crop={args.crop})")
    for rule in RULES:
        a, b = zip(*(pair.paths(args.lfw) for pair in pairs))
        ea = emb[[row[(index[p], int(chosen[rule][index[p]]))] for p in a]]
        eb = emb[[row[(index[p], int(chosen[rule][index[p]]))] for p in b]]
        dist = np.linalg.norm(ea - eb, axis=1)
        res = kfold_verification(dist, same, folds, method="accuracy")
        print(f"{rule:8s} accuracy {100 * res['mean']:.2f}% +- {100 * res['std']:.2f} "
              f"(thresholds {np.round(res['thresholds'].mean(), 3)})")
    return 0


class _Subset:
    def __init__(self, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray) -> None:
        self.boxes, self.scores, self.landmarks = boxes, scores, landmarks


def _subset(detections, k: int) -> _Subset:
    """Detections reduced to face ``k`` (none when k is -1)."""
    keep = slice(0, 0) if k < 0 else slice(k, k + 1)
    return _Subset(detections.boxes[keep], detections.scores[keep], detections.landmarks[keep])


if __name__ == "__main__":
    sys.exit(main())
