"""Outbound jobs taken by the senders of every process (``workers/sender.py``): claimed with a lease,
fairly across channels. What a finished attempt records is in ``actions/outbound/delivery.py`` (``record_sent``,
``record_failed``, ``record_retry``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.repos import plumbing as repo
from threadline.domain.scheduler import pick_fairly

ClaimedJob = repo.ClaimedJob


async def claim_jobs(session: AsyncSession, *, now: datetime, lease_seconds: float, limit: int, per_channel: int,
                     busy: Mapping[int, int] | None = None) -> list[ClaimedJob]:
    """Claim up to ``limit`` due outbound jobs, earliest first, at most ``per_channel`` per channel counting
    the ``busy`` ones in flight here. Each claim leases the job for ``lease_seconds``."""
    if limit <= 0:
        return []
    candidates = await repo.due_job_candidates(session, now, limit + sum((busy or {}).values()), per_channel)
    picked = pick_fairly(candidates, limit, per_channel, busy)
    return await repo.claim_jobs(session, picked, now, now + timedelta(seconds=lease_seconds))
