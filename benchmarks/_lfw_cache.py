"""Chips of every LFW image, computed once and kept on disk for the training benchmarks and
``scripts/train_default.py`` (``.cache/lfw-chips/<pipeline hash>/``; resumable, chunked).

Run directly to fill the cache ahead of time:
    PYTHONPATH=src .venv/bin/python benchmarks/_lfw_cache.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"
DEFAULT_CACHE = REPO / ".cache"
CHUNK = 256


def pipeline_key(pipeline) -> str:
    params = json.dumps(pipeline.params(), sort_keys=True, default=str)
    return hashlib.sha256(params.encode()).hexdigest()[:16]


def lfw_chips(lfw: Path = DEFAULT_LFW, cache: Path = DEFAULT_CACHE, *, verbose: bool = True
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(relative paths, chips (N,150,150,3) uint8 memmap, detected (N,) bool) for all LFW."""
    from siamface.faces import FacePipeline

    pipeline = FacePipeline(crop="aligned")
    folder = cache / "lfw-chips" / pipeline_key(pipeline)
    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted(str(p.relative_to(lfw / "images")) for p in (lfw / "images").glob("*/*.jpg"))
    n = len(paths)
    (folder / "params.json").write_text(json.dumps(pipeline.params(), default=str, indent=1))
    (folder / "paths.json").write_text(json.dumps(paths))
    chips_file = folder / "chips.u8"
    mode = "r+" if chips_file.exists() else "w+"
    chips = np.memmap(chips_file, dtype=np.uint8, mode=mode, shape=(n, 150, 150, 3))
    done_file = folder / "done.npy"
    done = np.load(done_file) if done_file.exists() else np.zeros(n, dtype=np.int8)
    # done: 0 = not yet, 1 = detected, 2 = centre fallback
    todo = np.flatnonzero(done == 0)
    start = time.time()
    for k in range(0, len(todo), CHUNK):
        idx = todo[k:k + CHUNK]
        crops = pipeline.crop_batch([lfw / "images" / paths[i] for i in idx])
        for i, c in zip(idx, crops):
            chips[i] = c.chip
            done[i] = 1 if c.detected else 2
        chips.flush()
        np.save(done_file, done)
        if verbose:
            rate = (k + len(idx)) / (time.time() - start)
            print(f"lfw chips: {int((done > 0).sum())}/{n} ({rate:.1f} img/s)", file=sys.stderr,
                  flush=True)
    chips = np.memmap(chips_file, dtype=np.uint8, mode="r", shape=(n, 150, 150, 3))
    return paths, chips, done == 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    paths, chips, detected = lfw_chips(args.lfw, args.cache)
    print(f"{len(paths)} chips, {int(detected.sum())} detected")
