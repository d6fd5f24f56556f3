"""Read side of the engine: loads, queue positions and wait estimates, SLA state, unroutable
tasks and counters. A mixin of :class:`~.engine.RoutingEngine`; it only reads engine state
(apart from firing due timers through ``advance``)."""

from __future__ import annotations

from ..errors import Conflict
from ._state import WAITING, _Bucket, _Task
from .estimates import estimated_wait, sla_state
from .models import (
    AgentNow,
    Id,
    Offer,
    QueueConfig,
    QueueNow,
    QueuePosition,
    QueueStats,
    SlaAlert,
    SlaState,
    TaskView,
    UnroutableTask,
)
from .validation import explain_no_match


class ReadsMixin:
    """Mixed into :class:`~.engine.RoutingEngine`, whose state it uses."""

    def agent_load(self, agent_id: Id) -> dict[str, int]:
        """Busy slots per channel: offers, assigned and wrapping tasks, plus external load."""
        return dict(self._agent(agent_id).load)

    def is_available(self, agent_id: Id) -> bool:
        return self._agent(agent_id).available

    def waiting_count(self, queue_id: Id | None = None) -> int:
        if queue_id is not None:
            return len(self._queues[queue_id].waiting)
        return sum(len(q.waiting) for q in self._queues.values())

    def open_offers(self) -> list[Offer]:
        return [self._offers[oid].offer for oid in sorted(self._offers)]

    def task_status(self, task_id: Id) -> str:
        return self._task(task_id).status

    def has_task(self, task_id: Id) -> bool:
        return task_id in self._tasks

    @staticmethod
    def _view(t: _Task) -> TaskView:
        o = t.offer
        return TaskView(t.id, t.queue, t.origin, t.channel, t.status, t.agent.id if t.agent is not None else None,
                        t.enqueued_at, o.offer_id if o is not None else None, o.expires_at if o is not None else None)

    def task_view(self, task_id: Id) -> TaskView | None:
        """The task's current state, or None when the engine does not hold it."""
        t = self._tasks.get(task_id)
        return self._view(t) if t is not None else None

    def task_views(self) -> list[TaskView]:
        return [self._view(t) for t in self._tasks.values()]

    def offer_task(self, offer_id: int) -> TaskView | None:
        """The task of an open offer, or None when the offer is no longer open."""
        t = self._offers.get(offer_id)
        return self._view(t) if t is not None else None

    def queue_ids(self) -> list[Id]:
        return list(self._queues)

    def queue_config(self, queue_id: Id) -> QueueConfig | None:
        q = self._queues.get(queue_id)
        return q.cfg if q is not None else None

    def queue_now(self, queue_id: Id, now: float) -> QueueNow:
        q = self._queues[queue_id]
        waiting = q.waiting
        return QueueNow(q.id, len(waiting), q.n_offered,
                        max((now - t.enqueued_at for t in waiting), default=0.0),
                        sum(1 for a in q.members if a.available and not a.removed),
                        tuple(t.id for t in waiting))

    def has_agent(self, agent_id: Id) -> bool:
        """True when the agent is on the roster (not removed)."""
        a = self._agents.get(agent_id)
        return a is not None and not a.removed

    def agents_now(self) -> list[AgentNow]:
        """Every agent on the roster: presence and busy slots per channel class."""
        return [AgentNow(a.id, a.available, {c: n for c, n in a.load.items() if n})
                for a in self._agents.values() if not a.removed]

    def next_timer_at(self) -> float | None:
        """When the next escalation, wrap-up or cool-down timer fires (the caller's next wake-up)."""
        return self._timers[0][0] if self._timers else None

    def aht(self, queue_id: Id, channel: str) -> float:
        """Recent mean handle time of the queue and channel (or the configured fallback)."""
        q = self._queues[queue_id]
        mean = q.aht[channel].mean()
        if mean is not None:
            return mean
        return q.cfg.aht_seconds.get(channel) or self.config.default_aht_seconds.get(channel, 300.0)  # type: ignore[call-overload]

    def positions(self, queue_id: Id, now: float) -> list[QueuePosition]:
        """Queue position and estimated wait of every waiting task of a queue, best first
        (per channel; see :mod:`.estimates` for the formula)."""
        self.advance(now)
        q = self._queues[queue_id]
        tasks = sorted(q.waiting, key=lambda t: (t.neg, t.enqueued_at, t.seq))
        rank: dict[str, int] = {}
        slots: dict[int, tuple[int, int]] = {}
        out = []
        for t in tasks:
            k = rank[t.channel] = rank.get(t.channel, 0) + 1
            out.append(QueuePosition(t.id, q.id, k, self._ewt(t, k, slots)))
        return out

    def position(self, task_id: Id, now: float) -> QueuePosition:
        self.advance(now)
        t = self._task(task_id)
        if t.status != WAITING:
            raise Conflict(f"task {task_id!r} is {t.status}, no longer waiting")
        q = self._queues[t.queue]
        key = (t.neg, t.enqueued_at, t.seq)
        k = 1 + sum(1 for o in q.waiting if o.channel == t.channel and (o.neg, o.enqueued_at, o.seq) < key)
        return QueuePosition(t.id, q.id, k, self._ewt(t, k, {}))

    def _ewt(self, t: _Task, k: int, cache: dict[int, tuple[int, int]]) -> float | None:
        b = t.bucket
        if b is None:
            return None
        sf = cache.get(id(b))
        if sf is None:
            ch = b.channel
            total = free = 0
            for a in b.members:
                if a.available:
                    total += a.capacity[ch]
                    if a.can_take(ch):
                        free += a.capacity[ch] - a.load[ch]
            sf = cache[id(b)] = (total, free)
        return estimated_wait(k, sf[1], sf[0], self.aht(t.queue, t.channel))

    def sla_status(self, task_id: Id, now: float) -> SlaState:
        t = self._task(task_id)
        return sla_state(now - t.enqueued_at, self._queues[t.queue].cfg.sla)

    def sla_alerts(self, now: float, *, include_near: bool = True) -> list[SlaAlert]:
        """Waiting tasks that breached (or are near breaching) their queue's answer target,
        longest waiting first."""
        out = []
        for q in self._queues.values():
            sla = q.cfg.sla
            near = sla.near_breach_ratio * sla.threshold_seconds if include_near else sla.threshold_seconds
            for t in q.waiting:
                waited = now - t.enqueued_at
                if waited >= near:
                    out.append(SlaAlert(t.id, q.id, sla_state(waited, sla), waited, sla.threshold_seconds))
        out.sort(key=lambda s: (-s.waited_seconds, self._tasks[s.task_id].seq))
        return out

    def unroutable(self, now: float) -> list[UnroutableTask]:
        """Waiting tasks that no agent in the roster can take at their current escalation rung
        (whatever their presence), with the reason and when the next rung starts."""
        self.advance(now)
        out = []
        for b in list(self._buckets.values()):
            if b.members or not b.n_tasks:
                continue
            reason = None
            for e in b.tasks:
                t = e[4]
                if t.bucket is not b or t.hno != e[3]:
                    continue
                if reason is None:
                    reason = self._why_unroutable(t, b)
                out.append(UnroutableTask(t.id, t.queue, now - t.enqueued_at, reason, t.next_at))
        out.sort(key=lambda u: -u.waited_seconds)
        return out

    def _why_unroutable(self, t: _Task, b: _Bucket) -> str:
        if b.only is not None:
            return (
                f"waiting only for preferred agent {b.only!r} (until {t.sticky_until:g}), who cannot take it"
            )
        q = self._queues[b.queue]
        pool = set(q.members)
        for team in b.teams:
            pool |= self._team_agents.get(team, set())
        where = f"serving queue {b.queue!r}" + (f" or in team(s) {sorted(b.teams)}" if b.teams else "")
        return explain_no_match(
            [a for a in pool if not a.removed], b.skills, where=where, channel=b.channel, language=b.language
        )

    def queue_stats(self, queue_id: Id) -> QueueStats:
        q = self._queues[queue_id]
        done = q.answered + q.abandoned
        return QueueStats(
            queue_id=q.id,
            waiting=len(q.waiting),
            offered=q.n_offered,
            answered=q.answered,
            answered_within_threshold=q.answered_within,
            abandoned=q.abandoned,
            service_level=q.answered_within / done if done else None,
            asa_seconds=q.wait_sum / q.answered if q.answered else None,
            aht_seconds={c: m for c, r in q.aht.items() if (m := r.mean()) is not None},
        )
