"""REST API v1 additions for web chat, used by the agent desk: agent typing and CSAT ratings."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from threadline.actions import webchat as actions
from threadline.web.api.schemas import Id
from threadline.web.deps import CurrentActor, ServicesDep

router = APIRouter(prefix="/api/v1", tags=["web chat"])


class TypingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    typing: bool


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    up_to: Id | None = None


class ReadOut(BaseModel):
    marked: list[int]


class CsatView(BaseModel):
    id: int
    conversation_id: int
    contact_id: int
    channel_instance_id: int | None
    rating: int
    comment: str
    created_at: datetime


class CsatList(BaseModel):
    items: list[CsatView]
    average: float | None


@router.post("/conversations/{conversation_id}/typing", status_code=204,
             summary="The agent started or stopped typing (the visitor's widget shows it)")
async def agent_typing(conversation_id: Id, body: TypingIn, actor: CurrentActor, services: ServicesDep) -> None:
    async with services.db.transaction(write=True) as session:
        await actions.agent_typing(session, actor, conversation_id, body.typing)


@router.post("/conversations/{conversation_id}/read", response_model=ReadOut,
             summary="The agent has seen the customer's messages (web chat shows 'Seen')")
async def mark_read(conversation_id: Id, body: ReadIn, actor: CurrentActor, services: ServicesDep) -> ReadOut:
    async with services.db.transaction(write=True) as session:
        return ReadOut(marked=await actions.mark_read(session, actor, conversation_id, body.up_to))


@router.get("/contacts/{contact_id}/csat", response_model=CsatList,
            summary="A customer's satisfaction ratings (newest first) and their average")
async def contact_csat(contact_id: Id, actor: CurrentActor, services: ServicesDep) -> CsatList:
    async with services.db.transaction(write=False) as session:
        rows = await actions.contact_csat(session, actor, contact_id)
    items = [CsatView(id=r.id, conversation_id=r.conversation_id, contact_id=r.contact_id,
                      channel_instance_id=r.channel_instance_id, rating=r.rating, comment=r.comment,
                      created_at=r.created_at) for r in rows]
    return CsatList(items=items, average=round(sum(i.rating for i in items) / len(items), 2) if items else None)
