"""The email channel's own writes: per-mailbox IMAP progress (``email_mailbox_state``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.channels.email import repo
from threadline.channels.email.models import MailboxStateRow


async def mailbox_state(session: AsyncSession, channel_id: int, mailbox: str) -> tuple[int, int]:
    row = await repo.get_mailbox_state(session, channel_id, mailbox)
    return (row.uidvalidity, row.last_uid) if row is not None else (0, 0)


async def save_mailbox_state(session: AsyncSession, channel_id: int, mailbox: str, uidvalidity: int,
                             last_uid: int) -> None:
    row = await repo.get_mailbox_state(session, channel_id, mailbox)
    if row is None:
        session.add(MailboxStateRow(channel_instance_id=channel_id, mailbox=mailbox, uidvalidity=uidvalidity,
                                    last_uid=last_uid))
    else:
        row.uidvalidity, row.last_uid = uidvalidity, last_uid
