"""Queries of the outbox (events), the inbox (inbound requests) and outbound jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import InboxItemRow, OutboundJobRow, OutboxEventRow
from threadline.db.repos.common import insert_ignore


async def unsequenced_events(session: AsyncSession, limit: int) -> Sequence[OutboxEventRow]:
    stmt = select(OutboxEventRow).where(OutboxEventRow.seq.is_(None)).order_by(OutboxEventRow.id).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def max_seq(session: AsyncSession) -> int:
    return (await session.execute(select(func.coalesce(func.max(OutboxEventRow.seq), 0)))).scalar_one()


async def sequenced_unpublished(session: AsyncSession, limit: int) -> Sequence[OutboxEventRow]:
    stmt = (
        select(OutboxEventRow)
        .where(OutboxEventRow.seq.is_not(None), OutboxEventRow.published_at.is_(None))
        .order_by(OutboxEventRow.seq)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def mark_published(session: AsyncSession, ids: list[int], at: datetime) -> None:
    await session.execute(update(OutboxEventRow).where(OutboxEventRow.id.in_(ids)).values(published_at=at))


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


async def pending_inbox_ids(session: AsyncSession, limit: int, max_attempts: int) -> list[int]:
    stmt = (
        select(InboxItemRow.id)
        .where(InboxItemRow.processed_at.is_(None), InboxItemRow.attempts < max_attempts)
        .order_by(InboxItemRow.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


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
