"""Queries of stored files' metadata."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import AttachmentRow


async def get_attachment(session: AsyncSession, attachment_id: str) -> AttachmentRow | None:
    return await session.get(AttachmentRow, attachment_id)


async def attachments_by_ids(session: AsyncSession, ids: Sequence[str]) -> list[AttachmentRow]:
    if not ids:
        return []
    return list((await session.execute(select(AttachmentRow).where(AttachmentRow.id.in_(ids)))).scalars())


async def attach_to_conversation(session: AsyncSession, ids: Sequence[str], conversation_id: int) -> None:
    await session.execute(update(AttachmentRow).where(AttachmentRow.id.in_(ids), AttachmentRow.conversation_id.is_(None))
                          .values(conversation_id=conversation_id))
