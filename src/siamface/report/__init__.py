"""Report writers of an evaluation (:class:`siamface.evaluation.result.Evaluation`):

* :func:`dashboard_png` - every plot in one PNG (matplotlib, Agg canvas, no pyplot);
* :func:`samples_png` - tiles of scored pairs (PIL); :func:`order_samples` puts the wrong
  ones first;
* :func:`report_html` - one self-contained HTML page (no script, no request to any host);
* :func:`write_report` - metrics.json, dashboard.png, samples.png and report.html, written
  atomically into a folder.

Part of the core library: imports neither training, the CLI nor the web app.
"""

from __future__ import annotations

from siamface.report._common import jsonable
from siamface.report.dashboard import dashboard_png
from siamface.report.html import SECTION_IDS, report_html
from siamface.report.samples import order_samples, samples_png, verdict_label
from siamface.report.write import REPORT_FILES, write_report

__all__ = [
    "REPORT_FILES",
    "SECTION_IDS",
    "dashboard_png",
    "jsonable",
    "order_samples",
    "report_html",
    "samples_png",
    "verdict_label",
    "write_report",
]
