"""The ACD: a pure, in-memory routing engine. No I/O, no clock, no randomness.

Algorithm. Waiting tasks are grouped into *buckets* by their current requirement (queue,
channel, skills with levels after escalation, language, extra teams, exclusive agent). Each bucket
keeps its tasks in a heap on (−priority, enqueue time, sequence). Its eligible agents sit in
*cells*: the agents of a queue and channel that belong to exactly the same buckets of it share a
cell, whose heap orders them on (load ratio for the channel, last idle time, roster order) with lazy
deletion; a bucket's best agent is the best head among its cells (see :mod:`._state`). A global
*ready* heap holds the head task key of every bucket that may have both a task and a free agent.
``decide`` pops the best head across buckets, gives it the best agent of its bucket (or its sticky
preferred agent), and pushes the bucket back with its next head: a greedy match in task order
(priority, then age), where each task gets the least-loaded, longest-idle eligible agent. A bucket
with no free agent drops out of the ready heap until an agent gains room in it, so a backlog of
100,000 tasks costs nothing while every agent is busy. Each decision costs O(log n) heap work plus one heap push per
cell of the chosen agent (one per queue and channel it serves, however many requirement levels or
escalation rungs are in use).

Escalation: the rung of a task is the number of its queue's steps whose ``after_seconds`` has
passed since it entered the queue; a timer heap re-buckets it when the next step is due.
Timers (escalation, end of wrap-up, end of a re-offer cooldown) fire in ``advance(now)``, which
``decide`` and the read methods call; offers expire only in ``expire_offers``/``step``, because
the caller must persist the outcome.

Read methods (positions, EWT, SLA, unroutable, stats) live in :mod:`.reads` and snapshots in
:mod:`.snapshots`; both are mixins of :class:`RoutingEngine`.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from itertools import count
from typing import Any

from ..errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from ._state import (
    ASSIGNED,
    GONE,
    OFFERED,
    TIMER_ESCALATE,
    TIMER_WAKE,
    TIMER_WRAP,
    WAITING,
    WRAPPING,
    BucketKey,
    _Agent,
    _Bucket,
    _Cell,
    _Queue,
    _Task,
)
from .models import (
    CHANNELS,
    Agent,
    AgentAway,
    Assignment,
    Completed,
    EngineConfig,
    Enqueued,
    Id,
    Offer,
    OfferOutcome,
    QueueConfig,
    RemovalReason,
    RoutingEvent,
    StepResult,
    Task,
    TaskEscalated,
    TaskOverflowed,
    TaskRemoved,
    WrapUpEnded,
)
from .reads import ReadsMixin
from .snapshots import SnapshotMixin
from .validation import validate_routing

_ESCALATE, _WAKE, _WRAP = TIMER_ESCALATE, TIMER_WAKE, TIMER_WRAP

_heappush = heapq.heappush
_heappop = heapq.heappop


class RoutingEngine(ReadsMixin, SnapshotMixin):
    """Routing state for a set of queues. Every method takes ``now`` in seconds."""

    def __init__(self, queues: Mapping[Id, QueueConfig], config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        report = validate_routing(queues)
        if not report.ok:
            raise ValidationFailed(report.error_text(), field="queues")
        self._queues: dict[Id, _Queue] = {
            qid: _Queue(qid, cfg, self.config.aht_window) for qid, cfg in queues.items()
        }
        self._agents: dict[Id, _Agent] = {}
        self._team_agents: dict[str, set[_Agent]] = {}
        self._team_buckets: dict[str, set[_Bucket]] = {}
        self._only_buckets: dict[Id, set[_Bucket]] = {}
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._cells: dict[tuple[Id, str, frozenset[_Bucket]], _Cell] = {}
        self._empty: dict[_Bucket, None] = {}
        self._tasks: dict[Id, _Task] = {}
        self._offers: dict[int, _Task] = {}
        self._offer_timers: list[tuple[float, int]] = []
        self._timers: list[tuple[float, int, int, int, _Task]] = []  # (at, kind, task seq, no, task)
        self._ready: list[tuple[int, float, int, int, _Bucket]] = []
        self._closed: frozenset[int] = frozenset()  # queues outside their business hours
        self._events: list[RoutingEvent] = []
        self._skill_cache: dict[
            tuple[Any, int, tuple[tuple[str, int], ...]], tuple[tuple[str, int], ...]
        ] = {}
        self._no = count()
        self._seq = count()
        self._agent_idx = count()
        self._next_offer = 1

    # ------------------------------------------------------------------ configuration

    def set_queue(self, queue_id: Id, cfg: QueueConfig, now: float) -> None:
        """Add or change a queue; its waiting tasks are re-evaluated against the new settings."""
        cfgs = {qid: q.cfg for qid, q in self._queues.items()}
        cfgs[queue_id] = cfg
        report = validate_routing(cfgs)
        if not report.ok:
            raise ValidationFailed(report.error_text(), field="queues")
        q = self._queues.get(queue_id)
        if q is None:
            q = self._queues[queue_id] = _Queue(queue_id, cfg, self.config.aht_window)
            for a in self._agents.values():
                if queue_id in a.queues:
                    q.members.add(a)
        else:
            q.configure(cfg)
        self._skill_cache = {k: v for k, v in self._skill_cache.items() if k[0] != queue_id}
        for t in sorted(q.waiting, key=lambda t: t.seq):
            self._place(t, now)

    # ------------------------------------------------------------------ agents

    def upsert_agent(self, agent: Agent, now: float | None = None) -> None:
        """Add an agent or change their profile. A new agent starts with the model's
        ``last_idle`` and ``no_answer_streak``; a known agent keeps its runtime state (tracked
        load, last idle time, streak), and ``now`` stamps the idle time if the update makes them
        available."""
        a = self._agents.get(agent.id)
        new = a is None
        if a is None:
            a = _Agent(next(self._agent_idx), agent.id)
            a.last_idle = agent.last_idle
            a.streak = agent.no_answer_streak
            self._agents[agent.id] = a
        elif a.removed:
            a.removed = False
        self._unindex(a)
        was_available = a.available
        a.skills = dict(agent.skills)
        a.languages = frozenset(agent.languages)
        a.teams = frozenset(agent.teams)
        a.queues = frozenset(agent.queues)
        a.available = agent.available
        a.capacity = {c: agent.capacity.get(c, 0) for c in CHANNELS}
        a.blocked_by = {c: tuple(v) for c, v in agent.blocked_by.items() if v}
        for c in CHANNELS:
            tracked = a.load[c] - a.external[c]
            a.external[c] = agent.external_load.get(c, 0)
            a.load[c] = tracked + a.external[c]
        if not new and a.available and not was_available and now is not None:
            a.last_idle = now
        self._index(a)
        self._touch(a)

    def set_available(self, agent_id: Id, available: bool, now: float) -> None:
        """Presence change. Becoming available stamps the idle time and clears the no-answer streak."""
        a = self._agent(agent_id)
        if a.available == available:
            return
        a.available = available
        if available:
            a.last_idle = now
            a.streak = 0
        self._touch(a)

    def remove_agent(self, agent_id: Id, now: float) -> list[OfferOutcome]:
        """Log an agent out of routing for good. Their open offers are rescinded (the tasks wait
        again); tasks they already hold stay theirs until completed."""
        a = self._agent(agent_id)
        mine = [oid for oid in sorted(self._offers) if self._offers[oid].agent is a]
        outcomes = [self._end_offer(self._offers[oid], now, "rescinded") for oid in mine]
        a.removed = True
        a.available = False
        self._unindex(a)
        self._touch(a)
        if a.n_tasks == 0:
            del self._agents[a.id]
        return outcomes

    def _index(self, a: _Agent) -> None:
        for qid in a.queues:
            q = self._queues.get(qid)
            if q is not None:
                q.members.add(a)
        for team in a.teams:
            self._team_agents.setdefault(team, set()).add(a)
        if a.removed:
            return
        cands: set[_Bucket] = set()
        for qid in a.queues:
            q = self._queues.get(qid)
            if q is not None:
                cands |= q.buckets
        for team in a.teams:
            cands |= self._team_buckets.get(team, set())
        cands |= self._only_buckets.get(a.id, set())
        for b in cands:
            if b.fits(a):
                b.members.add(a)
                a.buckets[b.channel].add(b)
        for ch, bs in a.buckets.items():
            for qid in {b.queue for b in bs}:
                self._recell(a, ch, qid)

    def _unindex(self, a: _Agent) -> None:
        for bs in a.buckets.values():
            for b in bs:
                b.members.discard(a)
            bs.clear()
        for cs in a.cells.values():
            for cell in cs.values():
                self._leave(cell, a)
            cs.clear()
        for qid in a.queues:
            q = self._queues.get(qid)
            if q is not None:
                q.members.discard(a)
        for team in a.teams:
            self._team_agents.get(team, set()).discard(a)

    def _touch(self, a: _Agent, wake: bool = True) -> None:
        """The agent changed: invalidate its heap entries and push fresh ones where it has room,
        and put its buckets with waiting tasks back on the ready heap. ``wake=False`` after the
        agent took one more task: that cannot make it a candidate anywhere it was not already (a
        bucket with tasks and this agent free is on the ready heap, or waits only for agents its
        head task may not go back to yet)."""
        a.version = v = a.version + 1
        if not a.available or a.removed:
            return
        idle = a.last_idle
        idx = a.idx
        load = a.load
        blocked = a.blocked_by
        for channel, cells in a.cells.items():
            if not cells or load[channel] >= a.capacity[channel]:
                continue
            if blocked:  # a.can_take(channel), inlined
                for other in blocked.get(channel, ()):
                    if load[other]:
                        break
                else:
                    other = None
                if other is not None:
                    continue
            entry = (load[channel] / a.capacity[channel], idle, idx, v, a)
            for c in cells.values():
                heap = c.agents
                _heappush(heap, entry)
                if len(heap) > c.limit:
                    self._compact_agents(c)
                if not wake:
                    continue
                for b in c.buckets:
                    if b.n_tasks and not b.in_ready:
                        head = self._head(b)
                        if head is not None:
                            self._push_ready(b, head)

    def _compact_agents(self, c: _Cell) -> None:
        ch = c.channel
        c.agents = [
            (a.load[ch] / a.capacity[ch], a.last_idle, a.idx, a.version, a)
            for a in c.members
            if a.can_take(ch)
        ]
        heapq.heapify(c.agents)

    # ------------------------------------------------------------------ cells

    def _cell(self, qid: Id, channel: str, sig: frozenset[_Bucket]) -> _Cell:
        key = (qid, channel, sig)
        c = self._cells.get(key)
        if c is None:
            c = self._cells[key] = _Cell(key)
            for b in c.buckets:
                b.cells.append(c)
        return c

    def _join(self, c: _Cell, a: _Agent) -> None:
        c.members.add(a)
        c.limit = 2 * len(c.members) + 64
        a.cells[c.channel][c.key[0]] = c

    def _leave(self, c: _Cell, a: _Agent) -> None:
        """Take the agent out of the cell (its heap entries die with the next version bump)."""
        c.members.discard(a)
        if c.members:
            c.limit = 2 * len(c.members) + 64
            return
        del self._cells[c.key]
        for b in c.buckets:
            b.cells.remove(c)

    def _recell(self, a: _Agent, channel: str, qid: Id) -> None:
        """Move the agent to the cell of its current buckets of this queue and channel. The caller
        touches the agent afterwards, which retires its entries in the cell it left."""
        sig = frozenset([b for b in a.buckets[channel] if b.queue == qid])
        cs = a.cells[channel]
        old = cs.get(qid)
        if old is not None:
            if old.key[2] == sig:
                return
            self._leave(old, a)
            del cs[qid]
        if sig:
            self._join(self._cell(qid, channel, sig), a)

    # ------------------------------------------------------------------ buckets

    def _bucket(self, key: BucketKey) -> _Bucket:
        b = self._buckets.get(key)
        if b is not None:
            return b
        b = self._buckets[key] = _Bucket(key)
        q = self._queues[b.queue]
        q.buckets.add(b)
        cands: set[_Agent] = set()
        if b.only is not None:
            self._only_buckets.setdefault(b.only, set()).add(b)
            a = self._agents.get(b.only)
            if a is not None:
                cands.add(a)
        else:
            cands |= q.members
            for team in b.teams:
                cands |= self._team_agents.get(team, set())
        for team in b.teams:
            self._team_buckets.setdefault(team, set()).add(b)
        ch = b.channel
        need = tuple(b.skills.items())
        lang = b.language
        members = b.members
        joined = []
        for a in cands:
            # b.fits(a), inlined: candidates already come from the bucket's pool.
            if a.removed or a.capacity[ch] <= 0 or (lang is not None and lang not in a.languages):
                continue
            have = a.skills
            for name, level in need:
                if have.get(name, 0) < level:
                    break
            else:
                if b.only is not None and not b.fits(a):
                    continue
                members.add(a)
                a.buckets[ch].add(b)
                joined.append(a)
        # Each member moves from its cell of this queue to the cell with this bucket added.
        qid = b.queue
        moved: dict[_Cell | None, _Cell] = {}
        for a in joined:
            old = a.cells[ch].get(qid)
            new = moved.get(old)
            if new is None:
                sig = old.key[2] | {b} if old is not None else frozenset((b,))
                new = moved[old] = self._cell(qid, ch, sig)
            if old is not None:
                self._leave(old, a)
            self._join(new, a)
        for a in joined:
            self._touch(a)
        self._empty[b] = None
        return b

    def _drop_bucket(self, b: _Bucket) -> None:
        del self._buckets[b.key]
        self._empty.pop(b, None)
        for a in b.members:
            a.buckets[b.channel].discard(b)
            self._recell(a, b.channel, b.queue)
            self._touch(a)
        self._queues[b.queue].buckets.discard(b)
        for team in b.teams:
            self._team_buckets.get(team, set()).discard(b)
        if b.only is not None:
            self._only_buckets.get(b.only, set()).discard(b)
        b.ready_no = -1
        b.in_ready = False

    def _head(self, b: _Bucket) -> _Task | None:
        heap = b.tasks
        while heap:
            e = heap[0]
            t = e[4]
            if t.bucket is b and t.hno == e[3]:
                return t
            _heappop(heap)
        return None

    def _push_ready(self, b: _Bucket, t: _Task) -> None:
        no = next(self._no)
        b.ready_no = no
        b.in_ready = True
        key = (t.neg, t.enqueued_at, t.seq)
        b.ready_key = key
        _heappush(self._ready, (t.neg, t.enqueued_at, t.seq, no, b))

    def _top_agent(self, b: _Bucket) -> _Agent | None:
        """Some free agent of the bucket, if any."""
        for c in b.cells:
            heap = c.agents
            while heap:
                e = heap[0]
                if e[3] == e[4].version:
                    return e[4]
                _heappop(heap)
        return None

    def _insert(self, t: _Task, b: _Bucket, *, wake: bool = True) -> None:
        t.bucket = b
        t.hno = hno = next(self._no)
        _heappush(b.tasks, (t.neg, t.enqueued_at, t.seq, hno, t))
        b.n_tasks += 1
        if b.n_tasks == 1:
            self._empty.pop(b, None)
        elif len(b.tasks) > 2 * b.n_tasks + 64:
            b.tasks = [e for e in b.tasks if e[4].bucket is b and e[4].hno == e[3]]
            heapq.heapify(b.tasks)
        if not wake:
            return
        if b.in_ready:
            if (t.neg, t.enqueued_at, t.seq) < b.ready_key:
                self._push_ready(b, t)
        elif self._top_agent(b) is not None:
            head = self._head(b)
            if head is not None:
                self._push_ready(b, head)

    def _detach(self, t: _Task) -> None:
        b = t.bucket
        if b is None:
            return
        t.bucket = None
        b.n_tasks -= 1
        if b.n_tasks == 0:
            self._empty[b] = None

    def _key(self, t: _Task, q: _Queue, k: int, exclusive: bool) -> tuple[BucketKey, int]:
        r = q.relax[k]
        ck = (q.id, k, t.skills_key)
        skills = self._skill_cache.get(ck)
        if skills is None:
            if r.ignore_skills:
                merged: dict[str, int] = {}
            else:
                merged = dict(q.cfg.skills)
                for name, level in t.skills.items():
                    if level > merged.get(name, 0):
                        merged[name] = level
                for name in r.drop:
                    merged.pop(name, None)
                if r.max_level is not None:
                    merged = {n: min(v, r.max_level) for n, v in merged.items()}
            skills = self._skill_cache[ck] = tuple(sorted(merged.items()))
        lang = t.language if q.cfg.language_required and not r.ignore_language else None
        prio = t.priority + q.cfg.priority + r.boost
        for boost in q.cfg.boosts:
            if t.attributes.get(boost.attribute) == boost.equals:
                prio += boost.boost
        only = t.preferred if exclusive else None
        return (q.id, t.channel, skills, lang, r.teams, only), -prio

    def _place(self, t: _Task, now: float) -> None:
        """Put a waiting task in the bucket of its current requirement and arm its next timer."""
        hops = 0
        while True:
            q = self._queues[t.queue]
            k = bisect_right(q.times, now - t.queue_entered_at)
            oi = q.overflow_index
            if oi is not None and k > oi and hops <= len(self._queues):
                at = t.queue_entered_at + q.times[oi]
                q.waiting.discard(t)
                self._events.append(TaskOverflowed(t.id, q.id, q.overflow_to, at))
                t.queue = q.overflow_to
                t.queue_entered_at = at
                t.step = 0
                hops += 1
                continue
            break
        if k > t.step:
            self._events.append(TaskEscalated(t.id, q.id, k, t.queue_entered_at + q.times[k - 1]))
        t.step = k
        exclusive = (
            t.preferred_only
            and t.preferred is not None
            and t.sticky_until is not None
            and now < t.sticky_until
        )
        key, neg = self._key(t, q, k, exclusive)
        q.waiting.add(t)
        cur = t.bucket
        if cur is None or cur.key != key or t.neg != neg:
            self._detach(t)
            t.neg = neg
            self._insert(t, self._bucket(key))
        nxt = t.queue_entered_at + q.times[k] if k < len(q.times) else None
        if exclusive and (nxt is None or t.sticky_until < nxt):  # type: ignore[operator]
            nxt = t.sticky_until
        t.next_at = nxt
        if nxt is not None:
            t.timer_no = no = next(self._no)
            _heappush(self._timers, (nxt, _ESCALATE, t.seq, no, t))

    # ------------------------------------------------------------------ tasks

    def enqueue(self, task: Task, now: float) -> Enqueued:
        """Add a waiting task. Its wait (for ordering, escalation and SLA) counts from
        ``task.enqueued_at``, which may be earlier than ``now``."""
        if task.id in self._tasks:
            raise Conflict(f"task {task.id!r} is already in the routing engine")
        if task.queue_id not in self._queues:
            raise NotFound(f"queue {task.queue_id!r} is not configured for routing", field="queue_id")
        t = self._new_task(task)
        self._tasks[t.id] = t
        self._place(t, now)
        b = t.bucket
        assert b is not None
        if b.members:
            return Enqueued(t.id, t.queue, True)
        return Enqueued(t.id, t.queue, False, self._why_unroutable(t, b))

    def update_task(self, task: Task, now: float) -> bool:
        """Apply what the caller supplied anew to a task that waits or is offered: ``priority``,
        ``attributes`` (so boosts such as ``vip`` apply), ``skills``, ``language`` and, when given, a
        preferred agent. Its age, queue, rung, exclusions and channel stay. A waiting task takes its
        new place at once; an offered one when its offer ends without an accept. Returns whether
        anything changed."""
        t = self._task(task.id)
        if t.status not in (WAITING, OFFERED):
            return False
        skills_key = tuple(sorted(task.skills.items()))
        language = task.effective_language
        preferred = task.preferred_agent_id is not None and (
            (t.preferred, t.sticky_until, t.preferred_only)
            != (task.preferred_agent_id, task.sticky_until, task.preferred_only)
        )
        if not preferred and (t.priority, t.skills_key, t.language, t.attributes) == (
            task.priority, skills_key, language, task.attributes
        ):
            return False
        t.priority = task.priority
        t.skills = dict(task.skills)
        t.skills_key = skills_key
        t.language = language
        t.attributes = dict(task.attributes)
        if preferred:
            t.preferred = task.preferred_agent_id
            t.sticky_until = task.sticky_until
            t.preferred_only = task.preferred_only
        if t.status == WAITING:
            self._place(t, now)
        return True

    def _new_task(self, task: Task) -> _Task:
        t = _Task(next(self._seq))
        t.id = task.id
        t.channel = task.channel
        t.queue = task.queue_id
        t.origin = task.origin_queue_id if task.origin_queue_id is not None else task.queue_id
        t.enqueued_at = task.enqueued_at
        t.queue_entered_at = task.queue_entered_at if task.queue_entered_at is not None else task.enqueued_at
        t.skills = dict(task.skills)
        t.skills_key = tuple(sorted(task.skills.items()))
        t.language = task.effective_language
        t.priority = task.priority
        t.preferred = task.preferred_agent_id
        t.sticky_until = task.sticky_until
        t.preferred_only = task.preferred_only
        t.attributes = dict(task.attributes)
        t.excluded = dict(task.excluded_agents)
        t.step = task.escalation_step
        return t

    def cancel(self, task_id: Id, now: float, reason: RemovalReason = "abandoned") -> TaskRemoved:
        """The task leaves the queue: the customer hung up (``abandoned``), the conversation was
        closed (``cancelled``) or a bot answered it (``self_service``). An open offer is rescinded."""
        t = self._task(task_id)
        if t.status in (ASSIGNED, WRAPPING):
            agent = t.agent.id if t.agent else None
            raise Conflict(f"task {task_id!r} is already with agent {agent!r}; complete it instead")
        rescinded = None
        if t.status == OFFERED:
            rescinded = self._end_offer(t, now, "rescinded", requeue=False)
        else:
            self._detach(t)
        q = self._queues[t.queue]
        q.waiting.discard(t)
        if reason == "abandoned":
            q.abandoned += 1
        t.status = GONE
        del self._tasks[t.id]
        return TaskRemoved(t.id, t.queue, reason, now, now - t.enqueued_at, rescinded)

    def pick(self, agent_id: Id, task_id: Id, now: float, *, force: bool = False) -> Assignment:
        """An agent takes a waiting task by hand. Allowed when the agent serves the task's queue
        (current or original) or meets its current requirement, and has room on the channel;
        ``force`` (a supervisor's assignment) skips both checks. An offer of the task to another
        agent is rescinded."""
        a = self._agent(agent_id)
        t = self._task(task_id)
        if t.status == OFFERED and t.agent is a:
            return self.accept(t.offer.offer_id, now)
        if t.status not in (WAITING, OFFERED):
            raise Conflict(f"task {task_id!r} is already assigned")
        if a.removed:
            raise Conflict(f"agent {agent_id!r} has left routing")
        if not force:
            permitted = (
                t.queue in a.queues
                or t.origin in a.queues
                or (t.bucket is not None and a in t.bucket.members)
            )
            if not permitted:
                raise PermissionDenied(f"agent {agent_id!r} does not serve queue {t.queue!r}")
            if not a.can_take(t.channel):
                raise Conflict(f"agent {agent_id!r} has no free {t.channel} slot")
        if t.status == OFFERED:
            self._end_offer(t, now, "rescinded", requeue=False)
        self._detach(t)
        q = self._queues[t.queue]
        q.waiting.discard(t)
        self._assign(t, a, now)
        a.load[t.channel] += 1
        a.n_tasks += 1
        self._touch(a, wake=False)
        return Assignment(t.id, a.id, t.queue, t.channel, now, now - t.enqueued_at, None, True)

    def _assign(self, t: _Task, a: _Agent, now: float) -> None:
        t.status = ASSIGNED
        t.agent = a
        t.accepted_at = now
        q = self._queues[t.queue]
        wait = now - t.enqueued_at
        q.answered += 1
        q.wait_sum += wait
        if wait <= q.cfg.sla.threshold_seconds:
            q.answered_within += 1

    # ------------------------------------------------------------------ deciding

    def set_closed(self, queue_ids: Iterable[int]) -> None:
        """Queues outside their business hours: their tasks keep waiting (and ageing, and escalating or
        overflowing on their timers, e.g. to a queue that is open) but are offered to nobody."""
        self._closed = frozenset(queue_ids)

    def decide(self, now: float, limit: int | None = None) -> list[Offer]:
        """Match waiting tasks to free agents, reserving a slot for each offer. Fires due timers
        first. ``limit`` caps the number of offers made in this call. Closed queues are skipped."""
        timers = self._timers
        if (timers and timers[0][0] <= now) or len(self._empty) > self.config.idle_bucket_limit:
            self.advance(now)
        offers: list[Offer] = []
        deferred: list[tuple[_Task, _Bucket]] = []
        parked: list[tuple[int, float, int, int, _Bucket]] = []
        closed = self._closed
        ready = self._ready
        push_ready = self._push_ready
        left = -1 if limit is None else max(limit, 0)  # counts down to 0; -1: no limit
        while ready and left:
            entry = _heappop(ready)
            neg, enq, seq, no, b = entry
            if b.ready_no != no:
                continue
            if closed and b.queue in closed:
                parked.append(entry)  # still ready: back on the heap once this round is over
                continue
            b.in_ready = False
            tasks = b.tasks
            while tasks:  # the bucket's head task (self._head, inlined)
                e = tasks[0]
                t = e[4]
                if t.bucket is b and t.hno == e[3]:
                    break
                _heappop(tasks)
            else:
                continue
            if t.seq != seq or t.neg != neg or t.enqueued_at != enq:
                push_ready(b, t)
                continue
            a, skipped = self._pick_agent(b, t, now)
            if a is None:
                if skipped:  # only agents this task may not go back to yet: let the next task try
                    self._detach(t)
                    deferred.append((t, b))
                    nxt = self._head(b)
                    if nxt is not None:
                        push_ready(b, nxt)
                continue
            _heappop(tasks)  # t's entry, on top: it leaves the bucket with the offer
            offers.append(self._offer(t, a, now))
            left -= 1
            while tasks:  # the next head
                e = tasks[0]
                t = e[4]
                if t.bucket is b and t.hno == e[3]:
                    push_ready(b, t)
                    break
                _heappop(tasks)
        for entry in parked:
            _heappush(ready, entry)
        for t, b in deferred:
            self._insert(t, b, wake=False)
            until = min((u for u in t.excluded.values() if u > now), default=None)
            if until is not None:
                _heappush(self._timers, (until, _WAKE, t.seq, next(self._no), t))
        return offers

    def _pick_agent(self, b: _Bucket, t: _Task, now: float) -> tuple[_Agent | None, bool]:
        excluded = t.excluded
        if excluded:
            for aid, until in list(excluded.items()):
                if until <= now:
                    del excluded[aid]
        if t.preferred is not None and t.sticky_until is not None and now < t.sticky_until:
            p = self._agents.get(t.preferred)
            if p is not None and p in b.members and p.can_take(b.channel) and p.id not in excluded:
                return p, False
        # The best agent of the bucket is the best of its cells' heads.
        cells = b.cells
        skipped = None
        found = None
        while True:
            best = None
            best_heap: list[Any] = []
            for c in cells:
                heap = c.agents
                while heap:
                    e = heap[0]
                    if e[3] == e[4].version:
                        if best is None or e < best:
                            best = e
                            best_heap = heap
                        break
                    _heappop(heap)
            if best is None:
                break
            a = best[4]
            if excluded and a.id in excluded:
                if skipped is None:
                    skipped = []
                skipped.append((best_heap, _heappop(best_heap)))
                continue
            _heappop(best_heap)
            found = a
            break
        if skipped:
            for heap, e in skipped:
                _heappush(heap, e)
        return found, bool(skipped)

    def _offer(self, t: _Task, a: _Agent, now: float) -> Offer:
        b = t.bucket  # self._detach(t), inlined
        if b is not None:
            t.bucket = None
            b.n_tasks -= 1
            if b.n_tasks == 0:
                self._empty[b] = None
        q = self._queues[t.queue]
        q.waiting.discard(t)
        q.n_offered += 1
        t.status = OFFERED
        t.agent = a
        oid = self._next_offer
        self._next_offer = oid + 1
        expires = now + q.cfg.offer_timeout_seconds
        offer = Offer(oid, t.id, a.id, t.queue, t.channel, now, expires)
        t.offer = offer
        self._offers[oid] = t
        _heappush(self._offer_timers, (expires, oid))
        a.load[t.channel] += 1
        a.n_tasks += 1
        self._touch(a, wake=False)
        return offer

    def advance(self, now: float) -> None:
        """Fire the timers due at ``now``: escalation steps, overflows, ends of sticky windows,
        ends of wrap-up and of re-offer cooldowns. Their events go to :meth:`drain_events`."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, kind, _, no, t = _heappop(timers)
            if kind == _ESCALATE:
                if t.status == WAITING and t.timer_no == no:
                    self._place(t, now)
            elif kind == _WAKE:
                b = t.bucket
                if t.status == WAITING and b is not None and not b.in_ready and self._top_agent(b):
                    head = self._head(b)
                    if head is not None:
                        self._push_ready(b, head)
            elif t.status == WRAPPING and t.timer_no == no:
                self._events.append(self._finish(t, when))
        if len(self._empty) > self.config.idle_bucket_limit:
            for b in list(self._empty):
                self._drop_bucket(b)

    # ------------------------------------------------------------------ offers

    def accept(self, offer_id: int, now: float) -> Assignment:
        t = self._open_offer(offer_id)
        a = t.agent
        assert a is not None
        del self._offers[offer_id]
        t.offer = None
        self._queues[t.queue].n_offered -= 1
        a.streak = 0
        self._assign(t, a, now)
        return Assignment(t.id, a.id, t.queue, t.channel, now, now - t.enqueued_at, offer_id)

    def reject(self, offer_id: int, now: float) -> OfferOutcome:
        """The agent declined: the task waits again (original age kept) and is not offered to
        this agent again before the cool-down ends."""
        return self._end_offer(self._open_offer(offer_id), now, "rejected")

    def timeout(self, offer_id: int, now: float) -> OfferOutcome:
        """The agent did not answer. After ``max_consecutive_no_answer`` of these in a row the
        agent is made unavailable and the outcome carries an :class:`AgentAway`."""
        return self._end_offer(self._open_offer(offer_id), now, "timed_out")

    def rescind(self, offer_id: int, now: float) -> OfferOutcome:
        """Withdraw an offer (no penalty for the agent); the task waits again."""
        return self._end_offer(self._open_offer(offer_id), now, "rescinded")

    def expire_offers(self, now: float) -> list[OfferOutcome]:
        """Time out every open offer whose ``expires_at`` has passed."""
        out = []
        timers = self._offer_timers
        while timers and timers[0][0] <= now:
            _, oid = _heappop(timers)
            t = self._offers.get(oid)
            if t is not None:
                out.append(self._end_offer(t, now, "timed_out"))
        return out

    def step(self, now: float, limit: int | None = None) -> StepResult:
        """Expire offers, fire timers, decide: one turn of the router loop."""
        outcomes = self.expire_offers(now)
        offers = self.decide(now, limit)
        return StepResult(outcomes, offers, self.drain_events())

    def drain_events(self) -> list[RoutingEvent]:
        """Escalations, overflows and wrap-up ends since the last call."""
        events, self._events = self._events, []
        return events

    def _open_offer(self, offer_id: int) -> _Task:
        t = self._offers.get(offer_id)
        if t is None:
            raise NotFound(f"offer {offer_id} is not open: it was answered, timed out or withdrawn")
        return t

    def _end_offer(self, t: _Task, now: float, kind: str, *, requeue: bool = True) -> OfferOutcome:
        offer: Offer = t.offer
        a = t.agent
        assert a is not None
        del self._offers[offer.offer_id]
        self._queues[t.queue].n_offered -= 1
        t.offer = None
        t.agent = None
        t.status = WAITING
        a.load[t.channel] -= 1
        a.n_tasks -= 1
        away = None
        cooldown = self.config.reoffer_cooldown_seconds
        if kind != "rescinded" and cooldown > 0:
            t.excluded[a.id] = now + cooldown
        if kind == "timed_out":
            a.streak += 1
            limit = self.config.max_consecutive_no_answer
            if limit is not None and a.streak >= limit and a.available:
                away = AgentAway(a.id, now, "no_answer", a.streak)
                a.available = False
                a.streak = 0
        elif kind == "rejected":
            a.streak = 0
        if a.removed and a.n_tasks == 0:
            self._agents.pop(a.id, None)
        self._touch(a)
        if requeue:
            self._place(t, now)
            if kind != "rescinded" and cooldown > 0:
                _heappush(self._timers, (now + cooldown, _WAKE, t.seq, next(self._no), t))
        return OfferOutcome(offer.offer_id, t.id, a.id, kind, now, away)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ completion

    def complete(self, task_id: Id, now: float, wrap_up_seconds: float | None = None) -> Completed:
        """The conversation/call is over. The slot stays busy for the wrap-up (the queue's
        default unless given), then frees itself at the next ``advance``; handle time = talk +
        wrap-up."""
        t = self._task(task_id)
        if t.status != ASSIGNED:
            raise Conflict(f"task {task_id!r} is {t.status}, not assigned: nothing to complete")
        a = t.agent
        assert a is not None and t.accepted_at is not None
        q = self._queues[t.queue]
        wrap = q.cfg.wrap_up_seconds if wrap_up_seconds is None else wrap_up_seconds
        if wrap < 0:
            raise ValidationFailed("wrap-up time cannot be negative", field="wrap_up_seconds")
        t.talk = now - t.accepted_at
        if wrap > 0:
            t.status = WRAPPING
            t.wrap_until = now + wrap
            t.timer_no = no = next(self._no)
            _heappush(self._timers, (t.wrap_until, _WRAP, t.seq, no, t))
            return Completed(t.id, a.id, now, t.talk, t.wrap_until)
        self._finish(t, now)
        return Completed(t.id, a.id, now, t.talk, None)

    def end_wrap_up(self, task_id: Id, now: float) -> WrapUpEnded:
        """The agent finished after-contact work early."""
        t = self._task(task_id)
        if t.status != WRAPPING:
            raise Conflict(f"task {task_id!r} is {t.status}, not in wrap-up")
        return self._finish(t, now)

    def _finish(self, t: _Task, at: float) -> WrapUpEnded:
        a = t.agent
        assert a is not None and t.accepted_at is not None
        handle = at - t.accepted_at
        self._queues[t.queue].aht[t.channel].add(handle)
        a.load[t.channel] -= 1
        a.n_tasks -= 1
        a.last_idle = at
        t.status = GONE
        self._tasks.pop(t.id, None)
        if a.removed and a.n_tasks == 0:
            self._agents.pop(a.id, None)
        self._touch(a)
        return WrapUpEnded(t.id, a.id, t.queue, at, handle, t.channel)

    # ------------------------------------------------------------------ reading

    def _task(self, task_id: Id) -> _Task:
        t = self._tasks.get(task_id)
        if t is None:
            raise NotFound(f"task {task_id!r} is not in the routing engine")
        return t

    def _agent(self, agent_id: Id) -> _Agent:
        a = self._agents.get(agent_id)
        if a is None:
            raise NotFound(f"agent {agent_id!r} is not in the routing engine")
        return a

    def add_agents(self, agents: Iterable[Agent], now: float | None = None) -> None:
        for agent in agents:
            self.upsert_agent(agent, now)
