"""Queries of IMAP mailbox progress and of the raw mail behind an email message."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import InboxItemRow, MessageRow
from threadline.db.models.mail import MailboxStateRow


async def get_mailbox_state(session: AsyncSession, channel_id: int, mailbox: str) -> MailboxStateRow | None:
    return await session.get(MailboxStateRow, (channel_id, mailbox))


async def inbox_item_by_key(session: AsyncSession, channel_id: int, dedupe_key: str) -> InboxItemRow | None:
    stmt = select(InboxItemRow).where(InboxItemRow.channel_instance_id == channel_id,
                                      InboxItemRow.dedupe_key == dedupe_key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def stored_fingerprints(session: AsyncSession, keys: set[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """For the (channel, provider id) pairs already stored as messages: the stored mail's fingerprint
    (``meta.email.fingerprint``; "" for a message stored before fingerprints). One query."""
    if not keys:
        return {}
    stmt = select(MessageRow.channel_instance_id, MessageRow.provider_id, MessageRow.meta).where(
        MessageRow.channel_instance_id.in_({c for c, _ in keys}), MessageRow.provider_id.in_({p for _, p in keys}))
    out: dict[tuple[int, str], str] = {}
    for channel_id, provider_id, meta in (await session.execute(stmt)).all():
        if (channel_id, provider_id) in keys:
            email = (meta or {}).get("email")
            out[(channel_id, provider_id)] = str(email.get("fingerprint") or "") if isinstance(email, dict) else ""
    return out
