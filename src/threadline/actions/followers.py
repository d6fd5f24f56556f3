"""Outbox followers' cursors (workers/follower.py): where each named follower is in the event log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.repos import plumbing as repo


async def start_cursor(session: AsyncSession, name: str, now: datetime) -> int:
    """The cursor of follower ``name``, created at the log's end if it has none (history is not replayed)."""
    await repo.ensure_cursor(session, name, await repo.max_seq(session), now)
    stored = await repo.get_cursor(session, name)
    assert stored is not None
    return stored


async def lock_cursor(session: AsyncSession, name: str) -> int | None:
    """The stored cursor, locked for this transaction (PostgreSQL), so two would-be leaders take turns."""
    return await repo.get_cursor(session, name, lock=True)


async def move_cursor(session: AsyncSession, name: str, seq: int, now: datetime) -> None:
    """Store the cursor past a handled batch (in the batch's transaction)."""
    await repo.set_cursor(session, name, seq, now)


async def advance_cursor(session: AsyncSession, name: str, seq: int, now: datetime) -> None:
    """Move the stored cursor to ``seq`` (events up to it needed nothing), never backwards."""
    stored = await repo.get_cursor(session, name, lock=True)
    if stored is None:
        await repo.ensure_cursor(session, name, seq, now)
    elif seq > stored:
        await repo.set_cursor(session, name, seq, now)
