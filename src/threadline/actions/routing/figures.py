"""Today's figures per queue, from the outcome facts the router writes (``routing_outcomes``)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.routing.settings import queue_parts
from threadline.db.repos import routing as repo


def local_midnight(now: datetime, timezone: str) -> datetime:
    """Start of the day containing ``now`` in a time zone (a queue's business-hours zone), in UTC."""
    local = now.astimezone(ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


async def today_figures(session: AsyncSession, now: datetime | None = None) -> dict[int, repo.QueueFigures]:
    """Each queue's figures since midnight in the queue's own time zone (that of its business hours):
    answered, within the answer target, abandoned, service level, ASA, AHT. One query per time zone."""
    now = datetime.now(UTC) if now is None else now
    by_zone: dict[str, list[int]] = {}
    for rec in await repo.queues(session):
        settings, _ = queue_parts(rec)
        by_zone.setdefault(settings.hours.timezone, []).append(rec.id)
    out: dict[int, repo.QueueFigures] = {}
    for zone, ids in by_zone.items():
        out.update(await repo.queue_figures(session, local_midnight(now, zone), queue_ids=ids))
    return out
