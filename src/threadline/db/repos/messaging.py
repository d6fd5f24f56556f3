"""Queries of the messaging channels: templates, and when a customer last wrote on a channel."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import MediaDownloadRow, MessageRow, MessageTemplateRow
from threadline.domain.messages import Direction


async def list_templates(session: AsyncSession, channel_id: int) -> list[MessageTemplateRow]:
    stmt = (select(MessageTemplateRow).where(MessageTemplateRow.channel_instance_id == channel_id)
            .order_by(MessageTemplateRow.name, MessageTemplateRow.language))
    return list((await session.execute(stmt)).scalars())


async def get_template(session: AsyncSession, template_id: int) -> MessageTemplateRow | None:
    return await session.get(MessageTemplateRow, template_id)


async def find_template(session: AsyncSession, channel_id: int, name: str, language: str) -> MessageTemplateRow | None:
    stmt = select(MessageTemplateRow).where(MessageTemplateRow.channel_instance_id == channel_id,
                                            MessageTemplateRow.name == name, MessageTemplateRow.language == language)
    return (await session.execute(stmt)).scalar_one_or_none()


async def last_inbound_at(session: AsyncSession, conversation_id: int, channel_id: int, identity_id: int
                          ) -> datetime | None:
    """When the customer last wrote in this conversation on this channel and address (the provider's window
    runs per customer and business number; a new customer message joins their open conversation, so it is
    here; the conversation index keeps this cheap however many messages the channel has)."""
    stmt = (select(MessageRow.created_at)
            .where(MessageRow.conversation_id == conversation_id, MessageRow.channel_instance_id == channel_id,
                   MessageRow.identity_id == identity_id, MessageRow.direction == Direction.IN.value)
            .order_by(MessageRow.id.desc()).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()


async def last_inbound_identity(session: AsyncSession, conversation_id: int, channel_id: int) -> int | None:
    """The address the customer last wrote from in this conversation on this channel, if they did."""
    stmt = (select(MessageRow.identity_id)
            .where(MessageRow.conversation_id == conversation_id, MessageRow.channel_instance_id == channel_id,
                   MessageRow.direction == Direction.IN.value)
            .order_by(MessageRow.id.desc()).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()


async def due_media(session: AsyncSession, now: datetime, limit: int) -> list[MediaDownloadRow]:
    stmt = (select(MediaDownloadRow)
            .where(MediaDownloadRow.status == "pending", MediaDownloadRow.next_attempt_at <= now)
            .order_by(MediaDownloadRow.id).limit(limit))
    return list((await session.execute(stmt)).scalars())


async def next_media_due(session: AsyncSession) -> datetime | None:
    stmt = (select(MediaDownloadRow.next_attempt_at).where(MediaDownloadRow.status == "pending")
            .order_by(MediaDownloadRow.next_attempt_at).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_media(session: AsyncSession, download_id: int) -> MediaDownloadRow | None:
    return await session.get(MediaDownloadRow, download_id)


async def media_of(session: AsyncSession, message_id: int) -> list[MediaDownloadRow]:
    stmt = select(MediaDownloadRow).where(MediaDownloadRow.message_id == message_id).order_by(MediaDownloadRow.id)
    return list((await session.execute(stmt)).scalars())
