"""Benchmark the MTCNN detector on the LFW images that pairs.txt uses.

Reports the detection rate (images with at least one face) over the batched pass and the
median detection time per image, single images and batches, on a fixed number of threads.
Decoding is not timed. Example::

    PYTHONPATH=src python benchmarks/bench_detect.py --limit 640
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from siamface.detect import MTCNN

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"


def pairs_images(lfw: Path) -> list[Path]:
    """The distinct images pairs.txt refers to, in first-use order."""
    lines = (lfw / "pairs.txt").read_text().splitlines()[1:]
    seen: dict[Path, None] = {}
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3:
            refs = [(parts[0], int(parts[1])), (parts[0], int(parts[2]))]
        elif len(parts) == 4:
            refs = [(parts[0], int(parts[1])), (parts[2], int(parts[3]))]
        else:
            continue
        for name, index in refs:
            seen[lfw / "images" / name / f"{name}_{index:04d}.jpg"] = None
    return list(seen)


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N images (default: all 7,701)")
    parser.add_argument("--single-limit", type=int, default=500,
                        help="images timed one at a time (default 500; 0 to skip)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.lfw / "pairs.txt").is_file():
        print(f"LFW not found at {args.lfw}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    paths = pairs_images(args.lfw)[: args.limit]
    detector = MTCNN()

    warm = [load_rgb(p) for p in paths[: args.batch_size]]
    for _ in range(args.warmup):
        detector.detect_batch(warm)
        for image in warm[:4]:
            detector.detect(image)

    batch_times: list[float] = []
    found = faces = 0
    missed: list[str] = []
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start:start + args.batch_size]
        images = [load_rgb(p) for p in chunk]
        t0 = time.perf_counter()
        results = detector.detect_batch(images)
        batch_times.append((time.perf_counter() - t0) / len(images))
        for path, result in zip(chunk, results):
            faces += len(result)
            if len(result):
                found += 1
            else:
                missed.append(path.stem)

    single_times: list[float] = []
    for path in paths[: args.single_limit]:
        image = load_rgb(path)
        t0 = time.perf_counter()
        detector.detect(image)
        single_times.append(time.perf_counter() - t0)

    n = len(paths)
    print(f"MTCNN on {n} LFW pairs.txt images, {args.threads} threads, torch {torch.__version__}")
    print(f"{'figure':<40}{'value':>14}")
    print(f"{'-' * 54}")
    print(f"{'detection rate (>= 1 face)':<40}{100 * found / n:>13.2f}%")
    print(f"{'images without a face':<40}{n - found:>14d}")
    print(f"{'faces per image (mean)':<40}{faces / n:>14.3f}")
    print(f"{f'median ms/image, batch {args.batch_size}':<40}"
          f"{1e3 * statistics.median(batch_times):>14.2f}")
    print(f"{f'mean ms/image, batch {args.batch_size}':<40}"
          f"{1e3 * statistics.fmean(batch_times):>14.2f}")
    if single_times:
        print(f"{f'median ms/image, single ({len(single_times)} images)':<40}"
              f"{1e3 * statistics.median(single_times):>14.2f}")
        print(f"{'mean ms/image, single':<40}{1e3 * statistics.fmean(single_times):>14.2f}")
    if missed:
        print(f"no face in: {', '.join(missed[:20])}{' ...' if len(missed) > 20 else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
