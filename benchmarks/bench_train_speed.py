"""Training speed on the CPU with the cached fast paths.

1. Stage 1 (heads only) on cached backbone features of all of LFW (13,233 images, views
   orig + flip), the default schedule run to its full ``stage1.epochs`` (20; no early stop):
   target under 30 s on 2 cores.
2. One stage-2 epoch (top 2 groups unlocked) over about 12,000 LFW images on the cached
   trunk activations: target under 5 minutes. The one-off cost of building that cache is
   reported separately (images per second through the frozen trunk).

Uses the chip and trunk caches of ``benchmarks/_lfw_cache.py``; where the chip cache is still
partial, the missing images' rows are copies of cached ones (``--allow-partial``; the timing
does not depend on the pixel values) and the script says so.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/bench_train_speed.py [--allow-partial]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lfw_cache import DEFAULT_CACHE, DEFAULT_LFW, lfw_records, trunk_cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--allow-partial", action="store_true")
    parser.add_argument("--stage2-images", type=int, default=12000)
    args = parser.parse_args(argv)

    from siamface.data import FaceDataset, person_split
    from siamface.train import apply_overrides, load_config, train
    from siamface.train.data import TrainData
    from siamface.train.features import GroupRunner, advance, trunk_activations
    from siamface.train.run import build_model, validation_views

    print(f"torch threads: {torch.get_num_threads()}")
    dataset, chips, avail = lfw_records(args.lfw, args.cache, allow_partial=args.allow_partial)
    base = apply_overrides(load_config(None), ["run.progress=false", "data.layout=lfw"])
    model = build_model(base)
    runner = GroupRunner(model.backbone)
    b2 = runner.boundary(base.stage2.unlocked_groups)
    val_views = len(validation_views(base))

    # one-off trunk cache rate on real chips
    sample = np.flatnonzero(avail)[:256]
    t = time.perf_counter()
    trunk_activations(model.backbone, runner, np.asarray(chips[sample]), b2,
                      views=("orig", "flip"))
    rate = len(sample) / (time.perf_counter() - t)
    print(f"trunk cache build: {rate:.1f} images/s (2 views each) -> "
          f"{args.stage2_images / rate / 60:.1f} min once for {args.stage2_images} images")

    store, done = trunk_cache(model, chips, avail, b2, args.cache, verbose=False)
    have = np.flatnonzero(avail & done)
    rows = np.arange(len(dataset))
    if len(have) < len(dataset):
        print(f"note: {len(have)}/{len(dataset)} images cached; the other rows reuse cached "
              "rows (timing only)")
        rows = np.where(avail & done, rows, have[rows % len(have)])
    acts = torch.from_numpy(np.asarray(store[rows]))
    empty = np.zeros((0, 150, 150, 3), np.uint8)
    n = len(runner)

    train_ds, val_ds = person_split(dataset, 0.1, seed=0)
    index = {r.path: i for i, r in enumerate(dataset)}
    tr = np.array([index[r.path] for r in train_ds])
    va = np.array([index[r.path] for r in val_ds])
    feats = advance(runner, acts, b2, n)

    def timed_train(overrides: list[str], train_set, boundary: int, train_acts, val_acts):
        cfg = apply_overrides(base, overrides)
        started = time.perf_counter()
        result = train(cfg, data=TrainData(train_set, val_ds, empty, empty),
                       activations={boundary: (train_acts, val_acts[:, :val_views])},
                       model=build_model(cfg))
        return result, time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        r1, s1 = timed_train(["stage2.enabled=false", f"stage1.patience={base.stage1.epochs}",
                              f"run.out_dir={tmp}/s1"], train_ds, n, feats[tr], feats[va])
        print(f"stage 1: {len(r1.history)} epochs on {len(train_ds)} training images "
              f"(x2 views) in {s1:.1f} s (target < 30 s) -> {'PASS' if s1 < 30 else 'FAIL'}")

        sub = FaceDataset(list(train_ds)[:args.stage2_images], name="LFW subset")
        r2, s2 = timed_train(["stage1.enabled=false", "stage2.epochs=1", f"run.out_dir={tmp}/s2"],
                             sub, b2, acts[tr[:len(sub)]], acts[va])
        print(f"stage 2: 1 epoch on {len(sub)} images (top {base.stage2.unlocked_groups} "
              f"groups) in {s2:.1f} s (target < 300 s) -> {'PASS' if s2 < 300 else 'FAIL'}; "
              f"train loss {r2.history[-1]['train_total']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
