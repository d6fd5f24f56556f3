"""The conversation SLA clock: an outbox follower (``workers/follower.py``, name ``sla``) that reads
conversation and message events and keeps each conversation's deadlines and timers
(``actions/sla.py``), in the transaction that moves its cursor. The timers themselves run in the timer
worker (``workers/jobs.py``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import sla as actions
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.workers.follower import Clock, Followed, OutboxFollower


class SlaFollower(OutboxFollower):
    name = "sla-clock"
    follows = actions.FOLLOWED

    def __init__(self, db: Database, *, poll_seconds: float = 2.0, clock: Clock = utcnow) -> None:
        super().__init__(db, "sla", poll_seconds=poll_seconds, clock=clock)

    def relevant(self, event: Followed) -> bool:
        return actions.moves_clock(event.name, event.payload)

    async def handle(self, session: AsyncSession, events: list[Followed]) -> None:
        await actions.follow(session, [(e.event(), e.created_at) for e in events], self.clock())
