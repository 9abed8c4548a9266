"""``siamface calibrate --data DIR --out M2``: choose the verification threshold on your own
pairs (Youden's J, best accuracy, or a target false-accept rate) and write a copy of the
checkpoint that carries it, with what data and method chose it in its metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

from siamface.cli._common import add_model_arguments, load_service, report_skipped
from siamface.cli.evaluate import add_data_arguments, options_from


def _far(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from siamface.metrics import THRESHOLD_METHODS

    p = sub.add_parser("calibrate", help="choose the verification threshold on a dataset",
                       description=__doc__)
    add_data_arguments(p)
    p.add_argument("--method", choices=(*THRESHOLD_METHODS, "region"), default="youden",
                   help="youden: max TPR-FPR; accuracy: max accuracy; far: the loosest "
                        "threshold whose false-accept rate is at most --far; region: "
                        "thresholds per region of the embedding space, each admitting --far of "
                        "its impostors (fitted on every image; default: youden)")
    p.add_argument("--far", type=_far, default=1e-3,
                   help="target false-accept rate for --method far / region (default: 1e-3)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the calibrated checkpoint to write (.safetensors)")
    add_model_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from siamface.errors import ConfigError
    from siamface.evaluation.calibrate import calibrate, save_calibrated
    from siamface.evaluation.data import open_evaluation_data

    if Path(args.out).suffix != ".safetensors":
        raise ConfigError(f"--out {args.out}: a checkpoint file name ends in .safetensors")
    with open_evaluation_data(args.data, layout=args.layout, pairs_file=args.lfw_pairs,
                              skip_missing=args.skip_missing) as data:
        service = load_service(args, lazy=True)  # cached embeddings need no network
        result = calibrate(service, data.dataset, method=args.method, far=args.far,
                           pairs=data.pairs, folds=data.folds, data_root=data.root,
                           options=options_from(args, {}), data_description=data.description)
    info = save_calibrated(service, result, args.out)
    b, a = result.before, result.after
    print(f"calibrated on {result.record['pairs']} pairs ({result.record['genuine']} genuine)"
          f" with {args.method}: threshold {result.previous:.4f} -> {result.threshold:.4f}")
    for name, r, t in (("before", b, result.previous), ("after", a, result.threshold)):
        print(f"  {name:6s} threshold {t:.4f}: accuracy {100 * r['accuracy']:.2f}%, "
              f"FMR {100 * (r['fmr'] or 0):.2f}%, FNMR {100 * (r['fnmr'] or 0):.2f}%")
    print(f"wrote {args.out} (threshold source: {info.threshold_source})")
    skipped = list(data.skipped_lines)
    if result.record["pairs_without_verdict"]:
        skipped.append((str(args.data), (f"{result.record['pairs_without_verdict']} pair(s) "
                                         "without a face in both images were left out")))
    return report_skipped("calibrate", skipped, "input")
