"""Headless Chromium for the browser tests (Debian's package, driven by Playwright).

Missing Playwright or Chromium skips a browser test, unless SIAMFACE_REQUIRE_BROWSER=1 (as CI
sets it), where that is a failure. ``/usr/lib/chromium/chromium`` is the binary itself: the
``/usr/bin/chromium`` wrapper adds extension flags."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("SIAMFACE_CHROMIUM", "/usr/lib/chromium/chromium"))
# the browser itself resolves no host name but the loopback address: nothing can leave
OFFLINE_ARGS = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",)


def unavailable(reason: str) -> None:
    """Skip (or, with SIAMFACE_REQUIRE_BROWSER=1, fail) a test that needs the browser."""
    if os.environ.get("SIAMFACE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (SIAMFACE_REQUIRE_BROWSER=1: browser tests are mandatory)")
    pytest.skip(f"{reason}; set SIAMFACE_REQUIRE_BROWSER=1 to make this a failure")


@contextlib.contextmanager
def chromium(args: Sequence[str] = ()) -> Iterator:
    """A launched headless Chromium (a Playwright ``Browser``), closed afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"playwright is not importable ({exc}); pip install 'playwright>=1.40'")
    if not CHROMIUM.is_file():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set "
                    "SIAMFACE_CHROMIUM)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=list(args))
        try:
            yield instance
        finally:
            instance.close()
