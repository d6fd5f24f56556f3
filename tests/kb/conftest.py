"""Fixtures of the knowledge base's tests: services on SQLite only (the search speed test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from threadline.services import Services


@pytest.fixture
async def sqlite_services(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    svc = Services.build(make_settings(sqlite_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
