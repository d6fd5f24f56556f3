"""The routing worker: runs the pure routing engine against the database, one leader at a time.

* Leadership: ``LeaderLock("router")`` (PostgreSQL advisory lock, a file lock on SQLite). A process
  that is not the leader keeps no routing state; when it becomes leader it **rebuilds** the engine
  from the database (tasks, open offers, roster, settings) and reconciles every conversation.
* Input: bus events mark conversations, agents and settings dirty (conversation created/updated,
  presence changed, offers answered, settings changed); a full reconciliation every
  ``reconcile_seconds`` catches anything missed. Each round reads the dirty conversations in one
  query and applies them to the engine.
* Output: one write transaction per round (group commit) holds the new and changed tasks, the
  offers and their outcomes, and their events, written with executemany statements. If it fails
  the in-memory engine is dropped and rebuilt from the database, so memory never runs ahead of it.
* Answers from agents (accept, reject, pick) are written by actions; the router reads offer rows
  back (locked) before timing an offer out, so an accept racing a timeout has one winner.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from threadline.actions import routing as actions
from threadline.bus.base import Bus, Envelope
from threadline.db.leader import LeaderLock
from threadline.db.repos import routing as repo
from threadline.db.session import Database
from threadline.domain.errors import DomainError
from threadline.domain.routing import (
    Agent,
    Assignment,
    Completed,
    OfferOutcome,
    OfferRecord,
    QueueConfig,
    RoutingEngine,
    RoutingSnapshot,
    Task,
    TaskRemoved,
    WrapUpEnded,
)
from threadline.domain.routing_events import (
    AgentState,
    OfferCreated,
    OfferEnded,
    QueueState,
    RoutingState,
    SlaAlert,
    TaskUnroutable,
    WrapUp,
)
from threadline.domain.routing_settings import QueueRouting, task_for
from threadline.loop import BackgroundLoop

log = structlog.get_logger(__name__)

_CONV_EVENTS = {"conversation.created", "conversation.updated"}
_OFFER_EVENTS = {"routing.offer_ended", "routing.task_picked"}


class Router(BackgroundLoop):
    name = "router"

    def __init__(self, db: Database, bus: Bus, *, interval: float = 1.0, reconcile_seconds: float = 10.0,
                 state_seconds: float = 2.0, batch: int = 5000, clock: Callable[[], float] = time.time) -> None:
        super().__init__(interval=interval)
        self.db = db
        self.bus = bus
        self.leader = LeaderLock(db, "router")
        self.reconcile_seconds = reconcile_seconds
        self.state_seconds = state_seconds
        self.batch = batch
        self.clock = clock
        self.engine: RoutingEngine | None = None
        self.rounds = 0  # committed rounds (tests wait on it)
        self.rebuilds = 0
        self._dirty: set[int] = set()
        self._dirty_users: set[int] = set()
        self._reload = False
        self._reset()
        bus.subscribe(self._on_event)

    def _reset(self) -> None:
        self.engine = None
        self._queues: dict[int, Any] = {}
        self._cfgs: dict[int, QueueConfig] = {}
        self._agents: dict[int, Agent] = {}
        self._offer_of: dict[int, int] = {}  # task -> open offer id
        self._expiry: list[tuple[float, int]] = []
        self._names: dict[int, str] = {}
        self._positions: dict[int, tuple[int, float | None, str]] = {}
        self._sla: dict[int, str] = {}
        self._wrap_done: set[int] = set()  # agents said they are ready before their wrap-up ended
        self._wait_from: dict[int, float] = {}  # given back: this wait counts from the re-queue, not the enqueue
        self._unroutable: set[int] = set()
        self._loads: dict[int, tuple[bool, tuple[tuple[str, int], ...]]] = {}
        self._queue_state: dict[int, QueueState] = {}
        self._next_full = 0.0
        self._next_roster = 0.0
        self._next_state = 0.0

    # ------------------------------------------------------------------ input

    def _on_event(self, env: Envelope) -> None:
        if not self.leader.held:
            return
        name = env.name
        if name in _CONV_EVENTS:
            self._dirty.add(env.payload["conversation"]["id"])
        elif name in _OFFER_EVENTS:
            self._dirty.add(env.payload["conversation_id"])
        elif name == "user.presence_changed":
            self._dirty_users.add(env.payload["user_id"])
        elif name == "routing.wrap_up_end_requested":
            self._wrap_done.add(env.payload["conversation_id"])
        elif name == "routing.settings_changed":
            agents = env.payload.get("agent_ids", [])
            if env.payload.get("queue_ids") or not agents:  # queues or engine settings: reload them
                self._reload = True
            self._dirty_users.update(agents)  # a profile, skills, queues or teams: re-read that agent
        else:
            return
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
        if self._expiry:
            due.append(self._expiry[0][0])
        timer = self.engine.next_timer_at() if self.engine is not None else None
        if timer is not None:  # escalation, wrap-up and cool-down timers
            due.append(timer)
        return max(0.005, min(min(due) - now, self.interval))

    async def on_stop(self) -> None:
        await self.leader.release()
        self._reset()

    # ------------------------------------------------------------------ rebuild

    async def _load_queues(self, session: Any) -> None:
        records = await repo.queues(session)
        self._queues = {r.id: actions.queue_parts(r) for r in records}
        self._cfgs = actions.to_configs(records)

    async def rebuild(self) -> None:
        """Build the engine from the database: settings, roster, tasks and open offers."""
        now = self.clock()
        self._reset()
        async with self.db.transaction(write=False) as session:
            await self._load_queues(session)
            config = await actions.engine_settings(session)
            roster = await repo.roster(session)
            rows = await repo.all_tasks(session)
            offers = await repo.open_offers(session)
            next_offer = await repo.max_offer_id(session) + 1
            names = await repo.contact_names(session, [r["task"]["id"] for r in rows])
        agents = [actions.to_agent(r) for r in roster]
        self._agents = {a.id: a for a in agents}
        self._names = names
        tasks = []
        for row in rows:
            data = dict(row["task"])
            data.update(status=row["status"], agent_id=row["agent_id"])
            task = Task.model_validate(data)
            if task.queue_id in self._cfgs:
                tasks.append(task)
                if row["sla_state"]:  # announced before the restart: not again
                    self._sla[task.id] = row["sla_state"]
                if row["status"] == "wrapping" and row["wrap_ended_at"] is not None:  # "Ready" was said
                    self._wrap_done.add(task.id)
        known = {t.id for t in tasks}
        records = [OfferRecord(offer_id=o.id, task_id=o.conversation_id, agent_id=o.agent_id,
                               offered_at=o.offered_at, expires_at=o.expires_at)
                   for o in offers if o.conversation_id in known]
        snap = RoutingSnapshot(agents=agents, tasks=tasks, offers=records, next_offer_id=next_offer)
        self.engine = RoutingEngine.from_snapshot(snap, self._cfgs, config, now=now)
        for o in records:
            self._offer_of[o.task_id] = o.offer_id
            heapq.heappush(self._expiry, (o.expires_at, o.offer_id))
        self.rebuilds += 1
        self._next_full = 0.0  # reconcile everything in the first round
        self._next_roster = now + self.reconcile_seconds * 6  # just loaded
        log.info("router_rebuilt", tasks=len(tasks), offers=len(records), agents=len(agents))

    # ------------------------------------------------------------------ one round

    async def round(self) -> bool:
        """Read what changed, apply it, decide, write it all in one transaction. True if more is due."""
        eng = self.engine
        assert eng is not None
        now = self.clock()
        full = now >= self._next_full
        dirty, self._dirty = self._dirty, set()
        users, self._dirty_users = self._dirty_users, set()
        wrap_done, self._wrap_done = self._wrap_done, set()
        reload, self._reload = self._reload, False
        if reload:
            async with self.db.transaction(write=False) as session:
                if await actions.engine_settings(session) != eng.config:  # start again from the database
                    await self.rebuild()
                    return True
        roster_due = full and now >= self._next_roster
        states: dict[int, repo.ConversationState] = {}
        gone: set[int] = set()
        roster: list[repo.AgentRecord] | None = None
        reload_queues = reload or full
        last: dict[int, int] = {}
        d = actions.Decisions()
        touched: set[int] = set()
        created: set[int] = set()
        async with contextlib.AsyncExitStack() as stack:  # a write transaction only when there is work
            session = None
            if full or dirty or users or reload:
                session = await stack.enter_async_context(self.db.transaction(write=True))
                if reload_queues:
                    await self._load_queues(session)
                if full:
                    suspects = await self._suspects(session) | dirty
                    wrap_done.update(await repo.wrap_end_requests(session))  # a "Ready" whose event was missed
                else:
                    suspects = dirty
                states = await repo.conversations(session, list(suspects)) if suspects else {}
                gone = suspects - states.keys()
                if any(c.queue_id is not None and c.queue_id not in self._cfgs for c in states.values()):
                    await self._load_queues(session)  # a queue created since the last load
                    reload_queues = True
                if roster_due or reload:
                    roster = await repo.roster(session)
                elif users:
                    roster = await repo.roster(session, list(users))
                new = [c for c in states.values() if c.needs_human and not eng.has_task(c.id)]
                if new and any(r.sticky_seconds > 0 for _, r in self._queues.values()):
                    last = await repo.last_agents(session, [c.contact_id for c in new], [c.id for c in new])
            if reload_queues:
                self._apply_queues(now, touched)
            if roster is not None:
                self._apply_roster(roster, now, d, touched,
                                   remove=None if roster_due or reload else users)
            if full:  # every open offer: an answer whose event was missed is read back here
                check = list(self._offer_of.values())
            else:
                check = [self._offer_of[i] for i in dirty if i in self._offer_of]
            while self._expiry and self._expiry[0][0] <= now:
                check.append(heapq.heappop(self._expiry)[1])
            if check:
                if session is None:
                    session = await stack.enter_async_context(self.db.transaction(write=True))
                await self._apply_offer_rows(await repo.lock_offers(session, check), now, d, touched)
            for c in sorted(states.values(), key=lambda c: c.id):  # ties in age: oldest id first
                self._apply_conversation(c, now, d, touched, created, last)
            for tid in gone:  # the conversation was deleted
                self._drop(tid, now, d, touched)
            for tid in wrap_done:
                view = eng.task_view(tid)
                if view is not None and view.status == "wrapping":
                    self._handled(eng.end_wrap_up(tid, now), d, touched, ended_by="agent")
            eng.set_closed(self._closed_queues(now))
            offers = eng.decide(now, self.batch)
            for o in offers:
                touched.add(o.task_id)
                self._offer_of[o.task_id] = o.offer_id
                heapq.heappush(self._expiry, (o.expires_at, o.offer_id))
                view = eng.task_view(o.task_id)
                assert view is not None
                d.offers.append(OfferCreated(offer_id=o.offer_id, conversation_id=o.task_id, agent_id=o.agent_id,
                                             queue_id=o.queue_id, channel=o.channel,
                                             contact_name=self._names.get(o.task_id, ""),
                                             waited_seconds=now - view.enqueued_at, offered_at=o.offered_at,
                                             expires_at=o.expires_at))
            for ev in eng.drain_events():
                touched.add(ev.task_id)
                if isinstance(ev, WrapUpEnded):  # its timer ran out
                    self._handled(ev, d, touched, ended_by="timer")
            if now >= self._next_state:
                self._state_round(now, d)
            self._collect(touched, created, now, d)
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
        return len(offers) >= self.batch or bool(self._dirty) or bool(self._dirty_users)

    async def _suspects(self, session: Any) -> set[int]:
        """The reconciliation: conversations whose state may disagree with the engine's (a missed
        event), found from narrow key columns; only those are then read in full."""
        eng = self.engine
        assert eng is not None
        needing = await repo.needing_human_keys(session)
        views = eng.task_views()
        keys = await repo.conversation_keys(session, [v.id for v in views if v.id not in needing])
        out: set[int] = set()
        for cid, qid in needing.items():
            v = eng.task_view(cid)
            if v is None or v.status in ("assigned", "wrapping") or v.origin_queue_id != qid:
                out.add(cid)
        for v in views:
            if v.id in needing:
                continue
            k = keys.get(v.id)
            if k is None or v.status in ("waiting", "offered"):
                out.add(v.id)
            elif v.status == "assigned" and not (k[0] == "open" and v.agent_id is not None and k[2] == v.agent_id):
                out.add(v.id)
        return out

    # ------------------------------------------------------------------ applying changes

    def _apply_queues(self, now: float, touched: set[int]) -> None:
        eng = self.engine
        assert eng is not None
        pending = [(qid, cfg) for qid, cfg in self._cfgs.items() if eng.queue_config(qid) != cfg]
        # Several passes: a queue that overflows to a queue created in the same reload waits for it.
        while pending:
            refused: list[tuple[int, Any, str]] = []
            for qid, cfg in pending:
                try:
                    eng.set_queue(qid, cfg, now)
                except DomainError as exc:
                    refused.append((qid, cfg, exc.message))
                    continue
                touched.update(eng.queue_now(qid, now).waiting_ids)
            if len(refused) == len(pending):  # no progress: these settings cannot be applied
                for qid, _, message in refused:
                    log.error("router_queue_settings_refused", queue_id=qid, error=message)
                break
            pending = [(qid, cfg) for qid, cfg, _ in refused]

    def _apply_roster(self, roster: list[repo.AgentRecord], now: float, d: actions.Decisions, touched: set[int],
                      *, remove: set[int] | None) -> None:
        """Apply agents read from the database. ``remove=None``: the whole roster was read, so an
        agent missing from it left; otherwise only the agents in ``remove`` that are missing left
        (deactivated, or no longer serving any queue or team)."""
        eng = self.engine
        assert eng is not None
        seen = set()
        for rec in roster:
            agent = actions.to_agent(rec)
            seen.add(agent.id)
            old = self._agents.get(agent.id)
            if old is not None and eng.has_agent(agent.id) and old.model_dump(
                    exclude={"last_idle", "available"}) == agent.model_dump(exclude={"last_idle", "available"}):
                if old.available != agent.available:
                    eng.set_available(agent.id, agent.available, now)
            else:
                eng.upsert_agent(agent, now)
                if eng.is_available(agent.id) != agent.available:
                    eng.set_available(agent.id, agent.available, now)
            self._agents[agent.id] = agent
        missing = [a for a in self._agents if a not in seen] if remove is None else [a for a in remove if a not in seen]
        for aid in missing:
            self._agents.pop(aid, None)
            if eng.has_agent(aid):
                for out in eng.remove_agent(aid, now):
                    self._ended(out, d, touched)

    def _ended(self, out: OfferOutcome, d: actions.Decisions, touched: set[int]) -> None:
        self._offer_of.pop(out.task_id, None)
        touched.add(out.task_id)
        d.ended.append(OfferEnded(offer_id=out.offer_id, conversation_id=out.task_id, agent_id=out.agent_id,
                                  outcome=out.kind, at=out.at))
        if out.agent_away is not None:
            d.away.append(out.agent_away.agent_id)

    # ------------------------------------------------------------------ outcomes (facts for reports)

    def _answered(self, a: Assignment, d: actions.Decisions) -> None:
        """One ``answered`` fact per wait: a conversation given back and answered again waited from
        its re-queue (the routing age it keeps is for its place in the queue, not for ASA)."""
        since = self._wait_from.pop(a.task_id, a.accepted_at - a.wait_seconds)
        wait = max(0.0, a.accepted_at - since)
        cfg = self._cfgs.get(a.queue_id)
        d.outcomes.append({"conversation_id": a.task_id, "queue_id": a.queue_id, "channel": a.channel,
                           "agent_id": a.agent_id, "kind": "answered", "enqueued_at": since,
                           "at": a.accepted_at, "wait_seconds": wait, "handle_seconds": None,
                           "within_target": wait <= cfg.sla.threshold_seconds if cfg else None})

    def _removed(self, r: TaskRemoved, channel: str, d: actions.Decisions, kind: str) -> None:
        d.outcomes.append({"conversation_id": r.task_id, "queue_id": r.queue_id, "channel": channel,
                           "agent_id": None, "kind": kind, "enqueued_at": r.at - r.wait_seconds, "at": r.at,
                           "wait_seconds": r.wait_seconds, "handle_seconds": None, "within_target": None})

    def _completed(self, c: Completed, queue_id: int, channel: str, d: actions.Decisions) -> None:
        """The conversation ended for its agent: handled now, or after a wrap-up (announced to the agent)."""
        if c.wrap_until is None:
            self._handled(WrapUpEnded(c.task_id, c.agent_id, queue_id, c.at, c.talk_seconds, channel), d, None)
        else:
            d.wrap_ups.append(WrapUp(conversation_id=c.task_id, agent_id=c.agent_id, queue_id=queue_id,
                                     state="started", until=c.wrap_until, at=c.at))

    def _handled(self, ev: WrapUpEnded, d: actions.Decisions, touched: set[int] | None,
                 ended_by: str | None = None) -> None:
        d.outcomes.append({"conversation_id": ev.task_id, "queue_id": ev.queue_id, "channel": ev.channel,
                           "agent_id": ev.agent_id, "kind": "handled", "enqueued_at": None, "at": ev.at,
                           "wait_seconds": None, "handle_seconds": ev.handle_seconds, "within_target": None})
        if ended_by is not None:
            assert touched is not None
            touched.add(ev.task_id)
            self._dirty.add(ev.task_id)  # reopened during the wrap-up? the next round re-reads it
            d.wrap_ups.append(WrapUp(conversation_id=ev.task_id, agent_id=ev.agent_id, queue_id=ev.queue_id,
                                     state="ended", at=ev.at, ended_by=ended_by))  # type: ignore[arg-type]

    async def _apply_offer_rows(self, statuses: dict[int, tuple[str, float | None]], now: float,
                                d: actions.Decisions, touched: set[int]) -> None:
        """Offers that are due or whose conversation changed: apply what the database says (an
        accept counts from when the agent accepted, not from when this round saw it)."""
        eng = self.engine
        assert eng is not None
        for oid, (status, ended_at) in sorted(statuses.items()):
            view = eng.offer_task(oid)
            if view is None:
                continue
            touched.add(view.id)
            if status == "open":
                if view.offer_expires_at is not None and view.offer_expires_at <= now:
                    self._ended(eng.timeout(oid, now), d, touched)
                continue
            self._offer_of.pop(view.id, None)
            if status == "accepted":
                at = now if ended_at is None else min(ended_at, now)
                self._answered(eng.accept(oid, at), d)
            elif status == "rejected":
                eng.reject(oid, now)
            else:
                eng.rescind(oid, now)

    def _drop(self, tid: int, now: float, d: actions.Decisions, touched: set[int],
              kind: str | None = "cancelled") -> TaskRemoved | None:
        """The conversation no longer needs routing: a waiting task leaves its queue (recorded as
        ``kind``, or not at all), an assigned one completes (wrap-up); a wrapping one carries on."""
        eng = self.engine
        assert eng is not None
        view = eng.task_view(tid)
        if view is None:
            return None
        if view.status in ("waiting", "offered"):
            touched.add(tid)
            removed = eng.cancel(tid, now, "cancelled")
            if kind is not None:
                self._removed(removed, view.channel, d, kind)
            if removed.rescinded is not None:
                self._ended(removed.rescinded, d, touched)
            return removed
        if view.status == "assigned":
            touched.add(tid)
            self._completed(eng.complete(tid, now), view.queue_id, view.channel, d)
        return None

    def _apply_conversation(self, s: repo.ConversationState, now: float, d: actions.Decisions, touched: set[int],
                            created: set[int], last: dict[int, int]) -> None:
        eng = self.engine
        assert eng is not None
        self._names[s.id] = s.contact_name
        view = eng.task_view(s.id)
        if view is None:
            if s.needs_human:
                self._enqueue(s, now, d, touched, created, last)
            return
        status = view.status
        if s.needs_human:
            if status in ("waiting", "offered") and s.queue_id != view.origin_queue_id:  # moved to another queue
                self._drop(s.id, now, d, touched, kind="transferred")
                self._enqueue(s, now, d, touched, created, last, view.enqueued_at)
            elif status == "assigned":  # the agent gave it back: it waits again, with its age
                self._completed(eng.complete(s.id, now, wrap_up_seconds=0), view.queue_id, view.channel, d)
                touched.add(s.id)
                self._enqueue(s, now, d, touched, created, last, view.enqueued_at)
                self._wait_from[s.id] = now
            return
        if status in ("waiting", "offered") and s.status == "open" and s.assignee_id is not None:
            if status == "offered" and view.agent_id == s.assignee_id:  # accepted: the event may come later
                oid = self._offer_of.pop(s.id, None)
                if oid is not None:
                    self._answered(eng.accept(oid, now), d)
                    touched.add(s.id)
                    return
            if eng.has_agent(s.assignee_id):  # assigned by hand from the desk or the API
                if status == "offered" and view.offer_id is not None:
                    self._ended(eng.rescind(view.offer_id, now), d, touched)
                self._answered(eng.pick(s.assignee_id, s.id, now, force=True), d)
                touched.add(s.id)
                return
            # taken by someone the router does not route to (a supervisor, a user serving no queue):
            # it leaves routing, answered by them
            removed = self._drop(s.id, now, d, touched, kind=None)
            if removed is not None:
                self._answered(Assignment(s.id, s.assignee_id, view.queue_id, view.channel, now,
                                          removed.wait_seconds, None, True), d)
            return
        if status == "assigned" and s.status == "open" and s.assignee_id is not None \
                and view.agent_id == s.assignee_id:
            return
        self._drop(s.id, now, d, touched)

    def _closed_queues(self, now: float) -> list[int]:
        """Queues outside their business hours right now (their tasks wait; nobody gets offers)."""
        at = datetime.fromtimestamp(now, UTC)
        return [qid for qid, (qs, _) in self._queues.items() if not qs.hours.is_open(at)]

    def _enqueue(self, s: repo.ConversationState, now: float, d: actions.Decisions, touched: set[int],
                 created: set[int], last: dict[int, int], enqueued_at: float | None = None) -> None:
        eng = self.engine
        assert eng is not None and s.queue_id is not None
        parts = self._queues.get(s.queue_id)
        if parts is None or eng.queue_config(s.queue_id) is None:
            return  # a queue created since the last reload: the next full reconciliation picks it up
        qs, routing = parts
        task = task_for(conversation_id=s.id, queue_id=s.queue_id, kind=s.kind, priority=s.priority,
                        conversation_attributes=s.attributes, contact_attributes=s.contact_attributes,
                        enqueued_at=enqueued_at if enqueued_at is not None else min(now, s.active_at),
                        queue_settings=qs, routing=routing if isinstance(routing, QueueRouting) else QueueRouting(),
                        last_agent_id=last.get(s.contact_id))
        if eng.has_task(s.id):  # still wrapping up from a previous assignment: wait for it to end
            return
        result = eng.enqueue(task, now)
        touched.add(s.id)
        if self._sla.pop(s.id, None) is not None and enqueued_at is not None:  # waits again: alerts anew
            d.sla_states.append({"b_id": s.id, "sla_state": ""})
        if enqueued_at is None:  # a new row; a re-queued task (moved, given back) updates its row
            created.add(s.id)
        if not result.routable:
            self._unroutable.add(s.id)
            d.unroutable.append(TaskUnroutable(conversation_id=s.id, queue_id=s.queue_id,
                                               reason=result.reason or "no agent can take it"))

    # ------------------------------------------------------------------ writing

    def _collect(self, touched: set[int], created: set[int], now: float, d: actions.Decisions) -> None:
        eng = self.engine
        assert eng is not None
        for tid in touched:
            view = eng.task_view(tid)
            if view is None:
                if tid not in created:
                    d.gone_tasks.append(tid)
                self._positions.pop(tid, None)
                self._sla.pop(tid, None)
                self._wait_from.pop(tid, None)
                self._unroutable.discard(tid)
                continue
            model = eng.get_task(tid).model_dump(mode="json")
            row = {"queue_id": view.queue_id, "channel": view.channel, "status": view.status,
                   "agent_id": view.agent_id, "task": model, "updated_at": now}
            if tid in created:
                row.update(conversation_id=tid, enqueued_at=view.enqueued_at, position=None, ewt_seconds=None,
                           sla_state="", wrap_ended_at=None,
                           note=next((u.reason[:500] for u in d.unroutable if u.conversation_id == tid), ""))
                d.new_tasks.append(row)
            else:
                row["b_id"] = tid
                d.task_updates.append(row)
        d.gone_tasks = [i for i in d.gone_tasks if i not in created]

    def _state_round(self, now: float, d: actions.Decisions) -> None:
        """Every ``state_seconds``: SLA alerts, positions and wait estimates, unroutable notes, and one
        ``routing.state`` event when queues, agents or positions changed (for supervisors' wallboards
        and the customers' queue notices)."""
        eng = self.engine
        assert eng is not None
        started = time.perf_counter()
        for alert in eng.sla_alerts(now):
            if self._sla.get(alert.task_id) != alert.state:
                self._sla[alert.task_id] = alert.state
                d.sla_states.append({"b_id": alert.task_id, "sla_state": alert.state})
                d.sla.append(SlaAlert(conversation_id=alert.task_id, queue_id=alert.queue_id,
                                      state=alert.state, waited_seconds=round(alert.waited_seconds, 1),
                                      threshold_seconds=alert.threshold_seconds))
        notes = {u.task_id: u.reason for u in eng.unroutable(now)}
        for tid in notes.keys() - self._unroutable:
            view = eng.task_view(tid)
            assert view is not None
            d.unroutable.append(TaskUnroutable(conversation_id=tid, queue_id=view.queue_id, reason=notes[tid]))
        self._unroutable = set(notes)
        updates = []
        queues = []
        for qid in eng.queue_ids():
            qn = eng.queue_now(qid, now)
            for p in eng.positions(qid, now) if qn.waiting else []:
                ewt = round(p.ewt_seconds) if p.ewt_seconds is not None else None
                value = (p.position, ewt, notes.get(p.task_id, "")[:500])
                if self._positions.get(p.task_id) != value:
                    self._positions[p.task_id] = value
                    updates.append({"b_id": p.task_id, "position": value[0], "ewt_seconds": value[1],
                                    "note": value[2]})
            state = QueueState(queue_id=qid, waiting=qn.waiting, offered=qn.offered,
                               longest_wait_seconds=round(qn.longest_wait_seconds, 1),
                               unroutable=sum(1 for i in qn.waiting_ids if i in notes),
                               agents_available=qn.agents_available)
            if self._queue_state.get(qid) != state:
                self._queue_state[qid] = state
                queues.append(state)
        agents = []
        for a in eng.agents_now():
            key = (a.available, tuple(sorted(a.load.items())))
            if self._loads.get(a.agent_id) != key:
                self._loads[a.agent_id] = key
                agents.append(AgentState(agent_id=a.agent_id, available=a.available, load=dict(key[1])))
        d.positions = updates
        if queues or agents or updates:
            d.state = RoutingState(at=now, queues=queues, agents=agents)
        # it reads every waiting task: at most ~5% of the time, however long the queues get
        self._next_state = now + max(self.state_seconds, 20 * (time.perf_counter() - started))
