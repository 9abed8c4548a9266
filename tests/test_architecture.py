"""The core library never imports the trainer, the CLI or a web app."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "siamface", "siamface.io", "siamface.detect", "siamface.align", "siamface.faces",
    "siamface.backbones", "siamface.model", "siamface.checkpoint", "siamface.losses",
    "siamface.metrics", "siamface.data", "siamface.cache", "siamface.service",
    "siamface.augment",
]


def test_core_does_not_import_apps():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "apps = sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['siamface', 'train'], ['siamface', 'cli'], ['siamface', 'web']))\n"
        "print(','.join(apps))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


def test_importing_siamface_is_light():
    code = "import siamface, sys; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
