"""The example photos shipped in the package, ``make demo-cli`` run on them and ``make demo``
serving the web app (neither needs ../shared)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from siamface import examples
from siamface.errors import UnknownNameError
from siamface.io import load_image

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["astronaut", "kofi_annan_1", "kofi_annan_2", "serena_williams_1"]


def test_examples_are_small_credited_photos():
    assert examples.names() == SHIPPED
    files = [examples.path(name) for name in SHIPPED]
    assert sum(f.stat().st_size for f in files) < 300_000 and len(files) <= 6
    credits = (Path(examples.__file__).parent / "README.md").read_text(encoding="utf-8")
    for f in files:
        assert f"`{f.name}`" in credits
        assert load_image(f).shape[2] == 3
    assert examples.path("astronaut.jpg") == examples.path("astronaut")
    with pytest.raises(UnknownNameError, match="unknown example photo 'kofi'.*kofi_annan_1"):
        examples.path("kofi")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_cli_runs_on_the_shipped_photos():
    script = Path(sys.prefix) / "bin" / "siamface"
    if not script.is_file():
        pytest.skip(f"no siamface console script in {sys.prefix}; install with `make install`")
    # the Makefile's own recipe, with this interpreter's environment and no install step
    result = subprocess.run(["make", "-s", "-C", str(REPO), "demo-cli", "STAMP=",
                             f"VENV={sys.prefix}"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    verdicts = [line for line in lines if "distance" in line]
    assert verdicts[0].startswith("MATCH ") and verdicts[1].startswith("NO MATCH ")
    genders = {line.split(":")[0].rsplit("/", 1)[-1]: line for line in lines
               if line.startswith("src/siamface/examples/") and "face at" in line}
    assert set(genders) == {"kofi_annan_1.jpg", "kofi_annan_2.jpg", "serena_williams_1.jpg"}
    assert ": male (" in genders["kofi_annan_1.jpg"] and ": male (" in genders["kofi_annan_2.jpg"]
    assert ": female (" in genders["serena_williams_1.jpg"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_serves_the_web_app(tmp_path):
    pytest.importorskip("gradio")
    pytest.importorskip("fastapi")
    script = Path(sys.prefix) / "bin" / "siamface"
    if not script.is_file():
        pytest.skip(f"no siamface console script in {sys.prefix}; install with `make install`")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "TMPDIR": str(tmp_path)}
    env.pop("SIAMFACE_API_KEY", None)
    log = tmp_path / "demo.log"
    url = f"http://127.0.0.1:{port}/"
    with open(log, "wb") as out:  # make and the server in a process group of their own
        demo = subprocess.Popen(["make", "-s", "-C", str(REPO), "demo", "STAMP=",
                                 f"VENV={sys.prefix}", f"PORT={port}"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline, health = time.monotonic() + 180, None
        while health is None and time.monotonic() < deadline and demo.poll() is None:
            try:
                with urllib.request.urlopen(url + "api/v1/health", timeout=5) as response:
                    health = (response.status, response.read())
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        printed = log.read_text(errors="replace")
        assert health is not None, f"make demo never answered /api/v1/health:\n{printed}"
        assert health[0] == 200 and b'"ok"' in health[1]
        with urllib.request.urlopen(url, timeout=30) as response:  # the UI at /
            page = response.read().decode("utf-8", "replace")
        assert response.status == 200 and "<html" in page.lower()
        assert f"http://127.0.0.1:{port}/" in printed  # the address is printed
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
