"""How often MTCNN, and MTCNN plus the detection retries, find the face in distorted LFW
photos, per kind and severity; whether the retries find "faces" in non-face images; what
they cost on clean photos.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_detect_retries.py \\
        [--lfw ../shared/data/lfw] [--images 300] [--severities 3 4] [--non-faces 600]

Faces: the second images of LFW View 2 pairs (``--images`` of them, sampled with ``--seed``),
each distorted by every kind of ``siamface.augment.DISTORTIONS`` at each severity, then
cropped by the default face pipeline (retries on). Per kind and severity it prints the share
MTCNN found on its own, the share found with the retries (and which retry), and, of the
photos MTCNN missed, the share that still get a verdict under ``--fallback-policy auto``
(found by a retry, or a centre crop that passes the face-presence check).
Non-faces: ``bench_face_presence.negative_images`` (noise, flat colours, gradients, patterns,
scikit-learn's two photos and crops of them) and ``--more-photos`` from scikit-image's 16
photos without people (``more_negative_images``); of those MTCNN misses, how many a retry takes
for a face, and how many are rejected in the end (no retry finds one and the presence check
refuses the centre crop).
Clean cost: the median time of ``FacePipeline.crop`` on ``--timed`` clean LFW images with and
without retries, alternating (a retry runs only when the first pass finds nothing).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from siamface.augment import DISTORTIONS, SEVERITIES, distort
from siamface.data.lfw import lfw_image_path, read_view2
from siamface.io import load_image
from siamface.service import pipeline_for

REPO = Path(__file__).resolve().parents[1]
BATCH = 16


def _second_images(lfw: Path, n: int, seed: int) -> list[Path]:
    refs = sorted({(p.name2, p.index2) for p in read_view2(lfw)})
    return [lfw_image_path(lfw, a, b) for a, b in random.Random(seed).sample(refs, n)]


def _crops(pipeline, images: list[np.ndarray]) -> list:
    out = []
    for start in range(0, len(images), BATCH):
        out += pipeline.crop_batch(images[start:start + BATCH])
    return out


def _pct(k: int, n: int) -> str:
    return f"{100 * k / max(n, 1):6.2f}%"


def faces(pipeline, originals: list[np.ndarray], severities: list[int], seed: int) -> None:
    print(f"\n{len(originals)} LFW View 2 second images, distorted; MTCNN alone | with retries "
          "(found by which) | of MTCNN's misses, with a verdict under auto")
    for severity in severities:
        for k, kind in enumerate(DISTORTIONS):
            images = [distort(im, kind, seed=seed * 100_003 + i * 16 + k, severity=severity)
                      for i, im in enumerate(originals)]
            crops = _crops(pipeline, images)
            first = sum(c.detected_by == "detector" for c in crops)
            found = sum(c.detected for c in crops)
            by: dict[str, int] = {}
            for c in crops:
                if c.detected_by not in (None, "detector"):
                    by[c.detected_by] = by.get(c.detected_by, 0) + 1
            missed = [c for c in crops if c.detected_by != "detector"]
            verdict = sum(c.has_face for c in missed)
            n = len(crops)
            retried = ", ".join(f"{name} {count}" for name, count in sorted(by.items()))
            print(f"  severity {severity} {kind:<12} MTCNN {_pct(first, n)} | retries "
                  f"{_pct(found, n)} ({retried or 'none'}) | verdict {verdict}/{len(missed)}",
                  flush=True)


def non_faces(pipeline, n: int, more: int, seed: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_face_presence import more_negative_images, negative_images

    samples = negative_images(n, seed) + more_negative_images(more, seed)
    crops = _crops(pipeline, [im for _, im in samples])
    first = [(f, c) for (f, _), c in zip(samples, crops) if c.detected_by == "detector"]
    missed = [(f, c) for (f, _), c in zip(samples, crops) if c.detected_by != "detector"]
    by_retry = [(f, c.detected_by, round(float(c.score), 3)) for f, c in missed if c.detected]
    rejected = sum(not c.has_face for _, c in missed)
    print(f"\nnon-faces: {len(samples)}; MTCNN finds a 'face' in {len(first)}; of the "
          f"{len(missed)} it misses, a retry takes {len(by_retry)} for a face {by_retry}, and "
          f"{rejected} ({_pct(rejected, len(missed)).strip()}) are rejected in the end "
          "(no retry finds one and the presence check refuses the centre crop)")


def clean_cost(pipeline, bare, originals: list[np.ndarray], rounds: int = 2) -> None:
    times: dict[int, list[float]] = {0: [], 1: []}
    targets = (pipeline, bare)
    for r in range(rounds):
        for i, image in enumerate(originals):
            order = (0, 1) if (i + r) % 2 == 0 else (1, 0)  # alternate who goes first
            for which in order:
                start = time.perf_counter()
                targets[which].crop(image)
                times[which].append(time.perf_counter() - start)
    a, b = statistics.median(times[0]), statistics.median(times[1])
    print(f"\nclean LFW, crop() one image at a time ({len(originals)} images x {rounds}, "
          f"alternating): median {1000 * a:.1f} ms with retries, {1000 * b:.1f} ms without "
          f"({100 * (a / b - 1):+.1f}%)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw")
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--severities", type=int, nargs="+", choices=SEVERITIES, default=[3, 4])
    p.add_argument("--non-faces", type=int, default=600)
    p.add_argument("--more-photos", type=int, default=600,
                   help="more non-faces from scikit-image's photos (bench_face_presence)")
    p.add_argument("--timed", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not (args.lfw / "pairs.txt").is_file():
        print(f"LFW not found at {args.lfw}", file=sys.stderr)
        return 2
    pipeline = pipeline_for()
    bare = pipeline_for(retries=())
    bare._detector = pipeline.detector  # one set of networks
    print(f"retries: {', '.join(pipeline.retries)}")
    originals = [load_image(path) for path in _second_images(args.lfw, args.images, args.seed)]
    if args.timed:
        clean_cost(pipeline, bare, originals[:args.timed])
    faces(pipeline, originals, args.severities, args.seed)
    if args.non_faces:
        non_faces(pipeline, args.non_faces, args.more_photos, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
