"""Routing (ACD): answer offers, pick from a queue, see queues/agents/tasks, edit routing settings.

Reads come from the database (the routing worker persists positions and wait estimates every few
seconds), so any process answers them, whichever one is the routing leader."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from threadline.actions import routing as routing_actions
from threadline.db.repos import routing as repo
from threadline.db.repos import users as users_repo
from threadline.domain.errors import NotFound, ValidationFailed
from threadline.domain.routing.events import WrapUp
from threadline.domain.routing.records import StoredTask, instant
from threadline.domain.routing.settings import EngineSettings, QueueRouting
from threadline.web.api.schemas import Id
from threadline.web.deps import AdminActor, CurrentActor, ServicesDep, SupervisorActor

router = APIRouter(prefix="/routing", tags=["routing"])
_LAST_SECOND = 253_402_300_799  # 9999-12-31 23:59:59 UTC, the last moment a date can hold


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueueRoutingIn(_In):
    routing: dict[str, Any] = Field(default_factory=dict, description="QueueRouting: steps, boosts, offer timeout…")
    settings: dict[str, Any] | None = Field(default=None, description="merged into the queue settings: skills, sla…")
    force: bool = Field(default=False, description="save even if no agent of the current roster can match")


class QueueRoutingOut(BaseModel):
    queue_id: int
    routing: QueueRouting
    settings: dict[str, Any]
    warnings: list[str] = []


class AgentProfileIn(_In):
    capacity: dict[str, int]
    blocked_by: dict[str, list[str]] | None = None


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


class OfferOut(BaseModel):
    offer_id: int
    conversation_id: int
    queue_id: int
    channel: str
    expires_at: float


def _task_out(row: StoredTask, now: datetime) -> TaskOut:
    return TaskOut(conversation_id=row.conversation_id, queue_id=row.queue_id, channel=row.channel, status=row.status,
                   agent_id=row.agent_id, waited_seconds=round(max(0.0, (now - row.enqueued_at).total_seconds()), 1),
                   priority=int(row.task.get("priority", 0)), position=row.position,
                   estimated_wait_seconds=row.ewt_seconds, unroutable_reason=row.note or None)


@router.get("/queues", response_model=list[QueueSummary], summary="Queues with waiting tasks and agents (supervisors)")
async def queues(actor: SupervisorActor, services: ServicesDep) -> list[QueueSummary]:
    now = datetime.now(UTC)
    async with services.db.transaction(write=False) as session:
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


@router.get("/figures", response_model=list[QueueFiguresOut],
            summary="Per queue: answered, service level, ASA, AHT, abandoned (supervisors)")
async def figures(actor: SupervisorActor, services: ServicesDep,
                  since: float | None = Query(default=None, ge=0, le=_LAST_SECOND,
                                              description="Unix seconds; default: today, per queue, "
                                              "from midnight in the queue's business-hours time zone"),
                  until: float | None = Query(default=None, ge=0, le=_LAST_SECOND,
                                              description="Unix seconds; default: now")
                  ) -> list[QueueFiguresOut]:
    now = datetime.now(UTC)
    if until is not None and since is None:
        raise ValidationFailed("give since with until (without both, the figures are today's)", field="since")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until must be after since", field="until")
    async with services.db.transaction(write=False) as session:
        records = await repo.queues(session)
        if since is None:
            found = await routing_actions.today_figures(session, now)
            starts = {r.id: routing_actions.local_midnight(now, routing_actions.queue_parts(r)[0].hours.timezone)
                      for r in records}
        else:
            found = await repo.queue_figures(session, instant(since), instant(until) if until is not None else None)
            starts = {r.id: instant(since) for r in records}
    return [_figures_out(found.get(r.id, repo.QueueFigures(queue_id=r.id)), starts[r.id]) for r in records]


@router.get("/agents", response_model=list[AgentSummary], summary="Agents by state, with their load (supervisors)")
async def agents(actor: SupervisorActor, services: ServicesDep) -> list[AgentSummary]:
    async with services.db.transaction(write=False) as session:
        roster = await repo.roster(session)
        loads = await repo.loads(session)
        offers = await repo.offer_counts(session)
    return [AgentSummary(id=a.id, name=a.name, presence=a.presence, queue_ids=a.queue_ids,
                         capacity=dict(a.agent().capacity), load=loads.get(a.id, {}),
                         open_offers=offers.get(a.id, 0)) for a in roster]


@router.put("/agents/{user_id}", status_code=204, summary="Set an agent's slots per channel class (supervisors)")
async def set_agent(user_id: Id, body: AgentProfileIn, actor: SupervisorActor, services: ServicesDep) -> None:
    async with services.db.transaction() as session:
        await routing_actions.set_agent_profile(session, actor, user_id, capacity=body.capacity,
                                                blocked_by=body.blocked_by)


@router.get("/tasks", response_model=list[TaskOut], summary="Tasks in queues, by position (supervisors: all)")
async def tasks(actor: CurrentActor, services: ServicesDep, queue_id: Id | None = None,
                status: str | None = Query(default=None, pattern="^(waiting|offered|assigned|wrapping)$"),
                limit: int = Query(default=100, ge=1, le=1000)) -> list[TaskOut]:
    now = datetime.now(UTC)
    async with services.db.transaction(write=False) as session:
        rows = await repo.tasks(session, queue_id, status, limit)
    return [_task_out(r, now) for r in rows if actor.visibility.sees_task(r.queue_id, r.agent_id)]


@router.get("/tasks/{conversation_id}", response_model=TaskOut,
            summary="A conversation's place in its queue and estimated wait")
async def task(conversation_id: Id, actor: CurrentActor, services: ServicesDep) -> TaskOut:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_task(session, conversation_id)
    if row is None or not actor.visibility.sees_task(row.queue_id, row.agent_id):
        raise NotFound(f"conversation {conversation_id} is not in a queue")
    return _task_out(row, datetime.now(UTC))


@router.post("/tasks/{conversation_id}/pick", status_code=204, summary="Take a waiting conversation by hand")
async def pick(conversation_id: Id, actor: CurrentActor, services: ServicesDep) -> None:
    async with services.db.transaction() as session:
        await routing_actions.pick_task(session, actor, conversation_id)


@router.get("/wrap-ups", response_model=list[WrapUp], summary="My conversations in wrap-up, with when each ends")
async def my_wrap_ups(actor: CurrentActor, services: ServicesDep) -> list[WrapUp]:
    async with services.db.transaction(write=False) as session:
        return await routing_actions.my_wrap_ups(session, actor)


@router.post("/tasks/{conversation_id}/end-wrap-up", status_code=204,
             summary="End a wrap-up early: the agent is ready for the next contact")
async def end_wrap_up(conversation_id: Id, actor: CurrentActor, services: ServicesDep) -> None:
    async with services.db.transaction() as session:
        await routing_actions.end_wrap_up(session, actor, conversation_id)


@router.get("/offers", response_model=list[OfferOut], summary="My open offers")
async def my_offers(actor: CurrentActor, services: ServicesDep) -> list[OfferOut]:
    async with services.db.transaction(write=False) as session:
        rows = await repo.agent_open_offers(session, actor.user_id)
    return [OfferOut(offer_id=o.id, conversation_id=o.conversation_id, queue_id=o.queue_id, channel=o.channel,
                     expires_at=o.expires_at.timestamp()) for o in rows]


@router.post("/offers/{offer_id}/accept", summary="Accept an offer: the conversation is assigned to me")
async def accept(offer_id: Id, actor: CurrentActor, services: ServicesDep) -> dict[str, int]:
    async with services.db.transaction() as session:
        conversation_id = await routing_actions.accept_offer(session, actor, offer_id)
    return {"conversation_id": conversation_id}


@router.post("/offers/{offer_id}/reject", status_code=204, summary="Decline an offer")
async def reject(offer_id: Id, actor: CurrentActor, services: ServicesDep) -> None:
    async with services.db.transaction() as session:
        await routing_actions.reject_offer(session, actor, offer_id)


@router.get("/queues/{queue_id}/settings", response_model=QueueRoutingOut, summary="A queue's routing settings")
async def get_queue_settings(queue_id: Id, actor: SupervisorActor, services: ServicesDep) -> QueueRoutingOut:
    async with services.db.transaction(write=False) as session:
        record = next((r for r in await repo.queues(session) if r.id == queue_id), None)
    if record is None:
        raise NotFound(f"queue {queue_id} does not exist")
    settings, routing = routing_actions.queue_parts(record)
    return QueueRoutingOut(queue_id=queue_id, routing=routing, settings=settings.model_dump(mode="json"))


@router.put("/queues/{queue_id}/settings", response_model=QueueRoutingOut,
            summary="Replace a queue's routing settings (refused with the reason when they cannot work)")
async def put_queue_settings(queue_id: Id, body: QueueRoutingIn, actor: AdminActor,
                             services: ServicesDep) -> QueueRoutingOut:
    async with services.db.transaction() as session:
        warnings = await routing_actions.set_queue_routing(session, actor, queue_id, body.routing,
                                                           settings=body.settings, force=body.force)
        record = await users_repo.get_queue(session, queue_id)
        assert record is not None
        settings = dict(record.settings)
    return QueueRoutingOut(queue_id=queue_id, routing=QueueRouting.model_validate(body.routing), settings=settings,
                           warnings=warnings)


@router.get("/settings", response_model=EngineSettings, summary="Engine-wide routing settings")
async def get_settings(actor: SupervisorActor, services: ServicesDep) -> EngineSettings:
    async with services.db.transaction(write=False) as session:
        return await routing_actions.engine_settings(session)


@router.patch("/settings", response_model=EngineSettings, summary="Change engine-wide routing settings")
async def patch_settings(body: dict[str, Any], actor: AdminActor, services: ServicesDep) -> EngineSettings:
    async with services.db.transaction() as session:
        return await routing_actions.set_engine_settings(session, actor, body)
