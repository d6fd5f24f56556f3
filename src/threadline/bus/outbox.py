"""The relay: publishes committed outbox events on the bus, in order, at least once.

1. Give each unsequenced event the next ``seq`` (PostgreSQL: the leader does this in one transaction;
   SQLite: the writer does it when it inserts the events, see actions/events.py).
2. Publish sequenced-but-unpublished events in seq order, then mark them published.
A crash after step 1 or during step 2 only means the same events (same seq) are published again
after a restart; consumers drop what they have already seen by seq. No event is ever lost.
"""

from __future__ import annotations

import time

import structlog

from threadline.bus.base import Bus, Envelope
from threadline.db.leader import LeaderLock
from threadline.db.repos import plumbing as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.loop import BackgroundLoop
from threadline.metrics import EVENTS_PUBLISHED

log = structlog.get_logger(__name__)
BATCH = 500


class Relay(BackgroundLoop):
    name = "outbox-relay"
    wakes_on = frozenset({"events"})

    def __init__(self, db: Database, bus: Bus, *, poll_seconds: float = 0.5, mark_every: float = 1.0) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.bus = bus
        self.leader = LeaderLock(db, "relay")
        self.mark_every = mark_every
        self._published: list[int] = []  # published on the bus, not yet marked in the database
        self._last_marked = time.monotonic()
        self._last_seq = 0  # the highest seq published by this process
        self._swept = False

    async def tick(self) -> float | None:
        if await self.leader.try_acquire():
            # until a round comes back short: the rows a short round missed committed after its read,
            # and their commit wakes this loop again (``wakes_on``), so no empty read per wake-up
            while not self._stopping.is_set() and await self.relay_once() >= BATCH:
                pass
            if self._published:  # mark what was published, at most once per mark_every
                wait = self._last_marked + self.mark_every - time.monotonic()
                if wait > 0:
                    return min(wait, self.interval)
                await self._mark()
        return None

    async def on_stop(self) -> None:
        if self._published and self.leader.held:
            await self._mark()
        await self.leader.release()

    async def relay_once(self) -> int:
        """Publish one batch; return how many events were published.

        PostgreSQL: one write transaction per round marks the previous round published, gives the new
        events their seq and reads them. SQLite: events get their seq when they are inserted (writers
        take turns, so commit order is seq order) and a round only reads, without the write lock that
        every other writer needs; marks are written at most once per ``mark_every`` seconds. Either way
        a crash before the mark only means events are published again with the same seqs, and
        consumers drop seqs they have seen.
        """
        if self.db.is_sqlite and self._swept:
            async with self.db.transaction(write=False) as session:
                rows = await repo.unpublished_after(session, self._last_seq, BATCH)
            if self._published and time.monotonic() - self._last_marked >= self.mark_every:
                await self._mark()
        else:
            async with self.db.transaction(write=True) as session:
                if self._published:
                    await repo.mark_published(session, self._published, utcnow())
                    self._published, self._last_marked = [], time.monotonic()
                rows = await repo.sequence_and_fetch(session, BATCH)
            self._swept = bool(not rows)  # SQLite: events stored before seq-at-insert are sequenced here
        if not rows:
            return 0
        envelopes = [Envelope(seq=r.seq, name=r.name, payload=r.payload, audience=r.audience,
                              created_at=r.created_at) for r in rows]
        await self.bus.publish(envelopes)
        self._published.extend(r.id for r in rows)
        self._last_seq = max(self._last_seq, rows[-1].seq)
        EVENTS_PUBLISHED.inc(len(envelopes))
        return len(envelopes)

    async def _mark(self) -> None:
        async with self.db.transaction(write=True) as session:
            await repo.mark_published(session, self._published, utcnow())
        self._published, self._last_marked = [], time.monotonic()
