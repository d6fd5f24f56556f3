"""Inbound files and bounced addresses: writes the email channel brought, kept generic (any channel whose
``parse`` returns attachment bytes gets them stored, any ``identity_flag`` is recorded on the contact).
The email channel's own state (IMAP progress) lives in its package (channels/email/actions.py).

Files: an adapter's ``parse`` is pure, so it returns attachment bytes in ``Attachment.data``;
``receive_with_files`` stores them in the FileStore (content-addressed, so a retry writes nothing new)
with one metadata row each, hands the messages to ``receive_inbound_batch`` with download URLs instead of
bytes, then ties the files to the conversations the messages joined. Inline images referenced as
``cid:`` in a stored HTML body are pointed at their download URL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import messages as message_actions
from threadline.actions.attachments import attach, describe, store_attachment
from threadline.actions.contacts import update_contact
from threadline.db.models import ChannelInstanceRow, MessageRow
from threadline.db.repos import contacts as contacts_repo
from threadline.domain.messages import Attachment, InboundMessage
from threadline.files.store import FileStore

BOUNCED = "undeliverable_addresses"


async def receive_with_files(session: AsyncSession, files: FileStore | None,
                             items: Sequence[tuple[ChannelInstanceRow, InboundMessage]],
                             reopen_within: timedelta | None = None) -> list[MessageRow | None]:
    """``receive_inbound_batch`` for messages that may carry attachment bytes."""
    if files is None or not any(a.data is not None for _, m in items for a in m.attachments):
        return await message_actions.receive_inbound_batch(session, items, reopen_within=reopen_within)
    prepared: list[tuple[ChannelInstanceRow, InboundMessage]] = []
    stored_ids: list[list[str]] = []
    for channel, msg in items:
        ids: list[str] = []
        if any(a.data is not None for a in msg.attachments):
            atts: list[Attachment] = []
            cids: dict[str, str] = {}
            for a in msg.attachments:
                if a.data is None:
                    atts.append(a)
                    continue
                row = await store_attachment(session, files, a.data, name=a.name, content_type=a.content_type)
                ids.append(row.id)
                d = describe(row)
                atts.append(Attachment(url=d["url"], content_type=d["content_type"], name=d["name"], size=d["size"],
                                       content_id=a.content_id))
                if a.content_id:
                    cids[a.content_id] = d["url"]
            msg = dataclasses.replace(msg, attachments=tuple(atts), extra=_point_cids(msg.extra, cids))
        prepared.append((channel, msg))
        stored_ids.append(ids)
    rows = await message_actions.receive_inbound_batch(session, prepared, reopen_within=reopen_within)
    for row, ids in zip(rows, stored_ids, strict=True):
        if row is not None and ids:
            await attach(session, ids, row.conversation_id)
    return rows


def _point_cids(extra: dict[str, object], cids: dict[str, str]) -> dict[str, object]:
    email = extra.get("email")
    if not cids or not isinstance(email, dict) or not isinstance(email.get("html"), str):
        return extra
    html = email["html"]
    for cid, url in cids.items():
        html = html.replace(f'"cid:{cid}"', f'"{url}"')
    return {**extra, "email": {**email, "html": html}}


async def flag_undeliverable(session: AsyncSession, identity_id: int, reason: str) -> None:
    """A hard bounce: record on the contact that this address does not receive mail."""
    ident = await contacts_repo.get_identity(session, identity_id)
    if ident is None:
        return
    contact = await contacts_repo.get_contact(session, ident.contact_id)
    if contact is None:
        return
    current: dict[str, Any] = dict((contact.attributes or {}).get(BOUNCED) or {})
    if current.get(ident.value) == reason[:300]:
        return
    current[ident.value] = reason[:300]
    await update_contact(session, contact.id, attributes={BOUNCED: current}, system=True)
