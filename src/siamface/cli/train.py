"""``siamface train --config FILE [flags]``: two-stage multi-task training into a run folder.
The config file gives defaults; flags and ``--set section.key=value`` override it."""

from __future__ import annotations

import argparse
import sys

__all__ = ["EXIT_SKIPPED", "add_parser", "overrides_from_args", "run"]

EXIT_SKIPPED = 3  # finished, but some inputs (unreadable images) were skipped


def add_parser(sub: argparse._SubParsersAction) -> None:
    from siamface.data import LAYOUTS

    p = sub.add_parser(
        "train", help="train the heads (stage 1) and the top layer groups (stage 2)",
        description="Two-stage multi-task training (verification + gender). Writes the "
                    "resolved config, per-epoch metrics (CSV, JSON), curves (PNG), a resumable "
                    "training state and self-describing checkpoints into the run folder.")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="YAML config (see configs/); defaults apply where it is silent")
    p.add_argument("--data", metavar="PATH", default=None, help="dataset root (data.root)")
    p.add_argument("--layout", default=None,
                   choices=LAYOUTS,
                   help="dataset layout (data.layout)")
    p.add_argument("--out", metavar="DIR", default=None, help="run folder (run.out_dir)")
    p.add_argument("--seed", type=int, default=None, help="random seed (run.seed)")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="crop cache folder (data.cache_dir)")
    p.add_argument("--device", default=None, help="torch device (run.device)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append",
                   default=[], help="override any config value, e.g. --set stage2.lr=1e-6 "
                   "(repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last completed epoch")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (run.progress)")
    p.set_defaults(run=run)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The explicit flags as a nested config dict (``--set`` values are applied after)."""
    flags = {"data": ("data", "root"), "layout": ("data", "layout"), "out": ("run", "out_dir"),
             "seed": ("run", "seed"), "cache_dir": ("data", "cache_dir"),
             "device": ("run", "device"), "progress": ("run", "progress")}
    out: dict = {}
    for attr, (section, key) in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Train; 0 when every image was used, ``EXIT_SKIPPED`` (3) when the run finished but
    skipped unreadable images. The process group (under ``torchrun``) is always destroyed."""
    import logging

    import torch.distributed as dist

    from siamface.train import apply_overrides, load_config, train
    from siamface.train.config import config_from_dict
    from siamface.train.distributed import shutdown_if_initialized

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = config_from_dict(overrides_from_args(args), load_config(args.config))
    config = apply_overrides(config, args.overrides)
    try:
        result = train(config, resume=args.resume)
        is_main = not dist.is_initialized() or dist.get_rank() == 0
    finally:
        shutdown_if_initialized()
    code = EXIT_SKIPPED if result.skipped else 0
    if not is_main:  # every rank exits alike (torchrun reports a mix as a failure)
        return code
    m = result.metrics
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable image(s) (listed in "
              f"{result.out_dir / 'skipped.txt'}):", file=sys.stderr)
        for path, reason in result.skipped[:20]:
            print(f"  {path}: {reason}", file=sys.stderr)
    print(f"run folder: {result.out_dir}")
    print(f"checkpoint: {result.checkpoint}")
    line = (f"validation: verification accuracy {m['val_accuracy']:.4f} at threshold "
            f"{result.threshold:.4f}")
    if "val_gender_accuracy" in m:
        line += (f"; gender accuracy {m['val_gender_accuracy']:.4f}, balanced "
                 f"{m['val_gender_balanced_accuracy']:.4f}, female F1 {m['val_female_f1']:.4f}")
    print(line)
    return code
