"""Queries of customer satisfaction ratings (CSAT): by conversation, by contact."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import CsatResponseRow


async def csat_for_conversation(session: AsyncSession, conversation_id: int) -> CsatResponseRow | None:
    stmt = select(CsatResponseRow).where(CsatResponseRow.conversation_id == conversation_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def csat_for_contact(session: AsyncSession, contact_id: int, limit: int = 100) -> Sequence[CsatResponseRow]:
    stmt = (select(CsatResponseRow).where(CsatResponseRow.contact_id == contact_id)
            .order_by(CsatResponseRow.id.desc()).limit(limit))
    return (await session.execute(stmt)).scalars().all()
