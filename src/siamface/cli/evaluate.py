"""``siamface evaluate --data DIR --out DIR``: the figures, dashboard, samples and an HTML
report of a model on a dataset (LFW protocol pairs, generated pairs, distorted copies and
per-group tables)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from siamface.cli._common import (
    add_model_arguments,
    load_service,
    positive_int,
    report_skipped,
)

__all__ = ["add_data_arguments", "add_parser", "run"]


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Where the pairs come from and how faces are cached (shared with ``calibrate``)."""
    from siamface.data import LAYOUTS

    p.add_argument("--data", required=True, metavar="DIR",
                   help="dataset folder, CSV manifest, or .zip of images")
    p.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="dataset layout (default: detected); flat: person id = file name up "
                        "to the first '_' or '-'")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pairs", type=positive_int, default=3000, metavar="N",
                       help="generate N pairs, half genuine (default: 3000)")
    which.add_argument("--lfw-pairs", metavar="FILE", default=None,
                       help="score the pairs of an LFW pairs file (pairs.txt: 10 folds)")
    p.add_argument("--skip-missing", action="store_true",
                   help="leave out pairs whose images are missing, and count them")
    p.add_argument("--distorted", metavar="DIR", default=None,
                   help="a `siamface distort` copy of --data: each pair again with its second "
                        "image distorted, per kind")
    p.add_argument("--seed", type=int, default=0, help="seed of generated pairs (default: 0)")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="crop and embedding cache (default: $SIAMFACE_DATA_CACHE or "
                        "~/.cache/siamface/faces)")
    p.add_argument("--no-cache", action="store_true",
                   help="keep no crops or embeddings on disk")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show progress bars (default: on)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                   help="processes detecting and embedding faces (default: the number of "
                        "CPUs; 1: this process only)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="figures, dashboard and HTML report on a dataset",
                       description=__doc__)
    add_data_arguments(p)
    p.add_argument("--groups", nargs="+", default=[], metavar="COLUMN",
                   help="per-group tables: gender, distortion, or a column of the CSV manifest "
                        "(gender is always reported where known)")
    p.add_argument("--group-pairs", type=positive_int, default=1000, metavar="N",
                   help="pairs drawn inside each group (default: 1000)")
    p.add_argument("--threshold", type=float, default=None,
                   help="operating threshold (default: the model's calibrated one)")
    p.add_argument("--samples", type=int, default=16, metavar="N",
                   help="visual sample pairs in samples.png (default: 16; 0: none)")
    p.add_argument("--errors-first", action="store_true",
                   help="show wrongly verified pairs first among the samples")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default: 1000; 0: none)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for metrics.json, dashboard.png, samples.png, report.html")
    add_model_arguments(p)
    p.set_defaults(run=run)


def options_from(args: argparse.Namespace, groups: dict):
    from siamface.evaluation.run import EvaluationOptions

    return EvaluationOptions(
        n_pairs=args.pairs, seed=args.seed, threshold=getattr(args, "threshold", None),
        distorted=Path(args.distorted) if args.distorted else None, groups=groups,
        group_pairs=getattr(args, "group_pairs", 1000), samples=getattr(args, "samples", 0),
        errors_first=getattr(args, "errors_first", False),
        bootstrap=getattr(args, "bootstrap", 0),
        cache_dir=Path(args.cache) if args.cache else None, use_cache=not args.no_cache,
        progress=args.progress, workers=args.workers)


def run(args: argparse.Namespace) -> int:
    from siamface.evaluation.data import open_evaluation_data
    from siamface.evaluation.run import evaluate
    from siamface.report import write_report

    with open_evaluation_data(args.data, layout=args.layout, pairs_file=args.lfw_pairs,
                              skip_missing=args.skip_missing, groups=args.groups) as data:
        service = load_service(args, lazy=True)  # cached embeddings need no network
        evaluation = evaluate(service, data.dataset, pairs=data.pairs, folds=data.folds,
                              data_root=data.root, options=options_from(args, data.groups),
                              data_description=data.description)
        written = write_report(evaluation, Path(args.out), samples=args.samples > 0)
    print_summary(evaluation.metrics)
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    skipped = list(data.skipped_lines)
    counts = evaluation.metrics["data"]
    if counts["images_without_face"] or counts["images_unreadable"]:
        skipped.append((str(args.data), (
            f"{counts['images_without_face']} image(s) without a face and "
            f"{counts['images_unreadable']} unreadable (their pairs have no verdict and count "
            "as NO MATCH)")))
    return report_skipped("evaluate", skipped, "input")


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _ci(ci) -> str:
    return "" if not ci else f" [95% CI {100 * ci[0]:.2f}-{100 * ci[1]:.2f}]"


def _retried(row: dict) -> str:
    rate = row.get("retry_detection_rate")
    return f" (by a retry {_pct(rate)})" if rate else ""


def print_summary(m: dict, out=None) -> None:
    """The headline figures of a metrics dict, as text."""
    out = out or sys.stdout
    v, data, t = m["verification"], m["data"], m["threshold"]
    print(f"{data.get('description', data.get('path'))}: {data['pairs']} pairs "
          f"({data['genuine']} genuine), {data['images']} images, {data['persons']} persons",
          file=out)
    print(f"model: {m['model']['description']}; threshold {t['value']:.4f} ({t['source']})",
          file=out)
    if v.get("kfold"):
        k = v["kfold"]
        print(f"verification {k['folds']}-fold accuracy: {_pct(k['mean'])} +- "
              f"{100 * k['std']:.2f} (threshold chosen on the other folds)", file=out)
    print(f"at the threshold: accuracy {_pct(v['accuracy'])}{_ci(v.get('accuracy_ci'))}, "
          f"FMR {_pct(v['fmr'])}, FNMR {_pct(v['fnmr'])}, macro F1 {v['macro_f1']:.4f}",
          file=out)
    if v.get("auc") is not None:
        print(f"AUC {v['auc']:.4f}, EER {_pct(v['eer'])}", file=out)
        for far, row in v["tar_at_far"].items():
            flag = (f"  (rests on {row['false_accepts']} false accepts: too few)"
                    if row["few_false_accepts"] else f"  ({row['false_accepts']} false accepts)")
            print(f"TAR at FAR {far}: {_pct(row['tar'])}{_ci(row.get('ci'))}{flag}", file=out)
    if v.get("no_verdict_pairs"):
        print(f"{v['no_verdict_pairs']} pairs without a verdict (a face absent): counted as "
              "NO MATCH", file=out)
    g = m.get("gender")
    if g:
        per = ", ".join(f"{name} P {c['precision']:.3f} R {c['recall']:.3f} F1 {c['f1']:.3f} "
                        f"(n={c['support']})" for name, c in g["per_class"].items())
        print(f"gender: accuracy {_pct(g['accuracy'])}, balanced {_pct(g['balanced_accuracy'])}"
              f", macro F1 {g['macro_f1']:.4f}; {per}", file=out)
    for kind, row in (m.get("distortions") or {}).items():
        extra = f", k-fold {_pct(row['kfold']['mean'])}" if row.get("kfold") else ""
        print(f"  {kind:14s} {row['pairs']:6d} pairs  accuracy {_pct(row['accuracy'])}"
              f"{_ci(row.get('accuracy_ci'))}{extra}  detected {_pct(row['detection_rate'])}"
              f"{_retried(row)}", file=out)
    for column, table in (m.get("groups") or {}).items():
        print(f"by {column}: FMR worst/best {table['ratios'].get('fmr')}, FNMR worst/best "
              f"{table['ratios'].get('fnmr')}", file=out)
        for value, row in table["groups"].items():
            print(f"  {value:16s} {row['pairs']:5d} pairs  accuracy {_pct(row['accuracy'])}  "
                  f"FMR {_pct(row['fmr'])}  FNMR {_pct(row['fnmr'])}", file=out)
