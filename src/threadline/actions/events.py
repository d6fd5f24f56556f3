"""Write events to the outbox in the caller's transaction (published by bus/outbox.py after commit)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import OutboxEventRow
from threadline.domain.events import Audience, Event

_captured: contextvars.ContextVar[list[tuple[Event, Audience]] | None] = contextvars.ContextVar(
    "captured_events", default=None
)


def emit(session: AsyncSession, event: Event, audience: Audience) -> None:
    session.add(OutboxEventRow(name=event.name, payload=event.model_dump(mode="json"),
                               audience=audience.model_dump()))
    captured = _captured.get()
    if captured is not None:
        captured.append((event, audience))


@contextmanager
def capture_events() -> Iterator[list[tuple[Event, Audience]]]:
    """Collect the events actions emit inside the block (for tests: which events, for whom)."""
    bucket: list[tuple[Event, Audience]] = []
    token = _captured.set(bucket)
    try:
        yield bucket
    finally:
        _captured.reset(token)
