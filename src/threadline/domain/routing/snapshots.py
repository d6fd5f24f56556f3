"""Snapshots: the engine's whole state as plain models, and the rebuild after a restart.
A mixin of :class:`~.engine.RoutingEngine`."""

from __future__ import annotations

from collections.abc import Mapping
from heapq import heappush
from typing import Self

from ..errors import Conflict, NotFound
from ._state import OFFERED, TIMER_WRAP, WAITING, WRAPPING, _Agent, _Task
from .models import Agent, EngineConfig, Id, Offer, OfferRecord, QueueConfig, RoutingSnapshot, Task


class SnapshotMixin:
    """Mixed into :class:`~.engine.RoutingEngine`, whose state it uses."""

    def snapshot(self) -> RoutingSnapshot:
        """The engine's state as plain models, for persistence and :meth:`from_snapshot`."""
        agents = [
            Agent(
                id=a.id,
                skills=dict(a.skills),
                languages=sorted(a.languages),
                teams=sorted(a.teams),
                queues=sorted(a.queues, key=repr),
                available=a.available,
                capacity={c: n for c, n in a.capacity.items() if n},  # type: ignore[misc]
                blocked_by={c: list(v) for c, v in a.blocked_by.items()},  # type: ignore[misc]
                external_load={c: n for c, n in a.external.items() if n},  # type: ignore[misc]
                last_idle=a.last_idle,
                no_answer_streak=a.streak,
            )
            for a in sorted(self._agents.values(), key=lambda a: a.idx)
            if not a.removed
        ]
        tasks = [self._task_model(t) for t in sorted(self._tasks.values(), key=lambda t: t.seq)]
        offers = [
            OfferRecord(
                offer_id=o.offer_id,
                task_id=o.task_id,
                agent_id=o.agent_id,
                offered_at=o.offered_at,
                expires_at=o.expires_at,
            )
            for o in self.open_offers()
        ]
        return RoutingSnapshot(agents=agents, tasks=tasks, offers=offers, next_offer_id=self._next_offer)

    def get_task(self, task_id: Id) -> Task:
        return self._task_model(self._task(task_id))

    def _task_model(self, t: _Task) -> Task:
        return Task(
            id=t.id,
            channel=t.channel,  # type: ignore[arg-type]
            queue_id=t.queue,
            enqueued_at=t.enqueued_at,
            skills=dict(t.skills),
            language=t.language,
            priority=t.priority,
            preferred_agent_id=t.preferred,
            sticky_until=t.sticky_until,
            preferred_only=t.preferred_only,
            attributes=dict(t.attributes),
            status=t.status,  # type: ignore[arg-type]
            agent_id=t.agent.id if t.agent is not None else None,
            origin_queue_id=t.origin,
            queue_entered_at=t.queue_entered_at,
            escalation_step=t.step,
            excluded_agents=list(t.excluded.items()),
            accepted_at=t.accepted_at,
            wrap_until=t.wrap_until if t.status == WRAPPING else None,
        )

    @classmethod
    def from_snapshot(
        cls,
        snapshot: RoutingSnapshot,
        queues: Mapping[Id, QueueConfig],
        config: EngineConfig | None = None,
        *,
        now: float,
    ) -> Self:
        """Rebuild an engine. Agents' loads are recomputed from the tasks (plus their external
        load). A task marked offered without an open offer record waits again; an offer naming an
        unknown task is dropped; a task held by an agent missing from the roster keeps a
        placeholder agent that receives nothing new."""
        eng = cls(queues, config)
        for agent in snapshot.agents:
            eng.upsert_agent(agent)
        offers = {o.task_id: o for o in snapshot.offers}
        for model in snapshot.tasks:
            if model.queue_id not in eng._queues:
                raise NotFound(f"task {model.id!r} is in queue {model.queue_id!r}, which is not configured")
            if model.id in eng._tasks:
                raise Conflict(f"task {model.id!r} appears twice in the snapshot")
            t = eng._new_task(model)
            eng._tasks[t.id] = t
            record = offers.get(t.id)
            status = model.status
            if status == OFFERED and record is None:
                status = WAITING
            if status == WAITING and record is None:
                eng._place(t, now)
                continue
            if record is not None and status in (WAITING, OFFERED):
                eng._restore_offer(t, record)
                continue
            a = eng._agents.get(model.agent_id) or eng._ghost(model.agent_id)
            t.agent = a
            t.status = status
            t.accepted_at = model.accepted_at if model.accepted_at is not None else now
            a.load[t.channel] += 1
            a.n_tasks += 1
            if status == WRAPPING:
                t.wrap_until = model.wrap_until
                t.timer_no = no = next(eng._no)
                heappush(eng._timers, (t.wrap_until, TIMER_WRAP, t.seq, no, t))
            eng._touch(a)
        eng._next_offer = max([snapshot.next_offer_id] + [o.offer_id + 1 for o in snapshot.offers])
        return eng

    def _restore_offer(self, t: _Task, record: OfferRecord) -> None:
        a = self._agents.get(record.agent_id) or self._ghost(record.agent_id)
        offer = Offer(record.offer_id, t.id, a.id, t.queue, t.channel, record.offered_at, record.expires_at)
        t.status = OFFERED
        t.agent = a
        t.offer = offer
        self._offers[offer.offer_id] = t
        self._queues[t.queue].n_offered += 1
        heappush(self._offer_timers, (offer.expires_at, offer.offer_id))
        a.load[t.channel] += 1
        a.n_tasks += 1
        self._touch(a)

    def _ghost(self, agent_id: Id | None) -> _Agent:
        a = _Agent(next(self._agent_idx), agent_id)
        a.removed = True
        self._agents[agent_id] = a
        return a
