"""The routing worker: runs the routing driver (``domain/routing/driver.py``) against the database, one
leader at a time. The driver holds the rules; this worker holds leadership, the reads, the writes and
the bus.

* Leadership: ``LeaderLock("router")`` (PostgreSQL advisory lock, a file lock on SQLite). A process
  that is not the leader keeps no routing state; when it becomes leader it **rebuilds** the driver
  from the database (tasks, open offers, roster, settings) and reconciles every conversation.
* Input: typed subscriptions (``bus/typed.py``) to the events that concern it mark conversations,
  contacts, agents and settings dirty (conversation created/updated, contact updated, presence changed, offers answered,
  settings changed); a full reconciliation every ``reconcile_seconds`` catches anything missed. Each
  round reads the dirty conversations in one query and hands them to the driver.
* Output: one write transaction per round (group commit) holds the new and changed tasks, the
  offers and their outcomes, and their events, written with executemany statements. If it fails
  the in-memory engine is dropped and rebuilt from the database, so memory never runs ahead of it.
* Answers from agents (accept, reject, pick) are written by actions; the router reads offer rows
  back (locked) before timing an offer out, so an accept racing a timeout has one winner.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TypeAlias

import structlog

from threadline.actions import routing as actions
from threadline.bus.base import Envelope
from threadline.bus.typed import TypedSubscriptions
from threadline.channels.registry import get_adapter_class
from threadline.db.leader import LeaderLock
from threadline.db.repos import routing as repo
from threadline.db.session import Database
from threadline.domain.events import (
    ContactUpdated,
    ConversationCreated,
    ConversationUpdated,
    PresenceChanged,
)
from threadline.domain.routing import Channel, RoutingEngine
from threadline.domain.routing.driver import RoutingDriver
from threadline.domain.routing.events import (
    OfferEnded,
    RoutingSettingsChanged,
    TaskPicked,
    WrapUpEndRequested,
)
from threadline.domain.routing.records import Restore, RoundInput
from threadline.domain.stream import Published
from threadline.loop import BackgroundLoop

log = structlog.get_logger(__name__)

# The events that concern the router (only these are decoded for it).
WANTED = (ConversationCreated, ConversationUpdated, ContactUpdated, OfferEnded, TaskPicked, PresenceChanged,
          WrapUpEndRequested, RoutingSettingsChanged)
RouterEvent: TypeAlias = (ConversationCreated | ConversationUpdated | ContactUpdated | OfferEnded | TaskPicked | PresenceChanged
               | WrapUpEndRequested | RoutingSettingsChanged)


def work_class(kind: str | None) -> Channel:
    """The work class a channel's adapter declares (``Capabilities.work_class``); ``messaging`` for a
    kind no adapter claims."""
    adapter = get_adapter_class(kind) if kind else None
    return adapter.capabilities.work_class if adapter is not None else "messaging"


class RoutingWorker(BackgroundLoop):
    name = "router"

    def __init__(self, db: Database, events: TypedSubscriptions, *, interval: float = 1.0, reconcile_seconds: float = 10.0,
                 state_seconds: float = 2.0, batch: int = 5000, clock: Callable[[], float] = time.time) -> None:
        super().__init__(interval=interval)
        self.db = db
        self.leader = LeaderLock(db, "router")
        self.reconcile_seconds = reconcile_seconds
        self.state_seconds = state_seconds
        self.clock = clock
        self.driver = RoutingDriver(work_class=work_class, batch=batch, timer=time.perf_counter)
        self.rounds = 0  # committed rounds (tests wait on it)
        self.rebuilds = 0
        self._dirty: set[int] = set()
        self._dirty_users: set[int] = set()
        self._dirty_contacts: set[int] = set()
        self._reload = False
        self._reset()
        for cls in WANTED:
            events.subscribe(cls, self._on_event, on_invalid=self._on_invalid)

    @property
    def engine(self) -> RoutingEngine | None:
        return self.driver.engine

    def _reset(self) -> None:
        self.driver.clear()
        self._wrap_done: set[int] = set()  # agents said they are ready before their wrap-up ended
        self._next_full = 0.0
        self._next_roster = 0.0
        self._next_state = 0.0

    # ------------------------------------------------------------------ input

    def _on_event(self, published: Published[RouterEvent]) -> None:
        if not self.leader.held:
            return
        event = published.event
        match event:
            case ConversationCreated() | ConversationUpdated():
                self._dirty.add(event.conversation.id)
            case OfferEnded() | TaskPicked():
                self._dirty.add(event.conversation_id)
            case ContactUpdated():  # a CRM flag (vip), a language: its waiting tasks re-rank
                self._dirty_contacts.add(event.contact.id)
            case PresenceChanged():
                self._dirty_users.add(event.user_id)
            case WrapUpEndRequested():
                self._wrap_done.add(event.conversation_id)
            case RoutingSettingsChanged():
                if event.queue_ids or not event.agent_ids:  # queues or engine settings: reload them
                    self._reload = True
                self._dirty_users.update(event.agent_ids)  # a profile, skills, queues or teams: re-read that agent
            case _:
                return
        self.wake()

    def _on_invalid(self, env: Envelope) -> None:
        """An event it wants that does not parse: the next round reconciles everything, so it catches up."""
        if self.leader.held:
            log.warning("router_event_not_understood", name=env.name, seq=env.seq)
            self._next_full = 0.0
            self.wake()

    # ------------------------------------------------------------------ loop

    async def tick(self) -> float | None:
        if not await self.leader.try_acquire():
            if self.engine is not None:
                log.warning("router_lost_leadership")
                self._reset()
            return None
        try:
            if self.engine is None:
                await self.rebuild()
            for _ in range(100):  # keep going while there is work, but let the loop breathe
                more = await self.round()
                if not more or self._stopping.is_set():
                    break
        except Exception:
            log.exception("router_round_failed_rebuilding")
            self._reset()
            raise
        return self._next_wait()

    def _next_wait(self) -> float:
        now = self.clock()
        due = [self._next_full, self._next_state]
        timer = self.driver.next_due() if self.engine is not None else None
        if timer is not None:  # offer expiry, escalation, wrap-up and cool-down timers
            due.append(timer)
        return max(0.005, min(min(due) - now, self.interval))

    async def on_stop(self) -> None:
        await self.leader.release()
        self._reset()

    # ------------------------------------------------------------------ rebuild

    async def rebuild(self) -> None:
        """Build the driver's engine from the database: settings, roster, tasks and open offers."""
        now = self.clock()
        self._reset()
        async with self.db.transaction(write=False) as session:
            queues = await actions.routing_queues(session)
            config = await actions.engine_settings(session)
            roster = await repo.roster(session)
            tasks = await repo.all_tasks(session)
            offers = await repo.open_offers(session)
            next_offer = await repo.max_offer_id(session) + 1
            names = await repo.contact_names(session, [t.conversation_id for t in tasks])
        self._wrap_done |= self.driver.rebuild(Restore(queues, config, roster, tasks, offers, next_offer, names), now)
        self.rebuilds += 1
        self._next_full = 0.0  # reconcile everything in the first round
        self._next_roster = now + self.reconcile_seconds * 6  # just loaded
        log.info("router_rebuilt", tasks=len(tasks), offers=len(offers), agents=len(roster))

    # ------------------------------------------------------------------ one round

    async def round(self) -> bool:
        """Read what changed, let the driver apply it and decide, write it all in one transaction.
        True if more is due."""
        drv = self.driver
        now = self.clock()
        full = now >= self._next_full
        dirty, self._dirty = self._dirty, set()
        users, self._dirty_users = self._dirty_users, set()
        contacts, self._dirty_contacts = self._dirty_contacts, set()
        wrap_done, self._wrap_done = self._wrap_done, set()
        reload, self._reload = self._reload, False
        if reload:
            async with self.db.transaction(write=False) as session:
                if await actions.engine_settings(session) != drv.config:  # start again from the database
                    await self.rebuild()
                    return True
        roster_due = full and now >= self._next_roster
        inp = RoundInput(now=now, wrap_done=wrap_done, state=now >= self._next_state)
        async with contextlib.AsyncExitStack() as stack:  # a write transaction only when there is work
            session = None
            if full or dirty or users or contacts or reload:
                session = await stack.enter_async_context(self.db.transaction(write=True))
                if reload or full:
                    inp.queues = await actions.routing_queues(session)
                if full:
                    needing = await repo.needing_human_keys(session)
                    suspects = drv.suspects(needing, await repo.conversation_keys(session, drv.unmatched(needing)))
                    suspects |= dirty
                    inp.wrap_done.update(await repo.wrap_end_requests(session))  # a "Ready" whose event was missed
                else:
                    suspects = set(dirty)
                if contacts:
                    suspects.update(await repo.waiting_of_contacts(session, list(contacts)))
                states = await repo.conversations(session, list(suspects)) if suspects else {}
                inp.conversations, inp.gone = states, suspects - states.keys()
                if inp.queues is None and not drv.knows_queues(states.values()):
                    inp.queues = await actions.routing_queues(session)  # a queue created since the last load
                if roster_due or reload:
                    inp.roster = await repo.roster(session)
                elif users:
                    inp.roster, inp.roster_scope = await repo.roster(session, list(users)), users
                new = drv.sticky_candidates(states.values(), inp.queues)
                if new:
                    inp.last_agents = await repo.last_agents(session, [c.contact_id for c in new], [c.id for c in new])
            check = drv.offers_to_check(now, dirty, full)
            if check:
                if session is None:
                    session = await stack.enter_async_context(self.db.transaction(write=True))
                inp.offers = await repo.lock_offers(session, check)
            d = drv.step(inp)
            if inp.state:  # it reads every waiting task: at most ~5% of the time, however long the queues get
                self._next_state = now + max(self.state_seconds, 20 * d.state_cost)
            for queue_id, message in d.refused_queues:
                log.error("router_queue_settings_refused", queue_id=queue_id, error=message)
            self._dirty |= d.reread
            if d:
                if session is None:
                    session = await stack.enter_async_context(self.db.transaction(write=True))
                await actions.record_decisions(session, d)
        # periodic work that reads everything is kept to a small share of the time (~5%)
        spent = self.clock() - now
        if full:
            self._next_full = now + max(self.reconcile_seconds, 20 * spent)
        if roster_due:
            self._next_roster = now + max(self.reconcile_seconds * 6, 20 * spent)
        self.rounds += 1
        return d.more or bool(self._dirty) or bool(self._dirty_users) or bool(self._dirty_contacts)
