"""Write an evaluation's report folder: metrics.json, dashboard.png, samples.png, report.html."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from siamface._atomic import atomic_write_bytes, atomic_write_text
from siamface.report._common import jsonable
from siamface.report.dashboard import dashboard_png
from siamface.report.html import report_html
from siamface.report.samples import samples_png

__all__ = ["REPORT_FILES", "write_report"]

logger = logging.getLogger(__name__)

REPORT_FILES = {"metrics": "metrics.json", "dashboard": "dashboard.png",
                "samples": "samples.png", "report": "report.html"}


def write_report(evaluation, out_dir: str | os.PathLike, *, samples: bool = True
                 ) -> dict[str, Path]:
    """Write the report of ``evaluation`` into ``out_dir`` (created when missing) and return
    the paths written, keyed ``metrics``, ``dashboard``, ``samples`` (only when written) and
    ``report``. Each file is written atomically; report.html comes last, so a folder with a
    report.html holds the complete set.

    metrics.json is ``evaluation.metrics`` with numpy values made plain and any NaN / inf
    replaced by null (logged as a warning with their keys): strict JSON, so that every
    reader parses it. The HTML is rendered from the same cleaned metrics. ``samples`` False,
    or an evaluation without samples, writes no samples.png and removes one left in
    ``out_dir`` by an earlier run, so the folder never pairs this report with old samples.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    replaced: list[str] = []
    metrics = jsonable(evaluation.metrics, replaced=replaced)
    if replaced:
        logger.warning("metrics held NaN/inf, written as null: %s", ", ".join(replaced))
    clean = dataclasses.replace(evaluation, metrics=metrics)
    paths: dict[str, Path] = {}

    paths["metrics"] = out / REPORT_FILES["metrics"]
    atomic_write_text(paths["metrics"], json.dumps(metrics, indent=2, allow_nan=False) + "\n")

    dashboard = dashboard_png(clean)
    paths["dashboard"] = out / REPORT_FILES["dashboard"]
    atomic_write_bytes(paths["dashboard"], dashboard)

    tiles = None
    samples_path = out / REPORT_FILES["samples"]
    if samples and clean.samples:
        tiles = samples_png(clean)
        atomic_write_bytes(samples_path, tiles)
        paths["samples"] = samples_path
    elif samples_path.exists():
        samples_path.unlink()

    paths["report"] = out / REPORT_FILES["report"]
    atomic_write_text(paths["report"], report_html(clean, dashboard=dashboard, samples=tiles))
    return paths
