from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ChannelInstanceRow


async def get_channel(session: AsyncSession, channel_id: int) -> ChannelInstanceRow | None:
    return await session.get(ChannelInstanceRow, channel_id)


async def get_channel_by_key(session: AsyncSession, key: str) -> ChannelInstanceRow | None:
    stmt = select(ChannelInstanceRow).where(ChannelInstanceRow.key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_channel_by_name(session: AsyncSession, name: str) -> ChannelInstanceRow | None:
    stmt = select(ChannelInstanceRow).where(ChannelInstanceRow.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_channels(session: AsyncSession) -> Sequence[ChannelInstanceRow]:
    return (await session.execute(select(ChannelInstanceRow).order_by(ChannelInstanceRow.id))).scalars().all()


async def get_channels(session: AsyncSession, channel_ids: set[int]) -> dict[int, ChannelInstanceRow]:
    if not channel_ids:
        return {}
    rows = await session.execute(select(ChannelInstanceRow).where(ChannelInstanceRow.id.in_(channel_ids)))
    return {row.id: row for row in rows.scalars()}
