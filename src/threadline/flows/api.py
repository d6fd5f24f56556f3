"""Flows (IVR on voice, button bots in chat): admins create flows and save versions; supervisors read
them. A definition is validated when saved and refused (422) naming every reason; ``/flows/validate``
answers the problems without saving. Guide: docs/flows.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from threadline.db.types import utcnow
from threadline.domain.errors import NotFound
from threadline.flows import actions as flow_actions
from threadline.flows import repo
from threadline.flows.domain import problems_in
from threadline.flows.models import FlowRow, FlowVersionRow
from threadline.web.api.schemas import Id, In
from threadline.web.deps import AdminActor, ServicesDep, SupervisorActor

router = APIRouter(tags=["flows"])
Kind = Literal["ivr", "bot", "any"]


class FlowIn(In):
    name: str = Field(min_length=1, max_length=100)
    kind: Kind = Field(default="any", description="ivr (voice), bot (chat) or any")
    description: str = Field(default="", max_length=500)
    definition: dict[str, Any] | None = Field(default=None, description="Saved as version 1 when given")


class FlowUpdate(In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    kind: Kind | None = None
    description: str | None = Field(default=None, max_length=500)


class VersionIn(In):
    definition: dict[str, Any] = Field(description="The flow definition (docs/flows.md)")
    note: str = Field(default="", max_length=500, description="What changed, for the version history")


class ValidateIn(In):
    definition: dict[str, Any]


class ProblemOut(BaseModel):
    node: str | None = Field(description="The node at fault; null for the flow as a whole")
    message: str


class ValidationOut(BaseModel):
    ok: bool
    problems: list[ProblemOut]


class VersionSummary(BaseModel):
    version: int
    note: str
    created_by: int | None
    created_at: datetime


class VersionOut(VersionSummary):
    flow_id: int
    definition: dict[str, Any]


class FlowOut(BaseModel):
    id: int
    name: str
    kind: str
    description: str
    current_version: int = Field(description="The version new calls and chats pin; 0: none saved yet")
    created_at: datetime
    updated_at: datetime


class FlowDetail(FlowOut):
    versions: list[VersionSummary] = Field(description="Newest first")
    definition: dict[str, Any] | None = Field(description="The current version's definition")


def flow_out(row: FlowRow) -> FlowOut:
    return FlowOut(id=row.id, name=row.name, kind=row.kind, description=row.description,
                   current_version=row.current_version, created_at=row.created_at, updated_at=row.updated_at)


def summary(row: FlowVersionRow) -> VersionSummary:
    return VersionSummary(version=row.version, note=row.note, created_by=row.created_by, created_at=row.created_at)


def version_out(row: FlowVersionRow) -> VersionOut:
    return VersionOut(**summary(row).model_dump(), flow_id=row.flow_id, definition=row.definition)


@router.get("/flows", response_model=list[FlowOut])
async def list_flows(actor: SupervisorActor, services: ServicesDep) -> list[FlowOut]:
    async with services.db.transaction(write=False) as session:
        return [flow_out(r) for r in await repo.list_flows(session)]


@router.post("/flows", response_model=FlowDetail, status_code=201,
             summary="Create a flow; with a definition, saved as version 1 (refused with the reasons if invalid)")
async def create_flow(body: FlowIn, actor: AdminActor, services: ServicesDep) -> FlowDetail:
    async with services.db.transaction(write=True) as session:
        row, _ = await flow_actions.create_flow(session, name=body.name, kind=body.kind, description=body.description,
                                                definition=body.definition, created_by=actor.user_id, now=utcnow())
        flow_id = row.id
    return await _detail(services, flow_id)


@router.post("/flows/validate", response_model=ValidationOut,
             summary="The problems of a definition, without saving it (ok: it would be accepted)")
async def validate_flow(body: ValidateIn, actor: SupervisorActor) -> ValidationOut:
    _, problems = problems_in(body.definition)
    return ValidationOut(ok=not problems, problems=[ProblemOut(node=p.node, message=p.message) for p in problems])


async def _detail(services: Any, flow_id: int) -> FlowDetail:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_flow(session, flow_id)
        if row is None:
            raise NotFound(f"flow {flow_id} does not exist")
        versions = await repo.list_versions(session, flow_id)
        current = next((v for v in versions if v.version == row.current_version), None)
        return FlowDetail(**flow_out(row).model_dump(), versions=[summary(v) for v in versions],
                          definition=current.definition if current else None)


@router.get("/flows/{flow_id}", response_model=FlowDetail)
async def get_flow(flow_id: Id, actor: SupervisorActor, services: ServicesDep) -> FlowDetail:
    return await _detail(services, flow_id)


@router.patch("/flows/{flow_id}", response_model=FlowDetail, summary="Rename or describe a flow")
async def update_flow(flow_id: Id, body: FlowUpdate, actor: AdminActor, services: ServicesDep) -> FlowDetail:
    async with services.db.transaction(write=True) as session:
        await flow_actions.update_flow(session, flow_id, **body.model_dump(exclude_unset=True), now=utcnow())
    return await _detail(services, flow_id)


@router.post("/flows/{flow_id}/versions", response_model=VersionOut, status_code=201,
             summary="Save a new version (it becomes the current one); refused with the reasons if invalid")
async def save_version(flow_id: Id, body: VersionIn, actor: AdminActor, services: ServicesDep) -> VersionOut:
    async with services.db.transaction(write=True) as session:
        row = await flow_actions.save_version(session, flow_id, body.definition, note=body.note,
                                              created_by=actor.user_id, now=utcnow())
        return version_out(row)


@router.get("/flows/{flow_id}/versions/{version}", response_model=VersionOut,
            summary="One saved version, as calls and chats that pinned it run it")
async def get_version(flow_id: Id, version: Id, actor: SupervisorActor, services: ServicesDep) -> VersionOut:
    async with services.db.transaction(write=False) as session:
        row = await repo.get_version(session, flow_id, version)
        if row is None:
            raise NotFound(f"flow {flow_id} has no version {version}")
        return version_out(row)
