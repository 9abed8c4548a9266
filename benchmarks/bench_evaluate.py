"""How long ``siamface evaluate`` takes on the 6,000 LFW View 2 pairs, and its figure.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_evaluate.py [--cache DIR] [--runtime onnx]

Three timed runs of the real command in a new process each (process start, model load,
hashing the 7,701 files, metrics with 1,000 bootstrap resamples, dashboard, samples, HTML):
1. filling the crop cache when it is empty (detection of every image; skipped if it is full);
2. from cached crops alone (the embeddings cleared with ``siamface cache clear --only
   embeddings``): every face embedded again;
3. from cached crops and embeddings.
Prints the seconds of each and the 10-fold accuracy, which must equal
``benchmarks/bench_lfw_verify.py``'s flip-averaged figure for the same model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _machine

from siamface.service import RUNTIMES

REPO = Path(__file__).resolve().parents[1]


def _siamface(*argv: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "siamface.cli.main", *argv], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw")
    p.add_argument("--cache", type=Path, default=REPO / ".cache" / "faces")
    p.add_argument("--out", type=Path, default=REPO / ".cache" / "bench-evaluate")
    p.add_argument("--model", default=None)
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="inference runtime (onnx*: needs `siamface export --format onnx`)")
    args = p.parse_args()
    if not (args.lfw / "pairs.txt").is_file():
        print(f"LFW not found at {args.lfw}", file=sys.stderr)
        return 2
    command = ["evaluate", "--data", str(args.lfw), "--lfw-pairs", str(args.lfw / "pairs.txt"),
               "--out", str(args.out), "--cache", str(args.cache), "--no-progress"]
    if args.model:
        command += ["--model", args.model]
    command += ["--runtime", args.runtime]
    print(_machine.describe())
    fill = _siamface(*command)
    print(f"first run (fills whatever the caches lack): {fill:.1f} s")
    _siamface("cache", "clear", "--only", "embeddings", "--cache", str(args.cache))
    crops_only = _siamface(*command)
    both = _siamface(*command)
    metrics = json.loads((args.out / "metrics.json").read_text())
    k = metrics["verification"]["kfold"]
    print(f"6,000 LFW pairs from cached crops alone: {crops_only:.1f} s")
    print(f"6,000 LFW pairs from cached crops and embeddings: {both:.1f} s")
    print(_machine.describe())
    print(f"10-fold accuracy {100 * k['mean']:.2f}% +- {100 * k['std']:.2f} "
          f"(model {metrics['model']['description']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
