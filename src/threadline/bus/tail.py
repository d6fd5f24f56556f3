"""The tail bus: several processes on one host, no Redis. Each process follows the outbox by ``seq``.

The outbox table is already the ordered event log: on SQLite a writer gives its events their seq when it
inserts them and writers hold the database's write lock in turn, so seqs commit in order; on PostgreSQL
the relay leader gives seqs in one transaction per batch. Either way, once an event with seq N is
visible, every event below N is too. So every process reads the events after the last seq it delivered,
in seq order, and hands them to its own subscribers (the live stream's websockets, the typed
subscriptions of the router and the CRM lookup, the followers' wake-ups): each subscriber of each process
sees each event once, in order, whichever process wrote it.

The relay leader keeps publishing (it marks events published, and on PostgreSQL gives them their seq);
its ``publish`` here delivers to this process directly (when the batch follows on from what was
delivered, else the tail reads it) and wakes the other processes' tails with a datagram (siblings.py).
``wake`` (a commit woke a loop that leads in another process) reaches every other process's
``on_wake`` callbacks. Both are hints; a short poll (``poll_seconds``) is the backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog

from threadline.bus.base import Envelope
from threadline.bus.memory import LocalFanout
from threadline.db.repos import plumbing as repo
from threadline.db.session import Database
from threadline.siblings import Siblings

log = structlog.get_logger(__name__)

BATCH = 500
TAIL = b"t"  # new events are visible: read them
WAKE = b"w"  # and wake the on_wake loops


class TailBus(LocalFanout):
    crosses_processes = True

    def __init__(self, db: Database, folder: Path, *, poll_seconds: float = 0.5, batch: int = BATCH) -> None:
        super().__init__()
        self.db = db
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.siblings = Siblings(folder, self._on_message)
        self.last = 0  # the highest seq delivered to this process's subscribers
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.db.transaction(write=False) as session:
            self.last = await repo.max_seq(session)  # from now on: earlier events are the stores' backlog
        self.siblings.open()
        self._task = asyncio.create_task(self._follow(), name="tail-bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.siblings.close()

    async def publish(self, envelopes: list[Envelope]) -> None:
        """The relay leader published these (committed, sequenced): deliver them here if they follow on from
        what this process delivered, and tell the other processes to read."""
        fresh = [e for e in envelopes if e.seq > self.last]
        if fresh and all(e.seq == self.last + 1 + i for i, e in enumerate(fresh)):
            self._deliver(fresh)
        elif fresh:
            self._poke.set()
        if envelopes:
            self.siblings.send(TAIL)

    async def wake(self) -> None:
        self.siblings.send(WAKE)

    def poke(self) -> None:
        """Read the outbox now (tests; a writer of this process that knows it committed events)."""
        self._poke.set()

    def _on_message(self, messages: set[bytes]) -> None:
        self._poke.set()
        if WAKE in messages:
            self.fire_wake()

    def _deliver(self, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            if env.seq <= self.last:  # the relay delivered it while we were reading
                continue
            self.last = env.seq
            for fn in list(self._subscribers):
                try:
                    fn(env)
                except Exception:  # noqa: BLE001 - one subscriber's bug must not cost the others the event
                    log.exception("tail_bus_subscriber_failed", name=env.name, seq=env.seq)

    async def read_once(self) -> int:
        """Deliver the events after ``last`` (one batch); how many were read."""
        async with self.db.transaction(write=False) as session:
            rows = await repo.sequenced_after(session, self.last, self.batch)
        self._deliver([Envelope(seq=r.seq, name=r.name, payload=r.payload, audience=r.audience,
                                created_at=r.created_at) for r in rows])
        return len(rows)

    async def _follow(self) -> None:
        while True:
            self._poke.clear()
            try:
                if await self.read_once() >= self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a locked or briefly unavailable database: next round
                log.warning("tail_bus_read_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.poll_seconds)
