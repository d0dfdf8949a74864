"""Debian's Chromium under Playwright, for the console's browser tests: one way to start it.

Start it per test and after the database is set up: Playwright's sync API runs an event loop
on this thread, and while it runs Django hands this thread a different connection object (one
that cannot restore the serialized database between tests)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connections

CHROMIUM = "/usr/bin/chromium"
#: Screenshots every browser test leaves behind (CI keeps them).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium; Django's async guard lifted while it runs (the test's own database
    calls stay synchronous) and the connection the test used meanwhile closed after."""
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium") or Path(CHROMIUM).exists(), (
        "Debian's chromium is needed: apt-get install chromium"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            yield browser
            browser.close()
            connections.close_all()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
