"""report.html in a real browser (headless Chromium through Playwright): it loads nothing
from any host, every section shows, the images decode, the tables have rows. A full-page
screenshot is kept as .artifacts/report.png.

Skipped when Playwright or Chromium is missing, unless SIAMFACE_REQUIRE_BROWSER=1 (as CI
sets it), where that is a failure."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from _browser import chromium
from _report_helpers import HOSTILE, build_evaluation
from siamface import examples
from siamface.report import SECTION_IDS, write_report

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / ".artifacts"


@pytest.fixture(scope="module")
def browser():
    with chromium() as instance:
        yield instance


def open_report(browser, report: Path, screenshot: Path | None = None) -> dict:
    """Open ``report`` and check what every report must hold; returns what the page showed
    (``requests``, ``images``, ``tables``, ``text``) for further checks."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(report.resolve().as_uri(), wait_until="load")
        hosts = [url for url in requests if not url.startswith(("file:", "data:"))]
        assert not hosts, f"the report asked a host for {hosts}"
        present = [ident for ident in SECTION_IDS if page.locator(f"#{ident}").count()]
        for ident in ("model", "data", "threshold", "verification", "gender", "dashboard",
                      "samples"):
            assert ident in present, ident
        for ident in present:
            assert page.locator(f"#{ident}").is_visible(), ident
        images = page.evaluate(
            "Array.from(document.images).map(i => ({complete: i.complete,"
            " width: i.naturalWidth, height: i.naturalHeight, alt: i.alt}))")
        assert images and all(i["complete"] and i["width"] > 0 and i["height"] > 0
                              for i in images), images
        tables = page.evaluate(
            "Array.from(document.querySelectorAll('table')).map(t =>"
            " ({section: t.closest('section') ? t.closest('section').id : null,"
            " rows: t.querySelectorAll('tbody tr').length}))")
        assert tables and all(t["rows"] > 0 for t in tables), tables
        text = page.inner_text("body")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        return {"requests": requests, "images": images, "tables": tables, "text": text,
                "present": present}
    finally:
        page.close()


@pytest.mark.slow
def test_report_in_a_browser(browser, tmp_path):
    evaluation = build_evaluation(distortions=True, groups=True, no_verdict=True,
                                  description=HOSTILE)
    paths = write_report(evaluation, tmp_path / "report")
    shown = open_report(browser, paths["report"], screenshot=ARTIFACTS / "report.png")
    assert shown["requests"][0] == paths["report"].resolve().as_uri()
    assert set(shown["present"]) == set(SECTION_IDS)
    assert {i["alt"] for i in shown["images"]} == {"Dashboard", "Samples"}
    assert HOSTILE in shown["text"]  # shown as text, never run
    assert "rests on" in shown["text"]
    sections = {t["section"] for t in shown["tables"]}
    assert {"model", "data", "verification", "gender", "distortions", "groups"} <= sections
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_report_without_gender_or_samples_in_a_browser(browser, tmp_path):
    evaluation = build_evaluation(gender=False)
    paths = write_report(evaluation, tmp_path / "report", samples=False)
    shown = open_report(browser, paths["report"])
    assert len(shown["images"]) == 1
    assert "no samples in this evaluation" in shown["text"]
    assert "Not available" in shown["text"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("siamface.cli.evaluate") is None,
                    reason="siamface evaluate is not in this tree yet")
def test_evaluate_command_report_in_a_browser(browser, tmp_path, capsys):
    from siamface.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in examples.names():
        shutil.copy(examples.path(name), photos / f"{name}.jpg")
    out = tmp_path / "out"
    rc = main(["evaluate", "--data", str(photos), "--layout", "flat", "--pairs", "6",
               "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["images"] == 4
    shown = open_report(browser, out / "report.html", screenshot=ARTIFACTS / "evaluate.png")
    assert len(shown["images"]) == 2  # dashboard and samples
    assert metrics["model"]["backbone"] in shown["text"]
    assert str(photos) in shown["text"]


def test_gitignore_keeps_artifacts_out():
    lines = (REPO / ".gitignore").read_text().splitlines()
    assert ".artifacts/" in lines
