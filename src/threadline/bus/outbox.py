"""The relay: publishes committed outbox events on the bus, in order, at least once.

1. Give each unsequenced event the next ``seq`` (one transaction; only the leader does this).
2. Publish sequenced-but-unpublished events in seq order, then mark them published.
A crash after step 1 or during step 2 only means the same events (same seq) are published again
after a restart; consumers drop what they have already seen by seq. No event is ever lost.
"""

from __future__ import annotations

import structlog

from threadline.bus.base import Bus, Envelope
from threadline.db.leader import LeaderLock
from threadline.db.repos import plumbing as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.metrics import EVENTS_PUBLISHED
from threadline.workers.loop import BackgroundLoop

log = structlog.get_logger(__name__)
BATCH = 500


class Relay(BackgroundLoop):
    name = "outbox-relay"

    def __init__(self, db: Database, bus: Bus, *, poll_seconds: float = 0.5) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.bus = bus
        self.leader = LeaderLock(db, "relay")
        self._published: list[int] = []  # published on the bus, to be marked in the next write
        bus.on_wake(self.wake)

    async def tick(self) -> float | None:
        if await self.leader.try_acquire():
            while not self._stopping.is_set() and await self.relay_once():
                pass
        return None

    async def on_stop(self) -> None:
        if self._published and self.leader.held:
            async with self.db.transaction(write=True) as session:
                await repo.mark_published(session, self._published, utcnow())
            self._published = []
        await self.leader.release()

    async def relay_once(self) -> int:
        """Sequence and publish one batch; return how many events were published.

        One write transaction per round: it marks the previous round's events published, gives the new
        ones their seq and reads what is to be published. A crash before the next round only means the
        last batch is published again with the same seqs, which consumers drop.
        """
        async with self.db.transaction(write=True) as session:
            if self._published:
                await repo.mark_published(session, self._published, utcnow())
                self._published = []
            rows = await repo.sequence_and_fetch(session, BATCH)
            envelopes = [Envelope(seq=r.seq or 0, name=r.name, payload=r.payload, audience=r.audience,
                                  created_at=r.created_at) for r in rows]
        if not envelopes:
            return 0
        await self.bus.publish(envelopes)
        self._published = [r.id for r in rows]
        EVENTS_PUBLISHED.inc(len(envelopes))
        return len(envelopes)
