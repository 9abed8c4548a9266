"""Fit a checkpoint's fog gate on LFW faces it was not trained on and write the checkpoint
with it (``siamface.chip_restore``: a face whose embedding the gate flags is dehazed and
embedded again).

Reproducible command for the shipped default (repository root, CPU, about 2 minutes):

    PYTHONPATH=src .venv/bin/python scripts/fit_fog_gate.py

The faces are those of the people ``scripts/train_default.py`` held out from training (the
same person split of configs/lfw.yaml), less the people of LFW View 2 fold 0, so that
``benchmarks/bench_chip_restore.py`` measures the gate on faces it was not fitted on. The gate
is fitted as the trainer fits it (``siamface.train.run.fit_gates``); the tensors are copied
unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _lfw_cache import DEFAULT_CACHE, DEFAULT_LFW, lfw_records

ASSET = REPO / "src" / "siamface" / "assets" / "default-dlib-resnet.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "lfw.yaml")
    parser.add_argument("--model", type=Path, default=ASSET)
    parser.add_argument("--out", type=Path, default=ASSET)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="config override, as train_default.py takes it (e.g. data.chip_restore)")
    args = parser.parse_args(argv)

    from siamface.checkpoint import load_checkpoint, with_preprocessing
    from siamface.data import FaceDataset, person_split, read_view2
    from siamface.train import apply_overrides, load_config
    from siamface.train.run import GATE_FACES, fit_gates

    config = apply_overrides(load_config(args.config), [
        f"data.root={args.lfw}", "data.layout=lfw", f"data.val_fraction={args.val_fraction}",
        *args.overrides])
    dataset, chips, available = lfw_records(args.lfw, args.cache)
    use = np.flatnonzero(available)
    data_all = FaceDataset([dataset[int(i)] for i in use], name="LFW")
    _, val_ds = person_split(data_all, config.data.val_fraction, seed=config.run.seed)
    fold0 = {name for q in read_view2(args.lfw) if q.fold == 0 for name in (q.name1, q.name2)}
    index = {r.path: int(i) for r, i in zip(data_all, use)}
    rows = [index[r.path] for r in val_ds if r.person_id not in fold0]
    model, info = load_checkpoint(args.model)
    flip = bool(info.preprocessing.get("flip_average", False))
    config = apply_overrides(config, [f"model.flip_average={str(flip).lower()}"])
    gates = fit_gates(config, model, np.stack([np.asarray(chips[i]) for i in rows]))
    if not gates:
        print(f"too few faces to fit a gate ({len(rows)})", file=sys.stderr)
        return 1
    pre = {**info.preprocessing, "chip_restore": list(config.data.chip_restore),
           "embedding_gates": [g.to_dict() for g in gates]}
    new = with_preprocessing(args.model, args.out, pre)
    gate = gates[0]
    print(f"fog gate fitted on {min(len(rows), GATE_FACES)} of {len(rows)} held-out faces "
          f"(people outside View 2 fold 0); cutoff {gate.cutoff:.3f}; wrote {args.out} "
          f"(format {new.format_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
