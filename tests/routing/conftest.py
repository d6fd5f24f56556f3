from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.routing.helpers import STARTED


@pytest.fixture(autouse=True)
async def _stop_routers() -> AsyncIterator[None]:
    yield
    while STARTED:
        await STARTED.pop().stop()
