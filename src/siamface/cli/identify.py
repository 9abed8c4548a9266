"""``siamface identify --gallery DIR --probes DIR``: one-to-many identification. Each probe
image is compared with every enrolled gallery person (Euclidean embedding distance) and the
persons are ranked; the figures are top-1 / top-k accuracy and macro F1, plus open-set figures
(detection-and-identification rate, false-accept rate) with ``--open-set-threshold``."""

from __future__ import annotations

import argparse
import html
import json
import math
from pathlib import Path

from siamface.cli._common import (
    add_model_arguments,
    load_service,
    positive_int,
    print_json,
    report_skipped,
)

HTML_PROBES = 50


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a distance >= 0, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "identify", help="one-to-many: rank gallery persons for each probe image",
        description=__doc__.split(":", 1)[1].strip() if __doc__ else None,
    )
    p.add_argument("--gallery", type=Path, required=True, metavar="DIR",
                   help="enrolled persons: DIR/<person>/*.jpg, or DIR/<person>_<n>.jpg")
    p.add_argument("--probes", type=Path, required=True, metavar="DIR",
                   help="images to identify, in the same layout (the folder or file-name "
                        "prefix is the true person)")
    p.add_argument("--k", type=positive_int, default=5, help="ranks to keep (default: 5)")
    p.add_argument("--mode", choices=("mean", "nearest"), default="mean",
                   help="mean: one template per person (their mean embedding); nearest: a "
                        "person's distance is that of their closest image (default: mean)")
    p.add_argument("--open-set-threshold", type=_threshold, default=None, metavar="T",
                   help="accept a probe's best match only at distance <= T (others are "
                        "'unknown'); reports detection-and-identification and false-accept "
                        "rates, and allows probes of persons not in the gallery")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write results.json and report.html into DIR")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="crop and embedding cache (default: the user cache folder)")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="keep no crops or embeddings between runs")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    add_model_arguments(p)
    p.set_defaults(run=run)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def summary_lines(report: dict) -> list[tuple[str, str]]:
    """(label, value) pairs of the figures, for the console and the HTML report."""
    k = report["k"]
    n = report["enrolled_probes"]
    gallery = (f"{report['gallery_persons']} persons, {report['gallery_images']} images "
               f"({report['mode']})")
    probes = (f"{report['probes']} with a face ({n} of enrolled persons, "
              f"{report['unknown_probes']} unknown)")
    f1 = "n/a" if report["macro_f1"] is None else f"{report['macro_f1']:.4f}"
    lines = [
        ("gallery", gallery),
        ("probes", probes),
        ("Top-1", f"{_pct(report['top1'])} ({report['top1_correct']}/{n})"),
        (f"Top-{k}", f"{_pct(report['topk'])} ({report['topk_correct']}/{n})"),
        ("macro F1", f1),
    ]
    open_set = report.get("open_set")
    if open_set:
        dir_rate = _pct(open_set["detection_identification_rate"])
        far = _pct(open_set["false_accept_rate"])
        lines += [
            ("open-set threshold", f"{open_set['threshold']:g}"),
            ("detection & identification", f"{dir_rate} ({open_set['detected_identified']}/{n})"),
            ("false accepts",
             f"{far} ({open_set['false_accepts']}/{open_set['unknown_probes']})"),
        ]
    return lines


def render_html(data: dict, limit: int = HTML_PROBES) -> str:
    """A self-contained page: the figures and the first ``limit`` probes with their matches."""
    e = html.escape
    figures = "".join(f"<tr><th>{e(a)}</th><td>{e(b)}</td></tr>"
                      for a, b in summary_lines(data["report"]))
    rows = []
    for row in data["probes"][:limit]:
        matches = "".join(
            f"<li class=\"{'hit' if pid == row['true_id'] else ''}\">{e(pid)} "
            f"<span>{d:.4f}</span></li>" for pid, d in zip(row["ranked_ids"], row["distances"]))
        verdict = "right" if row["correct"] else ("wrong" if row["enrolled"] else "unknown")
        rows.append(f"<tr class=\"{verdict}\"><td>{e(row['probe'])}</td><td>{e(row['true_id'])}"
                    f"</td><td>{verdict}</td><td><ol>{matches}</ol></td></tr>")
    more = len(data["probes"]) - limit
    tail = f"<p>... and {more} more probe(s) in results.json</p>" if more > 0 else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>siamface identify</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.wrong td {{ background: #fde8e8; }} tr.unknown td {{ background: #f3f3f3; }}
li.hit {{ font-weight: bold; }} li span {{ color: #666; }} ol {{ margin: 0; }}
</style></head><body>
<h1>siamface identify</h1>
<table>{figures}</table>
<h2>Probes (first {min(limit, len(data["probes"]))})</h2>
<table><tr><th>probe</th><th>true person</th><th>top-1</th><th>ranked matches (distance)</th>
</tr>{"".join(rows)}</table>{tail}
</body></html>
"""


def run(args: argparse.Namespace) -> int:
    from siamface._atomic import atomic_write_text
    from siamface.errors import DatasetError
    from siamface.evaluation.identify import identify_folders, open_identify_folder

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise DatasetError(f"--out {args.out} is a file; give a folder for results.json and "
                           "report.html")
    open_identify_folder(args.gallery, "gallery")  # fail fast, before the model loads
    open_identify_folder(args.probes, "probes")
    service = load_service(args, lazy=True)  # cached embeddings need no network
    result = identify_folders(service, args.gallery, args.probes, k=args.k, mode=args.mode,
                              open_set_threshold=args.open_set_threshold,
                              cache_dir=args.cache, use_cache=args.use_cache,
                              progress=args.progress)
    data = result.to_json()
    if args.out is not None:
        atomic_write_text(args.out / "results.json", json.dumps(data, indent=1) + "\n")
        atomic_write_text(args.out / "report.html", render_html(data))
    if args.json:
        print_json(data)
    else:
        for label, value in summary_lines(result.report):
            print(f"{label + ':':<28} {value}")
        if args.out is not None:
            print(f"wrote {args.out / 'results.json'} and {args.out / 'report.html'}")
    return report_skipped("identify", result.skipped, "image")
