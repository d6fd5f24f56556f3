"""Routing (ACD): answer offers, pick from a queue, see queues/agents/tasks, edit routing settings.

The reads (queues, figures, agents, tasks) are ``threadline.queries.routing``: the desk's live board
calls the same functions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from threadline.actions import routing as routing_actions
from threadline.db.repos import routing as repo
from threadline.db.repos import users as users_repo
from threadline.domain.errors import NotFound
from threadline.domain.routing.events import WrapUp
from threadline.domain.routing.settings import EngineSettings, QueueRouting
from threadline.queries import routing as routing_queries
from threadline.queries.routing import AgentSummary, QueueFiguresOut, QueueSummary, TaskOut
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


class OfferOut(BaseModel):
    offer_id: int
    conversation_id: int
    queue_id: int
    channel: str
    expires_at: float


@router.get("/queues", response_model=list[QueueSummary], summary="Queues with waiting tasks and agents (supervisors)")
async def queues(actor: SupervisorActor, services: ServicesDep) -> list[QueueSummary]:
    async with services.db.transaction(write=False) as session:
        return await routing_queries.queue_summaries(session)


@router.get("/figures", response_model=list[QueueFiguresOut],
            summary="Per queue: answered, service level, ASA, AHT, abandoned (supervisors)")
async def figures(actor: SupervisorActor, services: ServicesDep,
                  since: float | None = Query(default=None, ge=0, le=_LAST_SECOND,
                                              description="Unix seconds; default: today, per queue, "
                                              "from midnight in the queue's business-hours time zone"),
                  until: float | None = Query(default=None, ge=0, le=_LAST_SECOND,
                                              description="Unix seconds; default: now")
                  ) -> list[QueueFiguresOut]:
    async with services.db.transaction(write=False) as session:
        return await routing_queries.queue_figures(session, since, until)


@router.get("/agents", response_model=list[AgentSummary], summary="Agents by state, with their load (supervisors)")
async def agents(actor: SupervisorActor, services: ServicesDep) -> list[AgentSummary]:
    async with services.db.transaction(write=False) as session:
        return await routing_queries.agent_summaries(session)


@router.put("/agents/{user_id}", status_code=204, summary="Set an agent's slots per channel class (supervisors)")
async def set_agent(user_id: Id, body: AgentProfileIn, actor: SupervisorActor, services: ServicesDep) -> None:
    async with services.db.transaction() as session:
        await routing_actions.set_agent_profile(session, actor, user_id, capacity=body.capacity,
                                                blocked_by=body.blocked_by)


@router.get("/tasks", response_model=list[TaskOut], summary="Tasks in queues, by position (supervisors: all)")
async def tasks(actor: CurrentActor, services: ServicesDep, queue_id: Id | None = None,
                status: str | None = Query(default=None, pattern="^(waiting|offered|assigned|wrapping)$"),
                limit: int = Query(default=100, ge=1, le=1000)) -> list[TaskOut]:
    async with services.db.transaction(write=False) as session:
        return await routing_queries.visible_tasks(session, actor.visibility, queue_id, status, limit)


@router.get("/tasks/{conversation_id}", response_model=TaskOut,
            summary="A conversation's place in its queue and estimated wait")
async def task(conversation_id: Id, actor: CurrentActor, services: ServicesDep) -> TaskOut:
    async with services.db.transaction(write=False) as session:
        return await routing_queries.visible_task(session, actor.visibility, conversation_id)


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
