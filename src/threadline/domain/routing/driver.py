"""The routing driver: the rules around the engine that production and the simulator share. Pure.

The engine decides who gets which task; the driver turns what storage says into engine calls and the
engine's answers into what to write. One :meth:`RoutingDriver.step` per round takes a typed
:class:`~.records.RoundInput` (conversation states, agents, offer rows read back, wrap-ups ended) and
returns :class:`~.records.Decisions` (task rows, offers, outcome facts, alerts, events):

* **reconciliation**: a conversation that needs a human gets a task; one moved to another queue while
  waiting is transferred (it keeps its age); one given back waits again; one assigned by hand is
  answered by that agent; a priority or attribute change (a ``vip`` flag from the CRM) re-ranks its
  task at once; anything else that no longer needs routing leaves (waiting: cancelled or abandoned;
  assigned: completed, with the queue's wrap-up);
* **offers**: answers read back from the offer rows (an accept counts from when the agent accepted),
  timeouts, agents put away after missed offers;
* **outcome facts**: ``answered`` once per wait, ``abandoned``/``cancelled``, ``transferred`` (moved
  by hand or overflowed by an escalation step), ``handled`` when the agent's work ends;
* **state**: SLA alerts (each state announced once, also across restarts), queue positions and wait
  estimates, unroutable notes and one ``routing.state`` event when something changed.

The caller (``workers/router.py``, ``threadline simulate``) owns the clock, the reads and the writes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from ..errors import DomainError
from .engine import RoutingEngine
from .events import AgentState, OfferResult, QueueState, RoutingState, SlaAlert, TaskUnroutable, WrapUp
from .models import (
    Agent,
    Assignment,
    Channel,
    Completed,
    EngineConfig,
    OfferOutcome,
    OfferRecord,
    RoutingSnapshot,
    Task,
    TaskOverflowed,
    TaskRemoved,
    TaskView,
    WrapUpEnded,
)
from .records import (
    AgentRecord,
    ConversationKeys,
    ConversationState,
    Decisions,
    EndedOffer,
    NewOffer,
    NewTask,
    OfferAnswer,
    OfferStatus,
    Outcome,
    OutcomeKind,
    PositionUpdate,
    Restore,
    RoundInput,
    RoutingQueue,
    SlaStateUpdate,
    TaskUpdate,
    instant,
    seconds,
)
from .settings import task_for

_WAITING = ("waiting", "offered")


def _messaging(kind: str | None) -> Channel:
    return "messaging"


class RoutingDriver:
    """Holds the engine and what the rounds remember between them (open offers and their expiry, the
    last positions, SLA states and loads announced). ``work_class`` maps a channel kind to its work
    class; ``timer`` (optional) measures the state round's cost for the caller's pacing; ``rows=False``
    leaves the task rows out of the decisions (a caller that stores nothing: the simulator)."""

    def __init__(self, *, work_class: Callable[[str | None], Channel] = _messaging, batch: int | None = 5000,
                 timer: Callable[[], float] | None = None, rows: bool = True) -> None:
        self.work_class = work_class
        self.batch = batch
        self.timer = timer
        self.rows = rows
        self.engine: RoutingEngine | None = None
        self.clear()

    def clear(self) -> None:
        """Forget everything (the engine too): the next round needs a :meth:`rebuild`."""
        self.engine = None
        self._queues: dict[int, RoutingQueue] = {}
        self._agents: dict[int, Agent] = {}
        self._offer_of: dict[int, int] = {}  # task -> open offer id
        self._expiry: list[tuple[float, int]] = []
        self._names: dict[int, str] = {}
        self._positions: dict[int, tuple[int, int | None, str]] = {}
        self._sla: dict[int, str] = {}
        self._wait_from: dict[int, float] = {}  # given back: this wait counts from the re-queue, not the enqueue
        self._unroutable: set[int] = set()
        self._loads: dict[int, tuple[bool, tuple[tuple[str, int], ...]]] = {}
        self._queue_state: dict[int, QueueState] = {}

    def _engine(self) -> RoutingEngine:
        if self.engine is None:
            raise RuntimeError("the routing driver has no engine: rebuild it first")
        return self.engine

    # ------------------------------------------------------------------ rebuild

    def rebuild(self, r: Restore, now: float) -> set[int]:
        """Build the engine from stored state. Returns the wrap-ups whose agent already said "Ready"
        (end them in the next round)."""
        self.clear()
        self._queues = {q.id: q for q in r.queues}
        agents = [rec.agent() for rec in r.roster]
        self._agents = {a.id: a for a in agents}
        self._names = dict(r.names)
        tasks: list[Task] = []
        ready: set[int] = set()
        for row in r.tasks:
            task = Task.model_validate({**row.task, "status": row.status, "agent_id": row.agent_id})
            if task.queue_id not in self._queues:
                continue
            tasks.append(task)
            if row.sla_state:  # announced before the restart: not again
                self._sla[task.id] = row.sla_state
            if row.status == "wrapping" and row.wrap_end_requested_at is not None:
                ready.add(task.id)
        known = {t.id for t in tasks}
        offers = [OfferRecord(offer_id=o.id, task_id=o.conversation_id, agent_id=o.agent_id,
                              offered_at=seconds(o.offered_at), expires_at=seconds(o.expires_at))
                  for o in r.offers if o.conversation_id in known]
        snap = RoutingSnapshot(agents=agents, tasks=tasks, offers=offers, next_offer_id=r.next_offer_id)
        self.engine = RoutingEngine.from_snapshot(snap, {q.id: q.config for q in r.queues}, r.settings, now=now)
        for o in offers:
            self._offer_of[o.task_id] = o.offer_id
            heapq.heappush(self._expiry, (o.expires_at, o.offer_id))
        return ready

    @property
    def config(self) -> EngineConfig:
        return self._engine().config

    # ------------------------------------------------------------------ planning the reads

    def unmatched(self, needing: dict[int, int]) -> list[int]:
        """Tasks of conversations that no longer need a human (as far as the narrow keys say): their
        keys are compared in :meth:`suspects`."""
        return [v.id for v in self._engine().task_views() if v.id not in needing]

    def suspects(self, needing: dict[int, int], keys: dict[int, ConversationKeys]) -> set[int]:
        """The reconciliation: conversations whose state may disagree with the engine's (a missed
        event), from narrow key columns (``needing``: id -> queue of those that need a human;
        ``keys``: the others that have a task). Only these are then read in full."""
        eng = self._engine()
        out: set[int] = set()
        for cid, qid in needing.items():
            v = eng.task_view(cid)
            if v is None or v.status in ("assigned", "wrapping") or v.origin_queue_id != qid:
                out.add(cid)
        for v in eng.task_views():
            if v.id in needing:
                continue
            k = keys.get(v.id)
            if k is None or v.status in _WAITING:
                out.add(v.id)
            elif v.status == "assigned" and not (k.status == "open" and v.agent_id is not None
                                                 and k.assignee_id == v.agent_id):
                out.add(v.id)
        return out

    def knows_queues(self, states: Iterable[ConversationState]) -> bool:
        """False when a conversation names a queue created since the queues were last given."""
        return all(c.queue_id is None or c.queue_id in self._queues for c in states)

    def sticky_candidates(self, states: Iterable[ConversationState],
                          queues: list[RoutingQueue] | None = None) -> list[ConversationState]:
        """Conversations about to get a task while some queue keeps the contact's last agent first:
        the caller reads their contacts' last agents (``RoundInput.last_agents``)."""
        known = queues if queues is not None else self._queues.values()
        if not any(q.routing.sticky_seconds > 0 for q in known):
            return []
        eng = self._engine()
        return [c for c in states if c.needs_human and not eng.has_task(c.id)]

    def offers_to_check(self, now: float, dirty: Iterable[int], full: bool) -> list[int]:
        """Open offers to read back this round: those of changed conversations (every one in a full
        reconciliation, so an answer whose event was missed is found) and those that expired."""
        if full:
            check = list(self._offer_of.values())
        else:
            check = [self._offer_of[i] for i in dirty if i in self._offer_of]
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            check.append(heapq.heappop(expiry)[1])
        return check

    def next_due(self) -> float | None:
        """When the next open offer expires or engine timer (escalation, wrap-up, cool-down) fires."""
        eng = self._engine()
        expiry = self._expiry
        while expiry and eng.offer_task(expiry[0][1]) is None:  # answered or withdrawn since: nothing to time out
            heapq.heappop(expiry)
        due = [t for t in (expiry[0][0] if expiry else None, eng.next_timer_at()) if t is not None]
        return min(due) if due else None

    # ------------------------------------------------------------------ one round

    def step(self, inp: RoundInput) -> Decisions:
        """Apply what was read, decide, and return what to write."""
        eng = self._engine()
        now = inp.now
        d = Decisions()
        touched: set[int] = set()
        created: set[int] = set()
        if inp.queues is not None:
            self._queues = {q.id: q for q in inp.queues}
            self._apply_queues(now, touched, d)
        if inp.roster is not None:
            self._apply_roster(inp.roster, now, d, touched, remove=inp.roster_scope)
        if inp.offers:
            self._apply_offer_rows(inp.offers, now, d, touched)
        for cid in sorted(inp.conversations):  # ties in age: oldest id first
            self._apply_conversation(inp.conversations[cid], now, d, touched, created, inp.last_agents)
        for tid in sorted(inp.gone):  # the conversation was deleted
            self._drop(tid, now, d, touched)
        for tid in sorted(inp.wrap_done):
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
            d.offers.append(NewOffer(o.offer_id, o.task_id, o.agent_id, o.queue_id, o.channel,
                                     self._names.get(o.task_id, ""), now - view.enqueued_at,
                                     instant(o.offered_at), instant(o.expires_at)))
        for ev in eng.drain_events():
            touched.add(ev.task_id)
            if isinstance(ev, WrapUpEnded):  # its timer ran out
                self._handled(ev, d, touched, ended_by="timer")
            elif isinstance(ev, TaskOverflowed):
                self._overflowed(ev, d)
        if inp.state:
            started = self.timer() if self.timer is not None else 0.0
            self._state_round(now, d)
            d.state_cost = self.timer() - started if self.timer is not None else 0.0
        self._collect(touched, created, now, d)
        d.more = self.batch is not None and len(offers) >= self.batch
        return d

    # ------------------------------------------------------------------ applying what was read

    def _apply_queues(self, now: float, touched: set[int], d: Decisions) -> None:
        eng = self._engine()
        pending = [(qid, q.config) for qid, q in self._queues.items() if eng.queue_config(qid) != q.config]
        # Several passes: a queue that overflows to a queue created in the same reload waits for it.
        while pending:
            refused = []
            for qid, cfg in pending:
                try:
                    eng.set_queue(qid, cfg, now)
                except DomainError as exc:
                    refused.append((qid, cfg, exc.message))
                    continue
                touched.update(eng.queue_now(qid, now).waiting_ids)
            if len(refused) == len(pending):  # no progress: these settings cannot be applied
                d.refused_queues.extend((qid, message) for qid, _, message in refused)
                break
            pending = [(qid, cfg) for qid, cfg, _ in refused]

    def _apply_roster(self, roster: list[AgentRecord], now: float, d: Decisions, touched: set[int],
                      *, remove: set[int] | None) -> None:
        """Apply agents read from storage. ``remove=None``: the whole roster was read, so an agent
        missing from it left; otherwise only the agents in ``remove`` that are missing left
        (deactivated, or no longer serving any queue or team)."""
        eng = self._engine()
        seen = set()
        for rec in roster:
            agent = rec.agent()
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

    def _apply_offer_rows(self, rows: dict[int, OfferAnswer], now: float, d: Decisions, touched: set[int]) -> None:
        """Offers that are due or whose conversation changed: apply what storage says (an accept
        counts from when the agent accepted, not from when this round saw it)."""
        eng = self._engine()
        for oid, (status, ended_at) in sorted(rows.items()):
            view = eng.offer_task(oid)
            if view is None:
                continue
            touched.add(view.id)
            if status == OfferStatus.OPEN:
                if view.offer_expires_at is not None and view.offer_expires_at <= now:
                    self._ended(eng.timeout(oid, now), d, touched)
                continue
            self._offer_of.pop(view.id, None)
            if status == OfferStatus.ACCEPTED:
                at = now if ended_at is None else min(seconds(ended_at), now)
                self._answered(eng.accept(oid, at), d)
            elif status == OfferStatus.REJECTED:
                eng.reject(oid, now)
            else:
                eng.rescind(oid, now)

    def _apply_conversation(self, s: ConversationState, now: float, d: Decisions, touched: set[int],
                            created: set[int], last: dict[int, int]) -> None:
        eng = self._engine()
        view = eng.task_view(s.id)
        if view is None:
            if s.needs_human:
                self._enqueue(s, now, d, touched, created, last)
            return
        status = view.status
        if s.needs_human:
            if status in _WAITING and s.queue_id != view.origin_queue_id:  # moved to another queue
                self._drop(s.id, now, d, touched, kind=OutcomeKind.TRANSFERRED)
                self._enqueue(s, now, d, touched, created, last, view.enqueued_at)
            elif status == "assigned":  # the agent gave it back: it waits again, with its age
                self._completed(eng.complete(s.id, now, wrap_up_seconds=0), view, d)
                touched.add(s.id)
                self._enqueue(s, now, d, touched, created, last, view.enqueued_at)
                self._wait_from[s.id] = now
            elif status in _WAITING:  # a new priority or attributes (a VIP flag from the CRM): re-rank now
                self._refresh(s, view, now, touched)
            return
        if status in _WAITING and s.status == "open" and s.assignee_id is not None:
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
        self._drop(s.id, now, d, touched, kind=OutcomeKind.ABANDONED if s.abandoned else OutcomeKind.CANCELLED)

    def _task(self, s: ConversationState, q: RoutingQueue, enqueued_at: float, last_agent: int | None) -> Task:
        assert s.queue_id is not None
        return task_for(conversation_id=s.id, queue_id=s.queue_id, work_class=self.work_class(s.kind),
                        priority=s.priority, conversation_attributes=s.attributes,
                        contact_attributes=s.contact_attributes, enqueued_at=enqueued_at,
                        queue_settings=q.settings, routing=q.routing, last_agent_id=last_agent)

    def _enqueue(self, s: ConversationState, now: float, d: Decisions, touched: set[int],
                 created: set[int], last: dict[int, int], enqueued_at: float | None = None) -> None:
        eng = self._engine()
        assert s.queue_id is not None
        q = self._queues.get(s.queue_id)
        if q is None or eng.queue_config(s.queue_id) is None:
            return  # a queue created since the last reload: the next full reconciliation picks it up
        if eng.has_task(s.id):  # still wrapping up from a previous assignment: wait for it to end
            return
        task = self._task(s, q, enqueued_at if enqueued_at is not None else min(now, seconds(s.active_at)),
                          last.get(s.contact_id))
        result = eng.enqueue(task, now)
        self._names[s.id] = s.contact_name
        touched.add(s.id)
        if self._sla.pop(s.id, None) is not None and enqueued_at is not None:  # waits again: alerts anew
            d.sla_states.append(SlaStateUpdate(s.id, ""))
        if enqueued_at is None:  # a new row; a re-queued task (moved, given back) updates its row
            created.add(s.id)
        if not result.routable:
            self._unroutable.add(s.id)
            d.unroutable.append(TaskUnroutable(conversation_id=s.id, queue_id=s.queue_id,
                                               reason=result.reason or "no agent can take it"))

    def _refresh(self, s: ConversationState, view: TaskView, now: float, touched: set[int]) -> None:
        q = self._queues.get(s.queue_id)
        self._names[s.id] = s.contact_name
        if q is not None and self._engine().update_task(self._task(s, q, view.enqueued_at, None), now):
            touched.add(s.id)

    def _drop(self, tid: int, now: float, d: Decisions, touched: set[int],
              kind: OutcomeKind | None = OutcomeKind.CANCELLED) -> TaskRemoved | None:
        """The conversation no longer needs routing: a waiting task leaves its queue (recorded as
        ``kind``, or not at all), an assigned one completes (wrap-up); a wrapping one carries on."""
        eng = self._engine()
        view = eng.task_view(tid)
        if view is None:
            return None
        if view.status in _WAITING:
            touched.add(tid)
            removed = eng.cancel(tid, now, "abandoned" if kind == OutcomeKind.ABANDONED else "cancelled")
            if kind is not None:
                self._removed(removed, view.channel, d, kind)
            if removed.rescinded is not None:
                self._ended(removed.rescinded, d, touched)
            return removed
        if view.status == "assigned":
            touched.add(tid)
            self._completed(eng.complete(tid, now), view, d)
        return None

    def _closed_queues(self, now: float) -> list[int]:
        """Queues outside their business hours right now (their tasks wait; nobody gets offers)."""
        at: datetime | None = None
        out = []
        for qid, q in self._queues.items():
            hours = q.settings.hours
            if hours.weekly is None and not hours.closed_dates:
                continue  # always open
            at = at or datetime.fromtimestamp(now, UTC)
            if not hours.is_open(at):
                out.append(qid)
        return out

    def _ended(self, out: OfferOutcome, d: Decisions, touched: set[int]) -> None:
        self._offer_of.pop(out.task_id, None)
        touched.add(out.task_id)
        d.ended.append(EndedOffer(out.offer_id, out.task_id, out.agent_id, OfferResult(out.kind), instant(out.at)))
        if out.agent_away is not None:
            d.away.append(out.agent_away.agent_id)

    # ------------------------------------------------------------------ outcomes (facts for reports)

    def _answered(self, a: Assignment, d: Decisions) -> None:
        """One ``answered`` fact per wait: a conversation given back and answered again waited from
        its re-queue (the routing age it keeps is for its place in the queue, not for ASA)."""
        since = self._wait_from.pop(a.task_id, a.accepted_at - a.wait_seconds)
        wait = max(0.0, a.accepted_at - since)
        q = self._queues.get(a.queue_id)
        d.outcomes.append(Outcome(a.task_id, a.queue_id, a.channel, a.agent_id, OutcomeKind.ANSWERED,
                                  instant(a.accepted_at), instant(since), wait,
                                  within_target=wait <= q.config.sla.threshold_seconds if q else None))

    def _removed(self, r: TaskRemoved, channel: str, d: Decisions, kind: OutcomeKind) -> None:
        d.outcomes.append(Outcome(r.task_id, r.queue_id, channel, None, kind, instant(r.at),
                                  instant(r.at - r.wait_seconds), r.wait_seconds))

    def _overflowed(self, ev: TaskOverflowed, d: Decisions) -> None:
        """An escalation step moved the waiting task to another queue: it left this one, transferred."""
        view = self._engine().task_view(ev.task_id)
        enqueued = view.enqueued_at if view is not None else None
        d.outcomes.append(Outcome(ev.task_id, ev.from_queue_id, view.channel if view is not None else "",
                                  None, OutcomeKind.TRANSFERRED, instant(ev.at),
                                  instant(enqueued) if enqueued is not None else None,
                                  max(0.0, ev.at - enqueued) if enqueued is not None else None))

    def _completed(self, c: Completed, view: TaskView, d: Decisions) -> None:
        """The conversation ended for its agent: handled now, or after a wrap-up (announced to the agent)."""
        if c.wrap_until is None:
            self._handled(WrapUpEnded(c.task_id, c.agent_id, view.queue_id, c.at, c.talk_seconds, view.channel),
                          d, None)
        else:
            d.wrap_ups.append(WrapUp(conversation_id=c.task_id, agent_id=c.agent_id, queue_id=view.queue_id,
                                     state="started", until=c.wrap_until, at=c.at))

    def _handled(self, ev: WrapUpEnded, d: Decisions, touched: set[int] | None, ended_by: str | None = None) -> None:
        d.outcomes.append(Outcome(ev.task_id, ev.queue_id, ev.channel, ev.agent_id, OutcomeKind.HANDLED,
                                  instant(ev.at), handle_seconds=ev.handle_seconds))
        if ended_by is not None:
            assert touched is not None
            touched.add(ev.task_id)
            d.reread.add(ev.task_id)  # reopened during the wrap-up? read it again
            d.wrap_ups.append(WrapUp(conversation_id=ev.task_id, agent_id=ev.agent_id, queue_id=ev.queue_id,
                                     state="ended", at=ev.at, ended_by=ended_by))

    # ------------------------------------------------------------------ what to write

    def _collect(self, touched: set[int], created: set[int], now: float, d: Decisions) -> None:
        eng = self._engine()
        at = instant(now)
        for tid in touched:
            if not eng.has_task(tid):
                if tid not in created:
                    d.gone_tasks.append(tid)
                self._names.pop(tid, None)
                self._positions.pop(tid, None)
                self._sla.pop(tid, None)
                self._wait_from.pop(tid, None)
                self._unroutable.discard(tid)
                continue
            if not self.rows:
                continue
            view = eng.task_view(tid)
            assert view is not None
            task = eng.get_task(tid)
            if tid in created:
                note = next((u.reason[:500] for u in d.unroutable if u.conversation_id == tid), "")
                d.new_tasks.append(NewTask(tid, view.queue_id, view.channel, view.status, view.agent_id, task, at,
                                           enqueued_at=instant(view.enqueued_at), note=note))
            else:
                d.task_updates.append(TaskUpdate(tid, view.queue_id, view.channel, view.status,
                                                 view.agent_id, task, at))

    def _state_round(self, now: float, d: Decisions) -> None:
        """SLA alerts, positions and wait estimates, unroutable notes, and one ``routing.state`` event
        when queues, agents or positions changed (for supervisors' wallboards and the customers'
        queue notices)."""
        eng = self._engine()
        for alert in eng.sla_alerts(now):
            if self._sla.get(alert.task_id) != alert.state:
                self._sla[alert.task_id] = alert.state
                d.sla_states.append(SlaStateUpdate(alert.task_id, alert.state))
                d.sla.append(SlaAlert(conversation_id=alert.task_id, queue_id=alert.queue_id,
                                      state=alert.state, waited_seconds=round(alert.waited_seconds, 1),
                                      threshold_seconds=alert.threshold_seconds))
        notes = {u.task_id: u.reason for u in eng.unroutable(now)}
        for tid in notes.keys() - self._unroutable:
            view = eng.task_view(tid)
            assert view is not None
            d.unroutable.append(TaskUnroutable(conversation_id=tid, queue_id=view.queue_id, reason=notes[tid]))
        self._unroutable = set(notes)
        queues = []
        for qid in eng.queue_ids():
            qn = eng.queue_now(qid, now)
            for p in eng.positions(qid, now) if qn.waiting else []:
                ewt = round(p.ewt_seconds) if p.ewt_seconds is not None else None
                value = (p.position, ewt, notes.get(p.task_id, "")[:500])
                if self._positions.get(p.task_id) != value:
                    self._positions[p.task_id] = value
                    d.positions.append(PositionUpdate(p.task_id, *value))
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
        if queues or agents or d.positions:
            d.state = RoutingState(at=now, queues=queues, agents=agents)
