"""Flows: the only writes. Create a flow, save a new version (validated: an invalid definition is
refused with a 422 naming every reason), rename or describe it. Versions are never changed: a call or a
chat pins the version it started on and reads it by number (``repo.get_version``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.events import emit
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import Audience, FlowSaved
from threadline.domain.text import clean_name
from threadline.flows import repo
from threadline.flows.domain import FlowDefinition, check, parse
from threadline.flows.models import FlowRow, FlowVersionRow

KINDS = ("ivr", "bot", "any")  # what a flow is for: voice, chat, or both
MAX_NAME = 100
MAX_DESCRIPTION = 500


def _name(raw: str) -> str:
    name = clean_name(raw, MAX_NAME + 1)
    if not name:
        raise ValidationFailed("a flow needs a name", field="name")
    if len(name) > MAX_NAME:
        raise ValidationFailed(f"a flow's name is at most {MAX_NAME} characters", field="name")
    return name


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValidationFailed(f"kind is one of {', '.join(KINDS)}", field="kind")
    return kind


def _description(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationFailed(f"a description is at most {MAX_DESCRIPTION} characters", field="description")
    return text


async def _flow(session: AsyncSession, flow_id: int, *, lock: bool = False) -> FlowRow:
    row = await repo.get_flow(session, flow_id, lock=lock)
    if row is None:
        raise NotFound(f"flow {flow_id} does not exist")
    return row


async def create_flow(session: AsyncSession, *, name: str, kind: str = "any", description: str = "",
                      definition: FlowDefinition | dict[str, Any] | None = None, created_by: int | None = None,
                      now: datetime) -> tuple[FlowRow, FlowVersionRow | None]:
    """A new flow; with a definition, its version 1 (checked first: nothing is written if it is refused)."""
    flow = _checked(definition) if definition is not None else None
    name = _name(name)
    if await repo.flow_by_name(session, name) is not None:
        raise Conflict(f"a flow named '{name}' exists already", field="name")
    row = FlowRow(name=name, kind=_kind(kind), description=_description(description), current_version=0,
                  created_by=created_by, created_at=now, updated_at=now)
    session.add(row)
    await session.flush()
    version = await _add_version(session, row, flow, created_by=created_by, now=now) if flow else None
    return row, version


async def update_flow(session: AsyncSession, flow_id: int, *, name: str | None = None, kind: str | None = None,
                      description: str | None = None, now: datetime) -> FlowRow:
    row = await _flow(session, flow_id)
    if name is not None and _name(name) != row.name:
        other = await repo.flow_by_name(session, _name(name))
        if other is not None and other.id != row.id:
            raise Conflict(f"a flow named '{_name(name)}' exists already", field="name")
        row.name = _name(name)
    if kind is not None:
        row.kind = _kind(kind)
    if description is not None:
        row.description = _description(description)
    row.updated_at = now
    await session.flush()
    return row


def _checked(definition: FlowDefinition | dict[str, Any]) -> FlowDefinition:
    return check(definition) if isinstance(definition, FlowDefinition) else parse(definition)


async def save_version(session: AsyncSession, flow_id: int, definition: FlowDefinition | dict[str, Any], *,
                       note: str = "", created_by: int | None = None, now: datetime) -> FlowVersionRow:
    """Save the definition as the flow's next version, which becomes its current one. Refused (422, every
    reason named) when the definition does not pass validation; earlier versions stay as they were."""
    flow = _checked(definition)
    row = await _flow(session, flow_id, lock=True)
    return await _add_version(session, row, flow, note=note, created_by=created_by, now=now)


async def _add_version(session: AsyncSession, row: FlowRow, flow: FlowDefinition, *, note: str = "",
                       created_by: int | None, now: datetime) -> FlowVersionRow:
    number = max(row.current_version, await repo.latest_version_number(session, row.id)) + 1
    version = FlowVersionRow(flow_id=row.id, version=number, definition=flow.model_dump(mode="json"),
                             note=_description(note), created_by=created_by, created_at=now)
    session.add(version)
    row.current_version = number
    row.updated_at = now
    await session.flush()
    emit(session, FlowSaved(flow_id=row.id, flow_name=row.name, version=number, actor_id=created_by),
         Audience(supervisors=True))
    return version


async def get_version(session: AsyncSession, flow_id: int, version: int) -> FlowDefinition:
    """The definition of one version (what a call or chat that pinned it runs); 404 when it does not exist."""
    row = await repo.get_version(session, flow_id, version)
    if row is None:
        raise NotFound(f"flow {flow_id} has no version {version}")
    return FlowDefinition.model_validate(row.definition)


async def current_definition(session: AsyncSession, flow_id: int) -> tuple[int, FlowDefinition]:
    """The version a new call or chat pins, and its definition."""
    row = await _flow(session, flow_id)
    if row.current_version == 0:
        raise Conflict(f"flow {flow_id} has no saved version yet")
    return row.current_version, await get_version(session, flow_id, row.current_version)
