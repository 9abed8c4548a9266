"""Shared fixtures: the local LFW copy and test-only reference files."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LFW_DIR = Path(os.environ.get("SIAMFACE_LFW", REPO.parent / "shared" / "data" / "lfw"))
TEST_CACHE = Path(os.environ.get("SIAMFACE_TEST_CACHE", REPO / ".cache" / "tests"))
FACENET_PYTORCH_WHEEL = "facenet-pytorch==2.6.0"


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    if not (LFW_DIR / "images").is_dir():
        pytest.skip(f"LFW not found at {LFW_DIR} (set SIAMFACE_LFW to its folder)")
    return LFW_DIR


def lfw_image(lfw: Path, name: str, index: int) -> Path:
    return lfw / "images" / name / f"{name}_{index:04d}.jpg"


@pytest.fixture(scope="session")
def facenet_pytorch_dir() -> Path:
    """facenet-pytorch's wheel, unpacked (test-only reference; never imported as a package:
    it pins an old torch). Downloaded once into .cache/tests with pip."""
    target = TEST_CACHE / "facenet_pytorch_wheel"
    marker = target / "facenet_pytorch" / "data" / "onet.pt"
    if not marker.exists():
        download = TEST_CACHE / "wheels"
        download.mkdir(parents=True, exist_ok=True)
        wheels = list(download.glob("facenet_pytorch-*.whl"))
        if not wheels:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                 "-d", str(download), FACENET_PYTORCH_WHEEL],
                capture_output=True, text=True, check=False,
            )
            wheels = list(download.glob("facenet_pytorch-*.whl"))
            if result.returncode != 0 or not wheels:
                pytest.skip(f"cannot download {FACENET_PYTORCH_WHEEL}: {result.stderr[-300:]}")
        tmp = target.with_suffix(".partial")
        with zipfile.ZipFile(wheels[0]) as zf:
            zf.extractall(tmp)
        tmp.rename(target)
    return target / "facenet_pytorch"
