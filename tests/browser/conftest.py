"""Browser fixtures: Debian's Chromium (/usr/bin/chromium) driven by Playwright; never a downloaded
browser. Without Chromium these tests skip locally and fail in CI (CI=true), like the other services."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("THREADLINE_TEST_CHROMIUM", "/usr/bin/chromium")
# The flags the machine needs: no sandbox as root, and no background traffic to a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Screenshots taken along the way refresh docs/screenshots only when asked (THREADLINE_SCREENSHOTS=1),
# so running the suite leaves the work tree clean.
SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots" if os.environ.get("THREADLINE_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "threadline-screenshots")


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """A headless Chromium for one test (async Playwright: the test's server runs in the same loop)."""
    if not chromium_available():
        if IN_CI:
            pytest.fail(f"Chromium is required in CI (CI=true) but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
