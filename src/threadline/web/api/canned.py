"""Canned responses: everyone signed in lists them (the composer expands ``/shortcut``); admins manage them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from threadline.actions import canned as canned_actions
from threadline.db.models import CannedResponseRow
from threadline.db.repos import desk as repo
from threadline.domain.errors import NotFound
from threadline.web.api.schemas import Id, In
from threadline.web.deps import AdminActor, CurrentActor, ServicesDep

router = APIRouter(tags=["canned responses"])


class CannedIn(In):
    shortcut: str = Field(min_length=1, max_length=41, description="Typed as /shortcut in the composer")
    title: str = Field(default="", max_length=200)
    text: str = Field(min_length=1, max_length=65_536)


class CannedUpdate(In):
    shortcut: str | None = Field(default=None, max_length=41)
    title: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, max_length=65_536)


class CannedOut(BaseModel):
    id: int
    shortcut: str
    title: str
    text: str
    created_by: int | None
    created_at: datetime
    updated_at: datetime


def canned_out(row: CannedResponseRow) -> CannedOut:
    return CannedOut(id=row.id, shortcut=row.shortcut, title=row.title, text=row.text, created_by=row.created_by,
                     created_at=row.created_at, updated_at=row.updated_at)


@router.get("/canned-responses", response_model=list[CannedOut], summary="Every canned response, by shortcut")
async def list_canned(actor: CurrentActor, services: ServicesDep) -> list[CannedOut]:
    async with services.db.transaction(write=False) as session:
        return [canned_out(r) for r in await repo.list_canned(session)]


@router.post("/canned-responses", response_model=CannedOut, status_code=201)
async def create_canned(body: CannedIn, actor: AdminActor, services: ServicesDep) -> CannedOut:
    async with services.db.transaction(write=True) as session:
        return canned_out(await canned_actions.create_canned(session, actor, **body.model_dump()))


@router.get("/canned-responses/{canned_id}", response_model=CannedOut)
async def get_canned(canned_id: Id, actor: CurrentActor, services: ServicesDep) -> CannedOut:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_canned(session, canned_id)
        if row is None:
            raise NotFound(f"canned response {canned_id} does not exist")
        return canned_out(row)


@router.patch("/canned-responses/{canned_id}", response_model=CannedOut)
async def update_canned(canned_id: Id, body: CannedUpdate, actor: AdminActor, services: ServicesDep) -> CannedOut:
    async with services.db.transaction(write=True) as session:
        return canned_out(await canned_actions.update_canned(session, actor, canned_id,
                                                             **body.model_dump(exclude_unset=True)))


@router.delete("/canned-responses/{canned_id}", status_code=204, response_class=Response)
async def delete_canned(canned_id: Id, actor: AdminActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=True) as session:
        await canned_actions.delete_canned(session, actor, canned_id)
    return Response(status_code=204)
