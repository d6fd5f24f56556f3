"""Customer satisfaction ratings (CSAT) of a contact, as the desk and API clients read them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from threadline.actions import csat as actions
from threadline.web.api.schemas import Id
from threadline.web.deps import CurrentActor, ServicesDep

router = APIRouter(tags=["contacts"])


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


@router.get("/contacts/{contact_id}/csat", response_model=CsatList,
            summary="A customer's satisfaction ratings (newest first) and their average")
async def contact_csat(contact_id: Id, actor: CurrentActor, services: ServicesDep) -> CsatList:
    async with services.db.transaction(write=False) as session:
        rows = await actions.contact_csat(session, actor, contact_id)
    items = [CsatView(id=r.id, conversation_id=r.conversation_id, contact_id=r.contact_id,
                      channel_instance_id=r.channel_instance_id, rating=r.rating, comment=r.comment,
                      created_at=r.created_at) for r in rows]
    return CsatList(items=items, average=round(sum(i.rating for i in items) / len(items), 2) if items else None)
