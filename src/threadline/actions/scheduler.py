"""Durable timers: schedule, move and cancel jobs in the caller's transaction, and record attempts.

``schedule_job`` and ``cancel_job`` run in the transaction of the change they belong to, so a business
change and its timer commit (or roll back) together: a conversation snoozed until nine has its wake-up
job stored by the same commit. The timer worker (``workers/scheduler.py``) runs due jobs; the commit
wakes it (``mark_written(..., "scheduled_jobs")``) so a job due sooner than its next wake is not late.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ScheduledJobRow
from threadline.db.repos import scheduler as repo
from threadline.db.session import mark_written
from threadline.db.types import utcnow
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.scheduler import JobRetry, check_job

Claimed = repo.Claimed


async def schedule_job(session: AsyncSession, kind: str, key: str | int, due_at: datetime,
                       payload: dict[str, Any] | None = None) -> None:
    """Run the handler of ``kind`` for ``key`` at ``due_at`` (or at once, if that has passed). The same
    (kind, key) scheduled again moves the job (new time and payload, attempts and error cleared)."""
    await schedule_jobs(session, [(kind, key, due_at, payload)])


async def schedule_jobs(session: AsyncSession,
                        jobs: Sequence[tuple[str, str | int, datetime, dict[str, Any] | None]]) -> None:
    """``schedule_job`` for many (kind, key, due_at, payload) at once, with one statement."""
    await repo.upsert(session, _checked(jobs), utcnow())
    mark_written(session, "scheduled_jobs")


async def ensure_job(session: AsyncSession, kind: str, key: str | int, due_at: datetime,
                     payload: dict[str, Any] | None = None) -> None:
    """Schedule (kind, key) unless it is scheduled already (periodic jobs started by every process)."""
    await repo.upsert(session, _checked([(kind, key, due_at, payload)]), utcnow(), keep_existing=True)
    mark_written(session, "scheduled_jobs")


def _checked(jobs: Sequence[tuple[str, str | int, datetime, dict[str, Any] | None]]
             ) -> list[tuple[str, str, datetime, dict[str, Any]]]:
    out = []
    for kind, key, due_at, payload in jobs:
        check_job(kind, str(key))
        if due_at.tzinfo is None:
            raise ValidationFailed("a job's due time needs a time zone", field="due_at")
        out.append((kind, str(key), due_at, payload or {}))
    return out


async def cancel_job(session: AsyncSession, kind: str, key: str | int) -> bool:
    """Forget (kind, key) if it is scheduled; whether it was."""
    return await cancel_jobs(session, kind, [key]) > 0


async def cancel_jobs(session: AsyncSession, kind: str, keys: Sequence[str | int]) -> int:
    """Forget these jobs of ``kind``; how many were scheduled."""
    return await repo.remove(session, kind, [str(k) for k in keys])


async def claim_due(session: AsyncSession, *, now: datetime, lease_seconds: float, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due jobs, earliest first: each claim counts an attempt and leases the job for
    ``lease_seconds`` (a worker that dies leaves it due again when the lease ends)."""
    if limit <= 0:
        return []
    ids = await repo.due_ids(session, now, limit)
    return await repo.claim(session, ids, now, now + timedelta(seconds=lease_seconds))


async def take(session: AsyncSession, job: Claimed) -> bool:
    """Start running a claimed job in this (write) transaction: whether the claim still owns it (not moved,
    cancelled or claimed again since). On PostgreSQL the row stays locked until the commit, so the
    handler's work commits once whatever another process does."""
    return await repo.hold(session, job)


async def finish(session: AsyncSession, job: Claimed) -> None:
    """The handler succeeded: forget the job, in the handler's transaction (unless the handler scheduled
    the same kind and key again: then the new time stands)."""
    await repo.finish(session, job)


async def record_failure(session: AsyncSession, job: Claimed, error: str, *, retry: JobRetry, now: datetime,
                         rng: random.Random) -> str:
    """A failed attempt: the job runs again after a backoff (``retry``), or is kept as failed with its
    error after the last attempt. Returns ``retry``, ``failed``, or ``stale`` (moved or claimed again
    meanwhile: the newer state wins)."""
    retry_at = retry.next_attempt(job.attempts, now, rng)
    if not await repo.fail(session, job, error, now, retry_at):
        return "stale"
    mark_written(session, "scheduled_jobs")
    return "failed" if retry_at is None else "retry"


async def run_again(session: AsyncSession, job_id: int) -> ScheduledJobRow:
    """Run a failed (or waiting) job now, with a fresh count of attempts (an operator fixed the cause)."""
    row = await repo.get_by_id(session, job_id)
    if row is None:
        raise NotFound(f"scheduled job {job_id} does not exist")
    if row.lease_until is not None and row.lease_until > utcnow() and row.failed_at is None:
        raise Conflict(f"scheduled job {job_id} is running now", field="job_id")
    await repo.upsert(session, [(row.kind, row.key, utcnow(), dict(row.payload or {}))], utcnow())
    mark_written(session, "scheduled_jobs")
    await session.refresh(row)
    return row
