"""Queries of the outbox (events, its followers' cursors, retention), the inbox (inbound requests) and
outbound jobs (due, claimed with a lease)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import InboxItemRow, OutboundJobRow, OutboxCursorRow, OutboxEventRow, ReplayNonceRow
from threadline.db.repos.common import claim_rows, insert_ignore
from threadline.db.session import reserve_ids

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


async def sequenced_after(session: AsyncSession, seq: int, limit: int) -> list[OutboxRecord]:
    """Every sequenced event after ``seq``, published or not, in seq order (the tail bus: bus/tail.py)."""
    conn = await session.connection()
    stmt = select(*_EVENT_COLUMNS).where(OUTBOX.c.seq > seq).order_by(OUTBOX.c.seq).limit(limit)
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


class EventHead(NamedTuple):
    seq: int
    name: str
    created_at: datetime


async def event_heads_after(session: AsyncSession, seq: int, limit: int) -> list[EventHead]:
    """Sequenced outbox events after ``seq``, in order, without their payloads."""
    stmt = (select(OUTBOX.c.seq, OUTBOX.c.name, OUTBOX.c.created_at).where(OUTBOX.c.seq > seq)
            .order_by(OUTBOX.c.seq).limit(limit))
    conn = await session.connection()
    return [EventHead(*r) for r in (await conn.execute(stmt)).all()]


class EventBody(NamedTuple):
    name: str
    payload: dict[str, Any]
    created_at: datetime


async def events_by_seqs(session: AsyncSession, seqs: set[int]) -> dict[int, EventBody]:
    if not seqs:
        return {}
    conn = await session.connection()
    out: dict[int, EventBody] = {}
    ordered = sorted(seqs)
    for i in range(0, len(ordered), 500):  # the database's parameter limit
        stmt = (select(OUTBOX.c.seq, OUTBOX.c.name, OUTBOX.c.payload, OUTBOX.c.created_at)
                .where(OUTBOX.c.seq.in_(ordered[i:i + 500])))
        out.update({r[0]: EventBody(r[1], r[2], r[3]) for r in (await conn.execute(stmt)).all()})
    return out


# --- followers' cursors ----------------------------------------------------------------------------------

CURSORS = OutboxCursorRow.__table__


async def get_cursor(session: AsyncSession, name: str, *, lock: bool = False) -> int | None:
    """The last seq follower ``name`` has handled (None: it never ran). ``lock``: PostgreSQL locks the row,
    so that two processes that both believe they lead take turns."""
    stmt = select(CURSORS.c.seq).where(CURSORS.c.name == name)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def ensure_cursor(session: AsyncSession, name: str, seq: int, at: datetime) -> None:
    """Create follower ``name``'s cursor at ``seq`` unless it exists."""
    ins = postgresql.insert(CURSORS) if session.get_bind().dialect.name == "postgresql" else sqlite.insert(CURSORS)
    await session.execute(ins.values(name=name, seq=seq, updated_at=at).on_conflict_do_nothing())


async def set_cursor(session: AsyncSession, name: str, seq: int, at: datetime) -> None:
    await session.execute(update(CURSORS).where(CURSORS.c.name == name).values(seq=seq, updated_at=at))


async def slowest_cursor(session: AsyncSession, moved_since: datetime) -> int | None:
    """The lowest seq among the followers whose cursor moved since ``moved_since`` (None: no follower).
    A cursor that has not moved for that long belongs to a follower that no longer runs."""
    stmt = select(func.min(CURSORS.c.seq)).where(CURSORS.c.updated_at >= moved_since)
    return (await session.execute(stmt)).scalar_one_or_none()


# --- retention -------------------------------------------------------------------------------------------

async def prune_events(session: AsyncSession, *, before: datetime, ephemeral: bool, up_to_seq: int,
                       limit: int) -> int:
    """Delete up to ``limit`` published events created before ``before`` (only the ``ephemeral`` ones,
    or only durable ones) whose seq is below ``up_to_seq``; how many went. Oldest first (by id)."""
    ids = (select(OUTBOX.c.id)
           .where(OUTBOX.c.ephemeral.is_(ephemeral), OUTBOX.c.published_at.is_not(None),
                  OUTBOX.c.created_at < before, OUTBOX.c.seq < up_to_seq)
           .order_by(OUTBOX.c.id).limit(limit))
    conn = await session.connection()
    result = await conn.execute(delete(OUTBOX).where(OUTBOX.c.id.in_(ids.scalar_subquery())))
    return int(result.rowcount or 0)


async def prune_inbox(session: AsyncSession, *, processed_before: datetime, failed_before: datetime,
                      limit: int) -> int:
    """Delete up to ``limit`` stored provider requests: processed before ``processed_before``, or never
    processed (failed) and received before ``failed_before``; how many went."""
    table = InboxItemRow.__table__
    ids = (select(table.c.id)
           .where(or_(table.c.processed_at < processed_before,
                      and_(table.c.processed_at.is_(None), table.c.received_at < failed_before)))
           .order_by(table.c.id).limit(limit))
    conn = await session.connection()
    result = await conn.execute(delete(table).where(table.c.id.in_(ids.scalar_subquery())))
    return int(result.rowcount or 0)


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
    if conn.dialect.name == "sqlite":  # one executemany with ids known beforehand (no batched RETURNING here)
        ids = await reserve_ids(session, table, len(rows))
        await conn.execute(insert(table), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
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


JOBS = OutboundJobRow.__table__


async def due_job_candidates(session: AsyncSession, now: datetime, limit: int, per_channel: int
                             ) -> list[tuple[int, int]]:
    """(job id, channel id) of pending outbound jobs due now, earliest first, at most ``per_channel`` of each
    channel (a backlog on one channel does not hide the others' replies)."""
    rank = func.row_number().over(partition_by=JOBS.c.channel_instance_id,
                                  order_by=(JOBS.c.next_attempt_at, JOBS.c.id)).label("rank")
    due = (select(JOBS.c.id, JOBS.c.channel_instance_id, JOBS.c.next_attempt_at, rank)
           .where(JOBS.c.status == "pending", JOBS.c.next_attempt_at <= now)).subquery()
    stmt = (select(due.c.id, due.c.channel_instance_id).where(due.c.rank <= per_channel)
            .order_by(due.c.next_attempt_at, due.c.id).limit(limit))
    conn = await session.connection()
    return [(r[0], r[1]) for r in (await conn.execute(stmt)).all()]


class ClaimedJob(NamedTuple):
    id: int
    channel_instance_id: int
    message_id: int
    attempts: int  # attempts made before this one (the job's count when claimed)
    lease_until: datetime  # the job's next_attempt_at as this claim set it: a later claim changes it


async def claim_jobs(session: AsyncSession, ids: Sequence[int], now: datetime, lease_until: datetime
                     ) -> list[ClaimedJob]:
    """Take these outbound jobs for one attempt, if still pending and due: their next attempt moves to the
    end of the lease (``common.claim_rows``: two processes never take one job; a process that dies only
    delays it to the lease's end)."""
    rows = await claim_rows(session, JOBS, ids, (JOBS.c.status == "pending", JOBS.c.next_attempt_at <= now),
                            {"next_attempt_at": lease_until, "updated_at": now},
                            (JOBS.c.channel_instance_id, JOBS.c.message_id, JOBS.c.attempts,
                             JOBS.c.next_attempt_at))
    return [ClaimedJob(*r) for r in rows]


async def jobs_by_ids(session: AsyncSession, ids: set[int]) -> dict[int, OutboundJobRow]:
    """Outbound jobs, locked in id order on PostgreSQL (results are recorded one transaction at a time)."""
    if not ids:
        return {}
    stmt = select(OutboundJobRow).where(OutboundJobRow.id.in_(ids)).order_by(OutboundJobRow.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {r.id: r for r in (await session.execute(stmt)).scalars()}


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
