"""Outbox followers: named readers of the durable event log that act on events exactly once.

A follower reads the outbox table (the log the live stream resumes from) in ``seq`` order after its
stored cursor (``outbox_cursors``, one row per follower name) and handles each batch in **one** write
transaction with its side effects and the cursor's move, so an event is never lost or handled twice,
whatever crashes. One process at a time follows a given name (``LeaderLock(name)``); the bus only
wakes it (when a published event is one it wants), a poll every ``poll_seconds`` is the backstop.

Events it does not want move the cursor in memory only, stored every few seconds: a follower of rare
events costs almost nothing on a busy log. A new follower starts at the log's end (history is not
replayed). A batch whose handling fails is rolled back and tried again (logged); events are never
skipped, so a handler must cope with what it cannot act on (a conversation deleted since) by ignoring
it. The webhook dispatcher and the conversation SLA clock are followers.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import followers as actions
from threadline.bus.base import Envelope
from threadline.db.leader import LeaderLock
from threadline.db.repos import plumbing as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.events import Event, event_names, parse_event
from threadline.loop import BackgroundLoop

BATCH = 500
STORE_CURSOR_EVERY = 5.0  # seconds: how often a cursor moved past unwanted events is stored
# Seconds a woken follower waits before reading, so that a burst of commits is handled in one batch (one
# write transaction) instead of one transaction per commit competing with the inbox for the writer.
SETTLE_SECONDS = 0.1

Clock = Callable[[], datetime]
EventHead = repo.EventHead


@dataclass(frozen=True, slots=True)
class Followed:
    """An event handed to a follower: its position, name, time and payload (``{}`` for a follower
    that reads heads only)."""

    seq: int
    name: str
    created_at: datetime
    payload: dict[str, Any]

    def event(self) -> Event:
        """The payload decoded through the typed event union (``domain/events.py``)."""
        return parse_event(self.payload)


class OutboxFollower(BackgroundLoop):
    name = "outbox-follower"
    needs_payload = True  # False: handle() gets heads only (seq, name, time), which are cheaper to read
    follows: tuple[type[BaseModel], ...] = ()  # the event classes it handles (none: every event, or see wants)
    settle_seconds = SETTLE_SECONDS

    def __init__(self, db: Database, follower: str, *, batch: int = BATCH, poll_seconds: float = 2.0,
                 clock: Clock = utcnow) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.follower = follower
        self.batch = batch
        self.clock = clock
        self.leader = LeaderLock(db, follower)
        self._seen: int | None = None  # last seq looked at; ahead of the stored cursor when nothing was wanted
        self._stored: int | None = None
        self._stored_at = 0.0
        self._follows = event_names(*self.follows)

    # --- what a follower defines ---------------------------------------------------------------------

    def wants(self, head: EventHead) -> bool:
        """Whether this event is one to handle (the rest only move the cursor): by default, one of the
        classes in ``follows`` (every event when it names none)."""
        return not self._follows or head.name in self._follows

    def relevant(self, event: Followed) -> bool:
        """Whether a wanted event, with its payload, needs handling (the rest only move the cursor, as
        unwanted ones do): a follower whose events matter only sometimes (the SLA clock reads every
        ``message.created`` for the replies among them) spares a write transaction for a batch of none."""
        return True

    async def prepare(self, session: AsyncSession) -> bool:
        """Read what ``wants`` needs, in each step's read transaction (e.g. the subscriptions); False:
        nothing can be wanted now, so the cursor skips to the log's end."""
        return True

    @abstractmethod
    async def handle(self, session: AsyncSession, events: list[Followed]) -> None:
        """Act on wanted events, in order, in the write transaction that also moves the cursor."""

    # --- the loop ------------------------------------------------------------------------------------

    def on_event(self, env: Envelope) -> None:
        """A bus subscriber: the leader wakes when a published event is one it wants."""
        if self.leader.held and self.wants(EventHead(env.seq, env.name, env.created_at)):
            self.wake()

    async def tick(self) -> float | None:
        if not await self.leader.try_acquire():
            self._seen = self._stored = None  # another process leads: re-read the cursor when we do
            return None
        if self.settle_seconds:
            await asyncio.sleep(self.settle_seconds)
        while not self._stopping.is_set():
            looked = await self.follow_once()
            if looked < self.batch:  # caught up (a full batch means more are waiting: go on at once)
                break
        return None

    async def on_stop(self) -> None:
        if self.leader.held and self._seen is not None and self._stored is not None and self._seen > self._stored:
            try:
                await self._store_cursor()
            except Exception:  # noqa: BLE001 - the next leader re-reads a little more, nothing is lost
                pass
        await self.leader.release()

    async def follow_once(self) -> int:
        """One step; how many events were looked at (0: caught up)."""
        async with self.db.transaction(write=False) as session:
            if self._seen is None:
                self._seen = self._stored = await repo.get_cursor(session, self.follower)
            last = await repo.max_seq(session)
            active = await self.prepare(session)
            heads = await repo.event_heads_after(session, self._seen, self.batch) \
                if self._seen is not None and active and last > self._seen else []
            wanted = [h for h in heads if self.wants(h)]
            bodies = await repo.events_by_seqs(session, {h.seq for h in wanted}) \
                if wanted and self.needs_payload else {}
        if self._seen is None:  # never ran: start at the log's end
            async with self.db.transaction(write=True) as session:
                self._seen = self._stored = await actions.start_cursor(session, self.follower, self.clock())
            self._stored_at = time.monotonic()
            return 0
        if not active:
            self._seen = max(self._seen, last)
            await self._maybe_store_cursor()
            return 0
        if not heads:
            await self._maybe_store_cursor()
            return 0
        # outbox rows never change once written: the payloads read above are the ones to handle
        events = [e for e in (Followed(h.seq, h.name, h.created_at, bodies[h.seq].payload if h.seq in bodies else {})
                              for h in wanted) if self.relevant(e)]
        if not events:
            self._seen = heads[-1].seq
            await self._maybe_store_cursor()
            return len(heads)
        async with self.db.transaction(write=True) as session:
            stored = await actions.lock_cursor(session, self.follower)
            if stored != self._stored:  # another process led meanwhile: go on from where it stopped
                self._seen = self._stored = stored
                return 1
            await self.handle(session, events)
            await actions.move_cursor(session, self.follower, heads[-1].seq, self.clock())
        self._seen = self._stored = heads[-1].seq
        self._stored_at = time.monotonic()
        return len(heads)

    async def _maybe_store_cursor(self) -> None:
        if self._seen is not None and self._seen != self._stored \
                and time.monotonic() - self._stored_at >= STORE_CURSOR_EVERY:
            await self._store_cursor()

    async def _store_cursor(self) -> None:
        assert self._seen is not None
        async with self.db.transaction(write=True) as session:
            await actions.advance_cursor(session, self.follower, self._seen, self.clock())
        self._stored, self._stored_at = self._seen, time.monotonic()
