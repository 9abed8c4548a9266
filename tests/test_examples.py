"""The example photos shipped in the package, and ``make demo`` run on them (no ../shared)."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
def test_make_demo_runs_on_the_shipped_photos():
    script = Path(sys.prefix) / "bin" / "siamface"
    if not script.is_file():
        pytest.skip(f"no siamface console script in {sys.prefix}; install with `make install`")
    # the Makefile's own recipe, with this interpreter's environment and no install step
    result = subprocess.run(["make", "-s", "-C", str(REPO), "demo", "STAMP=", f"VENV={sys.prefix}"],
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
