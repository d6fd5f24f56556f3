"""Queries of outgoing webhooks: endpoints, deliveries (due, claimed, listed, pruned). The dispatcher's
cursor and the outbox events it reads are in ``plumbing`` (every outbox follower's)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, case, delete, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.repos.common import claim_rows
from threadline.webhooks.models import WebhookDeliveryRow, WebhookEndpointRow

DELIVERIES = WebhookDeliveryRow.__table__


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# --- endpoints ---------------------------------------------------------------------------------------------

async def list_endpoints(session: AsyncSession) -> Sequence[WebhookEndpointRow]:
    return (await session.execute(select(WebhookEndpointRow).order_by(WebhookEndpointRow.id))).scalars().all()


async def active_endpoints(session: AsyncSession) -> Sequence[WebhookEndpointRow]:
    stmt = select(WebhookEndpointRow).where(WebhookEndpointRow.active.is_(True)).order_by(WebhookEndpointRow.id)
    return (await session.execute(stmt)).scalars().all()


async def get_endpoint(session: AsyncSession, endpoint_id: int) -> WebhookEndpointRow | None:
    return await session.get(WebhookEndpointRow, endpoint_id)


async def endpoints_by_ids(session: AsyncSession, ids: set[int], *, lock: bool = False) -> dict[int, WebhookEndpointRow]:
    """The endpoints with these ids; ``lock``: locked in id order (PostgreSQL) so that two processes
    recording results for one endpoint take turns instead of losing a count."""
    if not ids:
        return {}
    stmt = select(WebhookEndpointRow).where(WebhookEndpointRow.id.in_(ids)).order_by(WebhookEndpointRow.id)
    if lock and _postgres(session):  # NO KEY UPDATE: deliveries inserted meanwhile (a foreign key) do not wait
        stmt = stmt.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    return {r.id: r for r in (await session.execute(stmt)).scalars()}


async def delete_endpoint(session: AsyncSession, row: WebhookEndpointRow) -> None:
    await session.execute(delete(DELIVERIES).where(DELIVERIES.c.endpoint_id == row.id))
    await session.delete(row)


async def delivery_counts(session: AsyncSession, since: datetime) -> dict[int, dict[str, int]]:
    """Per endpoint: deliveries waiting (``pending``) and given up since ``since`` (``failed``)."""
    stmt = (select(DELIVERIES.c.endpoint_id, DELIVERIES.c.status, func.count())
            .where(or_(DELIVERIES.c.status == "pending",
                       and_(DELIVERIES.c.status == "failed", DELIVERIES.c.last_attempt_at >= since)))
            .group_by(DELIVERIES.c.endpoint_id, DELIVERIES.c.status))
    out: dict[int, dict[str, int]] = {}
    for endpoint_id, status, n in (await session.execute(stmt)).all():
        out.setdefault(endpoint_id, {"pending": 0, "failed": 0})[status] = n
    return out


# --- deliveries ------------------------------------------------------------------------------------------

async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert deliveries with one statement; one that exists already (same endpoint and event) is skipped."""
    if not rows:
        return
    ins = postgresql.insert(DELIVERIES) if _postgres(session) else sqlite.insert(DELIVERIES)
    conn = await session.connection()
    for i in range(0, len(rows), 500):  # the database's parameter limit
        await conn.execute(ins.on_conflict_do_nothing(index_elements=["endpoint_id", "event_seq"]), rows[i:i + 500])


async def insert_delivery(session: AsyncSession, values: dict[str, Any]) -> int:
    result = await session.execute(insert(DELIVERIES).values(**values).returning(DELIVERIES.c.id))
    return int(result.scalar_one())


async def due_candidates(session: AsyncSession, now: datetime, limit: int, per_endpoint: int
                         ) -> list[tuple[int, int]]:
    """(delivery id, endpoint id) of pending deliveries due now, for active endpoints that are not resting,
    earliest first, at most ``per_endpoint`` of each endpoint: a long backlog on one endpoint does not hide
    the others' deliveries."""
    ep = WebhookEndpointRow.__table__
    rank = func.row_number().over(partition_by=DELIVERIES.c.endpoint_id,
                                  order_by=(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)).label("rank")
    due = (select(DELIVERIES.c.id, DELIVERIES.c.endpoint_id, DELIVERIES.c.next_attempt_at, rank)
           .join(ep, ep.c.id == DELIVERIES.c.endpoint_id)
           .where(DELIVERIES.c.status == "pending", DELIVERIES.c.next_attempt_at <= now, ep.c.active.is_(True),
                  or_(ep.c.paused_until.is_(None), ep.c.paused_until <= now))).subquery()
    stmt = (select(due.c.id, due.c.endpoint_id).where(due.c.rank <= per_endpoint)
            .order_by(due.c.next_attempt_at, due.c.id).limit(limit))
    conn = await session.connection()
    return [(r[0], r[1]) for r in (await conn.execute(stmt)).all()]


class Claimed(NamedTuple):
    id: int
    endpoint_id: int
    event_seq: int | None
    event_name: str
    payload: dict[str, Any] | None
    attempts: int
    created_at: datetime


async def claim(session: AsyncSession, ids: list[int], now: datetime, lease_until: datetime) -> list[Claimed]:
    """Take these deliveries for one attempt, if still pending and due: count it and move
    ``next_attempt_at`` to the end of the lease (``common.claim_rows``: none is taken twice)."""
    rows = await claim_rows(
        session, DELIVERIES, ids, (DELIVERIES.c.status == "pending", DELIVERIES.c.next_attempt_at <= now),
        {"attempts": DELIVERIES.c.attempts + 1, "next_attempt_at": lease_until, "last_attempt_at": now},
        (DELIVERIES.c.endpoint_id, DELIVERIES.c.event_seq, DELIVERIES.c.event_name, DELIVERIES.c.payload,
         DELIVERIES.c.attempts, DELIVERIES.c.created_at))
    return [Claimed(*r) for r in rows]


async def deliveries_by_ids(session: AsyncSession, ids: set[int], *, lock: bool = False) -> dict[int, WebhookDeliveryRow]:
    if not ids:
        return {}
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.id.in_(ids)).order_by(WebhookDeliveryRow.id)
    if lock and _postgres(session):
        stmt = stmt.with_for_update()
    return {r.id: r for r in (await session.execute(stmt)).scalars()}


async def get_delivery(session: AsyncSession, delivery_id: int, *, lock: bool = False) -> WebhookDeliveryRow | None:
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id)
    if lock and _postgres(session):
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_deliveries(session: AsyncSession, endpoint_id: int, *, status: str | None, before_id: int | None,
                          limit: int) -> Sequence[WebhookDeliveryRow]:
    """An endpoint's deliveries, newest first."""
    stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint_id)
    if status:
        stmt = stmt.where(WebhookDeliveryRow.status == status)
    if before_id is not None:
        stmt = stmt.where(WebhookDeliveryRow.id < before_id)
    stmt = stmt.order_by(WebhookDeliveryRow.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def next_due(session: AsyncSession) -> datetime | None:
    """When the next pending delivery of an active endpoint may be tried: its own time, or the end of its
    endpoint's rest if that is later."""
    ep = WebhookEndpointRow.__table__
    when = case((ep.c.paused_until > DELIVERIES.c.next_attempt_at, ep.c.paused_until),
                else_=DELIVERIES.c.next_attempt_at)
    stmt = (select(func.min(when)).select_from(DELIVERIES).join(ep, ep.c.id == DELIVERIES.c.endpoint_id)
            .where(DELIVERIES.c.status == "pending", ep.c.active.is_(True)))
    conn = await session.connection()
    return (await conn.execute(stmt)).scalar_one_or_none()


async def prune(session: AsyncSession, before: datetime, limit: int = 5000) -> int:
    """Delete up to ``limit`` finished deliveries created before ``before``; how many went."""
    ids = select(DELIVERIES.c.id).where(DELIVERIES.c.status != "pending", DELIVERIES.c.created_at < before).limit(limit)
    conn = await session.connection()
    result = await conn.execute(delete(DELIVERIES).where(DELIVERIES.c.id.in_(ids.scalar_subquery())))
    return int(result.rowcount or 0)


async def oldest_waiting_event(session: AsyncSession) -> int | None:
    """The lowest event seq a pending delivery of an active endpoint still has to send (retention keeps it)."""
    ep = WebhookEndpointRow.__table__
    stmt = (select(func.min(DELIVERIES.c.event_seq)).select_from(DELIVERIES)
            .join(ep, ep.c.id == DELIVERIES.c.endpoint_id)
            .where(DELIVERIES.c.status == "pending", ep.c.active.is_(True)))
    conn = await session.connection()
    return (await conn.execute(stmt)).scalar_one_or_none()
