"""Routing reads for supervisors and agents: queues with their waiting work, today's figures, agents
by state, tasks by position. The API (``/api/v1/routing``) answers with these models and the
supervisors' live board (``/admin/live``) draws them.

Reads come from the database (the routing worker persists positions and wait estimates every few
seconds), so any process answers them, whichever one is the routing leader."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import routing as routing_actions
from threadline.db.repos import routing as repo
from threadline.domain.access import Visibility
from threadline.domain.errors import NotFound, ValidationFailed
from threadline.domain.routing.records import StoredTask, instant


class QueueSummary(BaseModel):
    id: int
    name: str
    waiting: int
    offered: int
    assigned: int
    wrapping: int
    unroutable: int
    longest_wait_seconds: float
    sla_answer_seconds: int
    sla_target_percent: float
    agents_available: int
    agents_total: int


class QueueFiguresOut(BaseModel):
    """A queue's contacts since ``since``: service level = answered within the answer target /
    (answered + abandoned); ASA = mean wait of answered; AHT = mean handle time (talk + wrap-up)."""

    queue_id: int
    since: float
    answered: int
    answered_within_target: int
    abandoned: int
    cancelled: int
    transferred: int
    handled: int
    service_level_percent: float | None
    asa_seconds: float | None
    aht_seconds: float | None
    abandonment_percent: float | None
    longest_answered_wait_seconds: float


class AgentSummary(BaseModel):
    id: int
    name: str
    presence: str
    queue_ids: list[int]
    capacity: dict[str, int]
    load: dict[str, int]
    open_offers: int


class TaskOut(BaseModel):
    conversation_id: int
    queue_id: int
    channel: str
    status: str
    agent_id: int | None
    waited_seconds: float
    priority: int
    position: int | None
    estimated_wait_seconds: float | None
    unroutable_reason: str | None


def _task_out(row: StoredTask, now: datetime) -> TaskOut:
    return TaskOut(conversation_id=row.conversation_id, queue_id=row.queue_id, channel=row.channel, status=row.status,
                   agent_id=row.agent_id, waited_seconds=round(max(0.0, (now - row.enqueued_at).total_seconds()), 1),
                   priority=int(row.task.get("priority", 0)), position=row.position,
                   estimated_wait_seconds=row.ewt_seconds, unroutable_reason=row.note or None)


async def queue_summaries(session: AsyncSession, now: datetime | None = None) -> list[QueueSummary]:
    """Every queue with its tasks by state, longest wait, answer target and agents."""
    now = now or datetime.now(UTC)
    records = await repo.queues(session)
    counts = await repo.queue_counts(session)
    roster = await repo.roster(session)
    out = []
    for r in records:
        c = counts.get(r.id, {})
        members = [a for a in roster if r.id in a.queue_ids]
        settings, _ = routing_actions.queue_parts(r)
        oldest = c.get("oldest")
        out.append(QueueSummary(
            id=r.id, name=r.name, waiting=c.get("waiting", 0), offered=c.get("offered", 0),
            assigned=c.get("assigned", 0), wrapping=c.get("wrapping", 0), unroutable=c.get("unroutable", 0),
            longest_wait_seconds=round((now - oldest).total_seconds(), 1) if oldest is not None else 0.0,
            sla_answer_seconds=settings.sla.answer_seconds, sla_target_percent=settings.sla.service_level_percent,
            agents_available=sum(1 for a in members if a.presence == "available"), agents_total=len(members)))
    return out


def _pct(v: float | None) -> float | None:
    return round(100 * v, 1) if v is not None else None


def _figures_out(f: repo.QueueFigures, since: datetime) -> QueueFiguresOut:
    return QueueFiguresOut(
        queue_id=f.queue_id, since=since.timestamp(), answered=f.answered, answered_within_target=f.answered_within,
        abandoned=f.abandoned, cancelled=f.cancelled, transferred=f.transferred, handled=f.handled,
        service_level_percent=_pct(f.service_level),
        asa_seconds=round(f.asa_seconds, 1) if f.asa_seconds is not None else None,
        aht_seconds=round(f.aht_seconds, 1) if f.aht_seconds is not None else None,
        abandonment_percent=_pct(f.abandonment), longest_answered_wait_seconds=round(f.longest_answered_wait, 1))


async def queue_figures(session: AsyncSession, since: float | None = None, until: float | None = None,
                        now: datetime | None = None) -> list[QueueFiguresOut]:
    """Per queue, between ``since`` and ``until`` (Unix seconds); without them, today's figures, from
    midnight in each queue's business-hours time zone."""
    now = now or datetime.now(UTC)
    if until is not None and since is None:
        raise ValidationFailed("give since with until (without both, the figures are today's)", field="since")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until must be after since", field="until")
    records = await repo.queues(session)
    if since is None:
        found = await routing_actions.today_figures(session, now)
        starts = {r.id: routing_actions.local_midnight(now, routing_actions.queue_parts(r)[0].hours.timezone)
                  for r in records}
    else:
        found = await repo.queue_figures(session, instant(since), instant(until) if until is not None else None)
        starts = {r.id: instant(since) for r in records}
    return [_figures_out(found.get(r.id, repo.QueueFigures(queue_id=r.id)), starts[r.id]) for r in records]


async def agent_summaries(session: AsyncSession) -> list[AgentSummary]:
    """Every agent with presence, queues, slots per channel class, load and open offers."""
    roster = await repo.roster(session)
    loads = await repo.loads(session)
    offers = await repo.offer_counts(session)
    return [AgentSummary(id=a.id, name=a.name, presence=a.presence, queue_ids=a.queue_ids,
                         capacity=dict(a.agent().capacity), load=loads.get(a.id, {}),
                         open_offers=offers.get(a.id, 0)) for a in roster]


async def visible_tasks(session: AsyncSession, vis: Visibility, queue_id: int | None = None,
                        status: str | None = None, limit: int = 100) -> list[TaskOut]:
    """Tasks by position that the actor may see (``Visibility.sees_task``)."""
    rows = await repo.tasks(session, queue_id, status, limit)
    now = datetime.now(UTC)
    return [_task_out(r, now) for r in rows if vis.sees_task(r.queue_id, r.agent_id)]


async def visible_task(session: AsyncSession, vis: Visibility, conversation_id: int) -> TaskOut:
    """A conversation's place in its queue, if the actor may see it (NotFound otherwise)."""
    row = await repo.get_task(session, conversation_id)
    if row is None or not vis.sees_task(row.queue_id, row.agent_id):
        raise NotFound(f"conversation {conversation_id} is not in a queue")
    return _task_out(row, datetime.now(UTC))
