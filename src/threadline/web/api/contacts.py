"""Contacts (customers) with their identities; search by name, email, phone or handle. Agents see and
change only the contacts they may see (``permissions.visible_contact``); others answer 404."""

from __future__ import annotations

from fastapi import APIRouter, Query

from threadline.actions import contacts as contact_actions
from threadline.actions.permissions import visible_contact
from threadline.actions.views import contact_views
from threadline.db.repos import contacts as repo
from threadline.domain.events import ContactView
from threadline.web.api.schemas import ContactCreate, ContactPage, ContactUpdate, Id, IdentityIn
from threadline.web.deps import CurrentActor, ServicesDep

router = APIRouter(tags=["contacts"])


@router.get("/contacts", response_model=ContactPage)
async def list_contacts(actor: CurrentActor, services: ServicesDep,
                        q: str | None = Query(default=None, max_length=200, description="name, email, phone…"),
                        cursor: str | None = Query(default=None, max_length=500),
                        limit: int = Query(default=25, ge=1, le=100)) -> ContactPage:
    async with services.db.transaction(write=False, offload=bool(q)) as session:  # a LIKE scan: off the loop
        rows, nxt = await repo.search_contacts(session, q, cursor, limit, actor.visibility)
        return ContactPage(items=await contact_views(session, rows), next_cursor=nxt)


@router.post("/contacts", response_model=ContactView, status_code=201)
async def create_contact(body: ContactCreate, actor: CurrentActor, services: ServicesDep) -> ContactView:
    async with services.db.transaction(write=True) as session:
        return await contact_actions.create_contact(
            session, name=body.name, identities=[i.model_dump() for i in body.identities],
            attributes=body.attributes, actor=actor)


@router.get("/contacts/{contact_id}", response_model=ContactView)
async def get_contact(contact_id: Id, actor: CurrentActor, services: ServicesDep) -> ContactView:
    async with services.db.transaction(write=False) as session:
        row = await visible_contact(session, actor, contact_id)
        return (await contact_views(session, [row]))[0]


@router.patch("/contacts/{contact_id}", response_model=ContactView)
async def update_contact(contact_id: Id, body: ContactUpdate, actor: CurrentActor, services: ServicesDep
                         ) -> ContactView:
    async with services.db.transaction(write=True) as session:
        return await contact_actions.update_contact(session, contact_id, **body.model_dump(exclude_unset=True),
                                                    actor=actor)


@router.post("/contacts/{contact_id}/identities", response_model=ContactView, status_code=201,
             summary="Add an identity (unverified when an agent adds it; a supervisor or admin confirms one)")
async def add_identity(contact_id: Id, body: IdentityIn, actor: CurrentActor, services: ServicesDep
                       ) -> ContactView:
    async with services.db.transaction(write=True) as session:
        return await contact_actions.add_identity(session, contact_id, **body.model_dump(), actor=actor)
