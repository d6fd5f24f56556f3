"""Queries of flows: the flows, and their versions (immutable, found by flow and number)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.flows.models import FlowRow, FlowVersionRow


async def list_flows(session: AsyncSession) -> Sequence[FlowRow]:
    return (await session.execute(select(FlowRow).order_by(FlowRow.name, FlowRow.id))).scalars().all()


async def get_flow(session: AsyncSession, flow_id: int, *, lock: bool = False) -> FlowRow | None:
    if lock and session.get_bind().dialect.name == "postgresql":  # two saves of one flow take turns
        stmt = select(FlowRow).where(FlowRow.id == flow_id).with_for_update()
        return (await session.execute(stmt)).scalar_one_or_none()
    return await session.get(FlowRow, flow_id)


async def flow_by_name(session: AsyncSession, name: str) -> FlowRow | None:
    stmt = select(FlowRow).where(func.lower(FlowRow.name) == name.lower())
    return (await session.execute(stmt)).scalars().first()


async def get_version(session: AsyncSession, flow_id: int, version: int) -> FlowVersionRow | None:
    stmt = select(FlowVersionRow).where(FlowVersionRow.flow_id == flow_id, FlowVersionRow.version == version)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_versions(session: AsyncSession, flow_id: int) -> Sequence[FlowVersionRow]:
    """The flow's versions, newest first (without their definitions' size mattering: callers list them)."""
    stmt = select(FlowVersionRow).where(FlowVersionRow.flow_id == flow_id).order_by(FlowVersionRow.version.desc())
    return (await session.execute(stmt)).scalars().all()


async def latest_version_number(session: AsyncSession, flow_id: int) -> int:
    stmt = select(func.max(FlowVersionRow.version)).where(FlowVersionRow.flow_id == flow_id)
    return int((await session.execute(stmt)).scalar_one() or 0)
