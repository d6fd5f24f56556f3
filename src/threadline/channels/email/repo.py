"""Queries of IMAP mailbox progress and of the raw mail behind an email message."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.channels.email.models import MailboxStateRow
from threadline.db.models import InboxItemRow


async def get_mailbox_state(session: AsyncSession, channel_id: int, mailbox: str) -> MailboxStateRow | None:
    return await session.get(MailboxStateRow, (channel_id, mailbox))


async def inbox_item_by_key(session: AsyncSession, channel_id: int, dedupe_key: str) -> InboxItemRow | None:
    stmt = select(InboxItemRow).where(InboxItemRow.channel_instance_id == channel_id,
                                      InboxItemRow.dedupe_key == dedupe_key)
    return (await session.execute(stmt)).scalar_one_or_none()
