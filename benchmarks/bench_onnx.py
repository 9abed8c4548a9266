"""Benchmark the ONNX runtime against torch: embedding + gender per face-pass at batch 32 (fp32
and int8), MTCNN per 250 px LFW image batched, and the cold-start wall time of a new
``siamface verify`` process.

A flip-averaged face (the shipped model) costs two face-passes; the figure is the time per
batch divided by 32 x 2. Each timing is the best of ``--repeat`` runs after a warm-up. The
load average is printed beside the figures: on a shared machine, figures taken while it is
above ~0.5 are unreliable. Needs an export with the detector (and ``--int8`` for the int8
row)::

    siamface export --format onnx --with-detector --int8 --calibration DIR --out /tmp/onnx
    PYTHONPATH=src python benchmarks/bench_onnx.py --onnx-dir /tmp/onnx
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"
EXAMPLES = REPO / "src" / "siamface" / "examples"


def load_average() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def best_ms(fn, repeat: int) -> float:
    fn()  # warm-up (first-call allocation, thread pools)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def lfw_images(lfw: Path, n: int) -> list[Path]:
    files = sorted((lfw / "images").glob("*/*.jpg"))
    if not files:
        sys.exit(f"no LFW images under {lfw}/images (pass --lfw)")
    step = max(1, len(files) // n)
    return files[::step][:n]


def cold_start(argv: list[str], repeat: int) -> float:
    """Median wall time (s) of a new process running ``siamface`` with ``argv``."""
    exe = Path(sys.executable).parent / "siamface"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "siamface.cli.main"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(cmd + argv, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode not in (0, 1):
            sys.exit(f"siamface {' '.join(argv)} failed: {done.stderr[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", type=Path, default=None,
                        help="export folder (default: the export cache)")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--images", type=int, default=64, help="LFW images for MTCNN")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cold-repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and ONNX Runtime intra-op threads (default: theirs)")
    args = parser.parse_args()

    import torch

    import siamface
    from siamface.detect import MTCNN
    from siamface.io import load_image
    from siamface.ort import OnnxFaceService, session

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
          f"threads; {load_average()}")
    svc = OnnxFaceService.load(onnx_dir=args.onnx_dir, threads=args.threads)
    folder = svc.onnx_dir
    tsvc = siamface.load()
    passes = 2 if tsvc.flip else 1
    paths = lfw_images(args.lfw, max(args.images, args.batch))
    images = [load_image(p) for p in paths]
    chips = np.stack([c.chip for c in tsvc.pipeline.crop_batch(paths[:args.batch * 2])
                      if c.has_face][:args.batch])
    per = len(chips) * passes
    tsvc.batch_size = svc.batch_size = len(chips)

    rows = []
    ms = best_ms(lambda: tsvc._run_chips(chips), args.repeat) / per
    rows.append(("embedding + gender, torch fp32", f"{ms:.2f} ms per face-pass"))
    ms = best_ms(lambda: svc._run_chips(chips), args.repeat) / per
    rows.append(("embedding + gender, onnx fp32", f"{ms:.2f} ms per face-pass"))
    if "model_int8" in svc.manifest["files"]:
        int8 = session(folder / svc.manifest["files"]["model_int8"]["file"], args.threads)
        ms = best_ms(lambda: int8.run(None, {"chips": chips}), args.repeat) / per
        rows.append(("embedding + gender, onnx int8", f"{ms:.2f} ms per face-pass"))
    batch = images[:args.images]
    for name, detector in (("torch", MTCNN()), ("onnx", svc.pipeline.detector)):
        ms = best_ms(lambda d=detector: d.detect_batch(batch), args.repeat) / len(batch)
        rows.append((f"MTCNN {name}, {len(batch)} LFW images batched",
                     f"{ms:.2f} ms per image"))
    rows.append(("", load_average()))
    a, b = str(EXAMPLES / "kofi_annan_1.jpg"), str(EXAMPLES / "kofi_annan_2.jpg")
    onnx_flags = ["--runtime", "onnx", "--onnx-dir", str(folder)]
    for name, flags in (("torch", []), ("onnx", onnx_flags)):
        seconds = cold_start(["verify", *flags, a, b], args.cold_repeat)
        rows.append((f"cold start `siamface verify{' --runtime onnx' if flags else ''} a b`",
                     f"{seconds:.2f} s wall (median of {args.cold_repeat})"))
    rows.append(("", load_average()))
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
