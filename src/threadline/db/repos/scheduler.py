"""Queries of the durable timers (``scheduled_jobs``): schedule (insert or move), cancel, due, claimed
with a lease, finished, failed, listed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ScheduledJobRow
from threadline.db.repos.common import claim_rows

JOBS = ScheduledJobRow.__table__


def _waiting() -> Any:
    return JOBS.c.failed_at.is_(None)


def _free(now: datetime) -> Any:
    """Not leased by a worker, or its lease ended (the worker died or is too slow: the job runs again)."""
    return (JOBS.c.lease_until.is_(None)) | (JOBS.c.lease_until <= now)


async def upsert(session: AsyncSession, jobs: Sequence[tuple[str, str, datetime, dict[str, Any]]], now: datetime,
                 *, keep_existing: bool = False) -> None:
    """Schedule each (kind, key, due_at, payload) with one statement: a new job, or the existing one moved
    there with this payload, its attempts and error cleared (a failed job scheduled again waits anew).
    ``keep_existing``: leave existing jobs as they are. In (kind, key) order, so that two transactions
    scheduling the same jobs on PostgreSQL take their row locks in one order."""
    if not jobs:
        return
    rows = [{"kind": kind, "key": key, "due_at": due_at, "payload": payload, "attempts": 0, "last_error": None,
             "lease_until": None, "failed_at": None, "created_at": now, "updated_at": now}
            for kind, key, due_at, payload in sorted(jobs, key=lambda j: (j[0], j[1]))]
    stmt = postgresql.insert(JOBS) if session.get_bind().dialect.name == "postgresql" else sqlite.insert(JOBS)
    if keep_existing:
        stmt = stmt.on_conflict_do_nothing(index_elements=["kind", "key"])
    else:
        stmt = stmt.on_conflict_do_update(index_elements=["kind", "key"], set_={
            k: stmt.excluded[k] for k in ("due_at", "payload", "attempts", "last_error", "lease_until", "failed_at",
                                          "updated_at")})
    conn = await session.connection()
    for i in range(0, len(rows), 500):  # the database's parameter limit
        await conn.execute(stmt, rows[i:i + 500])


async def remove(session: AsyncSession, kind: str, keys: Sequence[str]) -> int:
    """Forget these jobs of ``kind``; how many there were."""
    if not keys:
        return 0
    gone = 0
    for i in range(0, len(keys), 500):
        result = await session.execute(delete(JOBS).where(JOBS.c.kind == kind, JOBS.c.key.in_(keys[i:i + 500])))
        gone += int(result.rowcount or 0)
    return gone


async def next_due(session: AsyncSession) -> datetime | None:
    """When the next waiting job may run: its due time, or the end of its lease if that is later."""
    when = case((JOBS.c.lease_until > JOBS.c.due_at, JOBS.c.lease_until), else_=JOBS.c.due_at)
    conn = await session.connection()
    return (await conn.execute(select(func.min(when)).where(_waiting()))).scalar_one_or_none()


async def due_ids(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Waiting jobs due now and not leased, earliest first."""
    stmt = (select(JOBS.c.id).where(_waiting(), JOBS.c.due_at <= now, _free(now))
            .order_by(JOBS.c.due_at, JOBS.c.id).limit(limit))
    conn = await session.connection()
    return list((await conn.execute(stmt)).scalars().all())


class Claimed(NamedTuple):
    id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int  # counting this attempt


async def claim(session: AsyncSession, ids: Sequence[int], now: datetime, lease_until: datetime) -> list[Claimed]:
    """Take these jobs for one attempt, if still waiting, due and free: count the attempt and lease them
    until ``lease_until`` (``common.claim_rows``: two processes never take one job)."""
    rows = await claim_rows(session, JOBS, ids, (_waiting(), JOBS.c.due_at <= now, _free(now)),
                            {"attempts": JOBS.c.attempts + 1, "lease_until": lease_until, "updated_at": now},
                            (JOBS.c.kind, JOBS.c.key, JOBS.c.due_at, JOBS.c.payload, JOBS.c.attempts))
    return [Claimed(*r) for r in rows]


async def hold(session: AsyncSession, job: Claimed) -> bool:
    """Whether this attempt still owns the job (not moved, cancelled or claimed again since), locking
    the row on PostgreSQL for the rest of the transaction that runs the handler: a claim elsewhere skips
    it, so the handler's work commits once."""
    stmt = select(JOBS.c.id).where(JOBS.c.id == job.id, JOBS.c.attempts == job.attempts,
                                   JOBS.c.lease_until.is_not(None), _waiting())
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def finish(session: AsyncSession, job: Claimed) -> None:
    """Delete a job whose handler succeeded, unless the handler scheduled it again (attempts reset)."""
    await session.execute(delete(JOBS).where(JOBS.c.id == job.id, JOBS.c.attempts == job.attempts,
                                             JOBS.c.lease_until.is_not(None)))


async def fail(session: AsyncSession, job: Claimed, error: str, now: datetime, retry_at: datetime | None) -> bool:
    """Record a failed attempt: due again at ``retry_at``, or kept as failed (``retry_at`` None). Nothing
    happens if the job was moved or claimed again meanwhile; whether it was recorded."""
    values: dict[str, Any] = {"last_error": error[:4000], "lease_until": None, "updated_at": now}
    if retry_at is None:
        values["failed_at"] = now
    else:
        values["due_at"] = retry_at
    result = await session.execute(update(JOBS).where(JOBS.c.id == job.id, JOBS.c.attempts == job.attempts)
                                   .values(**values))
    return bool(result.rowcount)


async def get(session: AsyncSession, kind: str, key: str) -> ScheduledJobRow | None:
    stmt = select(ScheduledJobRow).where(ScheduledJobRow.kind == kind, ScheduledJobRow.key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_by_id(session: AsyncSession, job_id: int) -> ScheduledJobRow | None:
    return await session.get(ScheduledJobRow, job_id)


async def list_jobs(session: AsyncSession, *, failed: bool | None, kind: str | None, limit: int
                    ) -> Sequence[ScheduledJobRow]:
    """Jobs by due time (failed ones: most recently failed first); ``failed`` None: both."""
    stmt = select(ScheduledJobRow)
    if failed is True:
        stmt = stmt.where(ScheduledJobRow.failed_at.is_not(None)).order_by(ScheduledJobRow.failed_at.desc())
    elif failed is False:
        stmt = stmt.where(ScheduledJobRow.failed_at.is_(None)).order_by(ScheduledJobRow.due_at)
    else:
        stmt = stmt.order_by(ScheduledJobRow.failed_at.is_not(None), ScheduledJobRow.due_at)
    if kind:
        stmt = stmt.where(ScheduledJobRow.kind == kind)
    return (await session.execute(stmt.order_by(ScheduledJobRow.id).limit(limit))).scalars().all()


async def counts(session: AsyncSession) -> dict[str, int]:
    """How many jobs wait and how many failed."""
    stmt = select(JOBS.c.failed_at.is_not(None), func.count()).group_by(JOBS.c.failed_at.is_not(None))
    out = {"pending": 0, "failed": 0}
    for failed, n in (await session.execute(stmt)).all():
        out["failed" if failed else "pending"] = int(n)
    return out
