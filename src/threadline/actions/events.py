"""Write events to the outbox in the caller's transaction (published by bus/outbox.py after commit).

``emit`` only records the event on the session; all of a transaction's events are inserted with one
statement just before it commits (``Database.transaction`` runs the session's before-commit steps), so
an action that emits many events pays for one insert. Work that may fail part-way and continue runs in
``savepoint``, which also drops the events emitted inside it when it rolls back.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import OutboxEventRow
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.session import before_commit, mark_written
from threadline.db.types import utcnow
from threadline.domain.events import EPHEMERAL_EVENTS, Audience, Event

PENDING = "threadline.pending_events"
_captured: contextvars.ContextVar[list[tuple[Event, Audience]] | None] = contextvars.ContextVar(
    "captured_events", default=None
)


def emit(session: AsyncSession, event: Event, audience: Audience) -> None:
    pending: list[dict[str, Any]] | None = session.info.get(PENDING)
    if pending is None:
        pending = session.info[PENDING] = []
        before_commit(session, write_pending_events)
    pending.append({"name": event.name, "payload": event.model_dump(mode="json"),
                    "audience": audience.model_dump(), "created_at": utcnow(),
                    "ephemeral": event.name in EPHEMERAL_EVENTS})
    mark_written(session, "events")
    captured = _captured.get()
    if captured is not None:
        captured.append((event, audience))


async def write_pending_events(session: AsyncSession) -> None:
    """Insert the events emitted in this transaction, in order, with one statement.

    On SQLite they get their stream ``seq`` here: writers hold the database's write lock in turn, so
    seqs given inside the transaction are in commit order and the relay need not write to publish.
    On PostgreSQL transactions commit concurrently and the relay gives seqs when it publishes."""
    pending: list[dict[str, Any]] = session.info.pop(PENDING, [])
    if not pending:
        return
    if session.get_bind().dialect.name == "sqlite":
        seq = await plumbing_repo.max_seq(session)
        for row in pending:
            seq += 1
            row["seq"] = seq
    await session.execute(insert(OutboxEventRow.__table__), pending)


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """A nested transaction: if the block raises, its changes and the events it emitted are dropped."""
    pending: list[dict[str, Any]] | None = session.info.get(PENDING)
    mark = len(pending) if pending is not None else 0
    try:
        async with session.begin_nested():
            yield
    except BaseException:
        pending = session.info.get(PENDING)
        if pending is not None:
            del pending[mark:]
        raise


@contextmanager
def capture_events() -> Iterator[list[tuple[Event, Audience]]]:
    """Collect the events actions emit inside the block (for tests: which events, for whom)."""
    bucket: list[tuple[Event, Audience]] = []
    token = _captured.set(bucket)
    try:
        yield bucket
    finally:
        _captured.reset(token)
