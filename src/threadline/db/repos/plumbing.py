"""Queries of the outbox (events), the inbox (inbound requests) and outbound jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import InboxItemRow, OutboundJobRow, OutboxEventRow, ReplayNonceRow
from threadline.db.repos.common import insert_ignore

OUTBOX = OutboxEventRow.__table__
_EVENT_COLUMNS = (OUTBOX.c.id, OUTBOX.c.seq, OUTBOX.c.name, OUTBOX.c.payload, OUTBOX.c.audience, OUTBOX.c.created_at)


class OutboxRecord(NamedTuple):
    id: int
    seq: int
    name: str
    payload: dict[str, Any]
    audience: dict[str, Any]
    created_at: datetime


async def sequence_and_fetch(session: AsyncSession, limit: int) -> list[OutboxRecord]:
    """The relay's step: up to ``limit`` unpublished events in publication order, giving the next seqs
    to those that have none yet. Events sequenced earlier but never marked published (a crash between
    the two) come first, with their old seq. Core statements: this runs for every event."""
    conn = await session.connection()
    stmt = (select(*_EVENT_COLUMNS).where(OUTBOX.c.published_at.is_(None))
            .order_by(OUTBOX.c.seq.is_(None), OUTBOX.c.seq, OUTBOX.c.id).limit(limit))
    rows = [OutboxRecord(*r) for r in (await conn.execute(stmt)).all()]
    fresh = [i for i, r in enumerate(rows) if r.seq is None]
    if fresh:
        seq = await max_seq(session)
        updates = []
        for i in fresh:
            seq += 1
            rows[i] = rows[i]._replace(seq=seq)
            updates.append({"b_id": rows[i].id, "b_seq": seq})
        await conn.execute(update(OUTBOX).where(OUTBOX.c.id == bindparam("b_id")).values(seq=bindparam("b_seq")),
                           updates)
    return rows


async def unpublished_after(session: AsyncSession, seq: int, limit: int) -> list[OutboxRecord]:
    """Sequenced events after ``seq`` not marked published, in seq order (SQLite relay, read only)."""
    conn = await session.connection()
    stmt = (select(*_EVENT_COLUMNS).where(OUTBOX.c.seq > seq, OUTBOX.c.published_at.is_(None))
            .order_by(OUTBOX.c.seq).limit(limit))
    return [OutboxRecord(*r) for r in (await conn.execute(stmt)).all()]


async def max_seq(session: AsyncSession) -> int:
    # a bare max() so that SQLite answers from the seq index (coalesce() around it means a full scan)
    return (await session.execute(select(func.max(OUTBOX.c.seq)))).scalar_one() or 0


async def mark_published(session: AsyncSession, ids: list[int], at: datetime) -> None:
    conn = await session.connection()
    for i in range(0, len(ids), 500):  # chunks: a burst must not exceed the database's parameter limit
        await conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(ids[i:i + 500])).values(published_at=at))


async def events_after(session: AsyncSession, seq: int, limit: int) -> Sequence[OutboxEventRow]:
    stmt = (
        select(OutboxEventRow)
        .where(OutboxEventRow.seq > seq)
        .order_by(OutboxEventRow.seq)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def insert_inbox_item(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Store a provider request; return its id, or None when the same dedupe key was stored before."""
    result = await session.execute(insert_ignore(session, InboxItemRow.__table__, values)
                                   .returning(InboxItemRow.__table__.c.id))
    return result.scalar_one_or_none()


async def new_inbox_keys(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Indexes of the rows whose (channel, dedupe key) is not stored yet nor repeated earlier in ``rows``."""
    table = InboxItemRow.__table__
    keys = {(r["channel_instance_id"], r["dedupe_key"]) for r in rows}
    stmt = select(table.c.channel_instance_id, table.c.dedupe_key).where(
        table.c.channel_instance_id.in_({c for c, _ in keys}), table.c.dedupe_key.in_({k for _, k in keys}))
    conn = await session.connection()
    seen = {(c, k) for c, k in (await conn.execute(stmt)).all() if (c, k) in keys}
    fresh: list[int] = []
    for i, r in enumerate(rows):
        key = (r["channel_instance_id"], r["dedupe_key"])
        if key not in seen:
            seen.add(key)
            fresh.append(i)
    return fresh


async def insert_new_inbox_items(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Store provider requests known to be new (``new_inbox_keys``) with one insert; their ids. A
    concurrent writer storing the same key at the same moment (PostgreSQL) makes it fail with
    IntegrityError; the caller then stores row by row with ``insert_inbox_item``."""
    if not rows:
        return []
    table = InboxItemRow.__table__
    conn = await session.connection()
    return list((await conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                                    rows)).scalars().all())


async def pending_inbox_ids(session: AsyncSession, limit: int, max_attempts: int) -> list[int]:
    stmt = (
        select(InboxItemRow.id)
        .where(InboxItemRow.processed_at.is_(None), InboxItemRow.attempts < max_attempts)
        .order_by(InboxItemRow.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


async def lock_unprocessed_inbox_items(session: AsyncSession, ids: list[int]) -> Sequence[InboxItemRow]:
    """The given items not processed yet, in id order, locked so that another process's worker skips
    them (PostgreSQL; SQLite has one writer at a time anyway)."""
    stmt = (select(InboxItemRow).where(InboxItemRow.id.in_(ids), InboxItemRow.processed_at.is_(None))
            .order_by(InboxItemRow.id))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.execute(stmt)).scalars().all()


async def get_inbox_item(session: AsyncSession, item_id: int) -> InboxItemRow | None:
    return await session.get(InboxItemRow, item_id)


async def due_jobs(session: AsyncSession, now: datetime, limit: int, *, skip_locked: bool) -> Sequence[OutboundJobRow]:
    stmt = (
        select(OutboundJobRow)
        .where(OutboundJobRow.status == "pending", OutboundJobRow.next_attempt_at <= now)
        .order_by(OutboundJobRow.next_attempt_at, OutboundJobRow.id)
        .limit(limit)
    )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.execute(stmt)).scalars().all()


async def next_job_due(session: AsyncSession) -> datetime | None:
    stmt = select(func.min(OutboundJobRow.next_attempt_at)).where(OutboundJobRow.status == "pending")
    return (await session.execute(stmt)).scalar_one_or_none()


async def job_for_message(session: AsyncSession, message_id: int) -> OutboundJobRow | None:
    stmt = select(OutboundJobRow).where(OutboundJobRow.message_id == message_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_job(session: AsyncSession, job_id: int) -> OutboundJobRow | None:
    return await session.get(OutboundJobRow, job_id)


async def remember_nonce(session: AsyncSession, channel_id: int, nonce: str, fingerprint: str,
                         expires_at: datetime, now: datetime) -> str:
    """Record a provider's one-time token unless it is known; the fingerprint stored with it (the one
    given, or an earlier request's). Two requests racing with one token get the same answer: the second
    insert waits for the first and does nothing. Expired tokens are removed on the way."""
    await session.execute(delete(ReplayNonceRow).where(ReplayNonceRow.expires_at < now))
    await session.execute(insert_ignore(session, ReplayNonceRow.__table__, {
        "channel_instance_id": channel_id, "nonce": nonce, "fingerprint": fingerprint, "expires_at": expires_at}))
    stmt = select(ReplayNonceRow.fingerprint).where(ReplayNonceRow.channel_instance_id == channel_id,
                                                    ReplayNonceRow.nonce == nonce)
    return (await session.execute(stmt)).scalar_one()
