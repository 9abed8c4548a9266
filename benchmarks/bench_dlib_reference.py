"""dlib's own face-verification pipeline on LFW View 2, for comparison with ours: dlib's HOG
detector (the face nearest the image centre; a centred 110 px box where it finds none),
its 5-point shape predictor, ``get_face_chip(size=150, padding=0.25)`` and its own descriptor
code, then the standard 10-fold protocol (threshold chosen on 9 folds, applied to the 10th).

Needs dlib (the ``dlib-bin`` dev extra) and face_recognition_models. About 16 minutes on one
core for the 7,701 images the pairs use:

    PYTHONPATH=src .venv/bin/python benchmarks/bench_dlib_reference.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw")
    args = parser.parse_args(argv)
    if not (args.lfw / "pairs.txt").is_file():
        print(f"LFW not found at {args.lfw} (see ../shared/data/lfw/README)", file=sys.stderr)
        return 2
    import cv2
    import dlib
    import face_recognition_models as models

    from siamface.data import index_lfw_pairs, load_lfw, read_view2
    from siamface.metrics import kfold_verification

    dataset = load_lfw(args.lfw)
    pairs = read_view2(args.lfw)
    indexed = index_lfw_pairs(dataset, pairs)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    needed = sorted({p.a for p in indexed} | {p.b for p in indexed})
    descriptors: dict[int, np.ndarray] = {}
    found = 0
    started = time.time()
    for n, i in enumerate(needed):
        image = cv2.cvtColor(cv2.imread(str(dataset[i].path)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        rects = detector(image, 1)
        if len(rects):
            centres = np.array([[(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2]
                                for r in rects])
            rect = rects[int(np.argmin(np.hypot(centres[:, 0] - (w - 1) / 2,
                                                centres[:, 1] - (h - 1) / 2)))]
            found += 1
        else:
            rect = dlib.rectangle(w // 2 - 55, h // 2 - 55, w // 2 + 55, h // 2 + 55)
        chip = dlib.get_face_chip(image, predictor(image, rect), size=150, padding=0.25)
        descriptors[i] = np.array(net.compute_face_descriptor(chip), dtype=np.float32)
        if n % 1000 == 0:
            print(f"{n}/{len(needed)} images ({time.time() - started:.0f} s)", file=sys.stderr,
                  flush=True)
    distances = np.array([np.linalg.norm(descriptors[p.a] - descriptors[p.b]) for p in indexed])
    same = np.array([p.same for p in indexed], dtype=bool)
    folds = np.array([p.fold for p in pairs])
    result = kfold_verification(distances, same, folds)
    print(f"dlib's pipeline on LFW View 2: {result['mean']:.2%} +- {result['std']:.2%} "
          f"(10-fold); at dlib's fixed 0.6 threshold {((distances < 0.6) == same).mean():.2%}; "
          f"HOG found a face in {found}/{len(needed)} images; {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
