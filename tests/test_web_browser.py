"""The web UI in a real browser: ``siamface serve`` runs as a subprocess on a free loopback
port and headless Chromium (which resolves no host but 127.0.0.1) drives it like a user:
two LFW photos of one person give MATCH with both genders, an impostor pair NO MATCH, and a
small zip runs the dataset test up to its dashboard and report. Every request the page made
went to the server. Screenshots are kept in .artifacts/ (web-verify.png, web-impostor.png,
web-dataset.png).

Needs LFW (skipped without it). Skipped when Playwright or Chromium is missing, unless
SIAMFACE_REQUIRE_BROWSER=1 (as CI sets it), where that is a failure."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from _browser import OFFLINE_ARGS, chromium
from conftest import lfw_image

pytest.importorskip("gradio")
pytest.importorskip("fastapi")

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / ".artifacts"
GENUINE = (("Aaron_Peirsol", 1), ("Aaron_Peirsol", 2))  # one person, male
IMPOSTOR = (("Aaron_Peirsol", 1), ("Ann_Veneman", 1))  # a man and a woman
DATASET = {"Aaron_Peirsol": (1, 2, 3), "Ann_Veneman": (1, 2), "Abdullah_Gul": (1, 2),
           "Angela_Merkel": (1,)}  # 8 images of 4 persons
RESULT = "#verdict .siamface-verdict, #verify-message .siamface-error"
GENDER = re.compile(r"^(male|female) \d{1,3}%$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"siamface serve exited with {process.returncode}:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url + "api/v1/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"siamface serve did not answer /api/v1/health within {timeout:.0f} s:\n"
                f"{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``siamface serve`` on a free loopback port, with its own Gradio and temp folders."""
    root = tmp_path_factory.mktemp("serve")
    gradio_tmp, tmp = root / "gradio", root / "tmp"
    gradio_tmp.mkdir()
    tmp.mkdir()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(gradio_tmp), "TMPDIR": str(tmp),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("SIAMFACE_API_KEY", None)
    port = free_port()
    log = root / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "siamface.cli.main", "serve", "--port", str(port),
             "--host", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=root)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_healthy(url, process, log)
        yield {"url": url, "gradio_tmp": gradio_tmp, "tmp": tmp, "log": log}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(server):
    with chromium(OFFLINE_ARGS) as instance:
        yield instance


class Page:
    """A fresh page on the app that records every request it makes."""

    def __init__(self, browser, url: str):
        self.url = url
        self.page = browser.new_page(viewport={"width": 1200, "height": 900},
                                     accept_downloads=True)
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("#verify-button", timeout=60_000)

    def foreign_requests(self) -> list[str]:
        local = (self.url, self.url.replace("http://", "ws://"), "data:", "blob:")
        return [u for u in self.requests if not u.startswith(local)]

    def upload(self, elem_id: str, *paths: Path) -> None:
        self.page.locator(f"#{elem_id} input[type=file]").set_input_files(
            [str(p) for p in paths])

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()

    def image_loaded(self, elem_id: str) -> bool:
        return self.page.evaluate(
            "id => { const i = document.querySelector('#' + id + ' img');"
            " return !!i && i.complete && i.naturalWidth > 0; }", elem_id)

    def close(self) -> None:
        self.page.close()


def verify_pair(browser, server, lfw: Path, pair, screenshot: Path) -> dict:
    page = Page(browser, server["url"])
    try:
        (name_a, index_a), (name_b, index_b) = pair
        page.upload("photo-a", lfw_image(lfw, name_a, index_a))
        page.upload("photo-b", lfw_image(lfw, name_b, index_b))
        for elem in ("photo-a", "photo-b"):  # both uploads finished and shown
            page.page.wait_for_function(
                "id => { const i = document.querySelector('#' + id + ' img');"
                " return !!i && i.complete && i.naturalWidth > 0; }", arg=elem,
                timeout=60_000)
        page.page.click("#verify-button")
        page.page.wait_for_selector(RESULT, timeout=120_000)
        page.page.wait_for_function(
            "() => document.querySelector('#face-b img') !== null", timeout=60_000)
        shown = {
            "verdict": page.text("#verdict"),
            "distance": page.text("#distance"),
            "gender_a": page.text("#gender-a b"),
            "gender_b": page.text("#gender-b b"),
            "message": page.text("#verify-message"),
            "note": page.text("#verify-note"),
            "images": [page.image_loaded(e) for e in ("face-a", "face-b", "verify-figure")],
        }
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(screenshot), full_page=True)
        shown["foreign"] = page.foreign_requests()
        shown["requests"] = len(page.requests)
        return shown
    finally:
        page.close()


@pytest.mark.slow
@pytest.mark.lfw
def test_verify_genuine_pair_in_a_browser(lfw_dir, browser, server):
    shown = verify_pair(browser, server, lfw_dir, GENUINE, ARTIFACTS / "web-verify.png")
    assert shown["message"] == "", shown
    assert shown["verdict"] == "MATCH", shown
    assert re.match(r"distance \d\.\d{3} ≤ threshold \d\.\d{3}", shown["distance"]), shown
    for key in ("gender_a", "gender_b"):
        assert GENDER.match(shown[key]) and shown[key].startswith("male "), shown
    assert shown["note"] == ""  # both faces detected: no fallback note
    assert all(shown["images"]), shown
    assert shown["requests"] > 5 and shown["foreign"] == [], shown["foreign"]
    assert (ARTIFACTS / "web-verify.png").stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.lfw
def test_verify_impostor_pair_in_a_browser(lfw_dir, browser, server):
    shown = verify_pair(browser, server, lfw_dir, IMPOSTOR, ARTIFACTS / "web-impostor.png")
    assert shown["message"] == "", shown
    assert shown["verdict"] == "NO MATCH", shown
    assert re.match(r"distance \d\.\d{3} > threshold \d\.\d{3}", shown["distance"]), shown
    assert GENDER.match(shown["gender_a"]) and shown["gender_a"].startswith("male "), shown
    assert GENDER.match(shown["gender_b"]) and shown["gender_b"].startswith("female "), shown
    assert all(shown["images"]), shown
    assert shown["foreign"] == [], shown["foreign"]


@pytest.mark.slow
def test_example_photos_in_a_browser(browser, server):
    """The shipped Kofi Annan pair from the Examples (no LFW needed); the top of the page is
    kept as .artifacts/verify-tab.png, the README's screenshot (docs/verify-tab.png is that
    file reduced to 256 colours)."""
    page = Page(browser, server["url"])
    try:
        page.page.locator("#verify-examples tbody tr").first.click()
        for elem in ("photo-a", "photo-b"):
            page.page.wait_for_function(
                "id => { const i = document.querySelector('#' + id + ' img');"
                " return !!i && i.complete && i.naturalWidth > 0; }", arg=elem,
                timeout=60_000)
        page.page.click("#verify-button")
        page.page.wait_for_selector(RESULT, timeout=120_000)
        page.page.wait_for_function(
            "() => { const i = document.querySelector('#verify-figure img');"
            " return !!i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
        assert page.text("#verify-message") == ""
        assert page.text("#verdict") == "MATCH"
        assert page.text("#gender-a b").startswith("male ")
        assert page.text("#gender-b b").startswith("male ")
        bottom = page.page.evaluate(
            "() => Math.max(...['#verify-figure', '#crop', '#fallback'].map(s => {"
            " const e = document.querySelector(s);"
            " return Math.max(e.getBoundingClientRect().bottom,"
            " e.parentElement.getBoundingClientRect().bottom) + window.scrollY; }))")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(ARTIFACTS / "verify-tab.png"), full_page=True,
                             clip={"x": 0, "y": 0, "width": 1200, "height": bottom + 16})
        assert page.foreign_requests() == [], page.foreign_requests()
    finally:
        page.close()


def dataset_zip(lfw: Path, target: Path) -> Path:
    """A flat zip: ``<person>_<n>.jpg`` (the person id is the name up to the first ``_``)."""
    with zipfile.ZipFile(target, "w") as zf:
        for name, indices in DATASET.items():
            for index in indices:
                zf.write(lfw_image(lfw, name, index), f"{name.replace('_', '')}_{index}.jpg")
    return target


@pytest.mark.slow
@pytest.mark.lfw
def test_dataset_test_in_a_browser(lfw_dir, browser, server, tmp_path):
    archive = dataset_zip(lfw_dir, tmp_path / "faces.zip")
    page = Page(browser, server["url"])
    try:
        page.page.get_by_role("tab", name="Dataset test").click()
        page.upload("dataset-zip", archive)
        page.page.wait_for_function(
            "() => document.querySelector('#dataset-zip').innerText.includes('faces.zip')",
            timeout=60_000)
        for elem, value in (("dataset-pairs", "8"), ("dataset-samples-count", "4")):
            box = page.page.locator(f"#{elem} input[type=number]")
            box.fill(value)
            box.press("Enter")
        page.page.click("#dataset-button")
        page.page.wait_for_selector(
            "#dataset-dashboard img, #dataset-message .siamface-error", timeout=300_000)
        assert page.text("#dataset-message") == ""
        page.page.wait_for_function(
            "() => { const i = document.querySelector('#dataset-dashboard img');"
            " return !!i && i.complete && i.naturalWidth > 600; }", timeout=60_000)
        assert page.image_loaded("dataset-samples")
        figures = page.text("#dataset-figures")
        assert re.search(r"images / persons\s+8 / 4", figures), figures
        assert re.search(r"pairs \(genuine / impostor\)\s+8 \(4 / 4\)", figures), figures
        assert re.search(r"accuracy\s+\d+\.\d%", figures), figures
        with page.page.expect_download(timeout=60_000) as download:
            page.page.click("#dataset-report")
        report = tmp_path / "report.html"
        download.value.save_as(report)
        text = report.read_text(encoding="utf-8")
        assert text.lstrip().lower().startswith("<!doctype html") and 'id="dashboard"' in text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(ARTIFACTS / "web-dataset.png"), full_page=True)
        assert page.foreign_requests() == [], page.foreign_requests()
    finally:
        page.close()
    # the zip was extracted into a private folder removed after the run; the report lives
    # in Gradio's upload folder only (removed with the uploads)
    assert list(server["tmp"].rglob("*.jpg")) == [] and list(server["tmp"].rglob("*.html")) == []
    assert len(list(server["gradio_tmp"].glob("siamface-*/report.html"))) == 1
