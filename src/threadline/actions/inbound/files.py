"""Inbound files: a write the email channel brought, kept generic (any channel whose ``parse`` returns
attachment bytes gets them stored; the bounce flag went to actions/outbound/delivery.py).
The email channel's own state (IMAP progress) lives in its package (channels/email/actions.py).

Files: an adapter's ``parse`` is pure, so it returns attachment bytes in ``Attachment.data``;
``receive_with_files`` stores them in the FileStore (content-addressed, so a retry writes nothing new)
with one metadata row each, hands the messages to ``receive_inbound_batch`` with download URLs instead of
bytes, then ties the files to the conversations the messages joined. Inline images (``Attachment.inline``:
shown by the HTML through ``cid:``) are part of the body, not files the customer attached: they are stored
the same way but listed in ``meta.email.inline``, not in the message's attachments, and the HTML's
``cid:`` links point at their download URLs.

Message-IDs: a mail reusing the Message-ID of a stored one from a different sender, date or subject (the
mail's fingerprint) is another mail: it is stored with ``<message-id>#<fingerprint>`` as its provider id
instead of being dropped as a duplicate (a real redelivery never reaches this far: the inbox key holds the
fingerprint too).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.attachments import attach, describe, store_attachment
from threadline.actions.inbound.receive import receive_inbound_batch
from threadline.db.models import ChannelInstanceRow, MessageRow
from threadline.db.repos import conversations as conv_repo
from threadline.domain.messages import Attachment, InboundMessage
from threadline.files.store import FileStore


async def receive_with_files(session: AsyncSession, files: FileStore | None,
                             items: Sequence[tuple[ChannelInstanceRow, InboundMessage]],
                             reopen_within: timedelta | None = None) -> list[MessageRow | None]:
    """``receive_inbound_batch`` for messages that may carry attachment bytes."""
    items = await _distinct_message_ids(session, items)
    if files is None or not any(a.data is not None for _, m in items for a in m.attachments):
        return await receive_inbound_batch(session, [(c, _inline_out(m)) for c, m in items],
                                           reopen_within=reopen_within)
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
                                       content_id=a.content_id, inline=a.inline))
                if a.content_id:
                    cids[a.content_id] = d["url"]
            msg = dataclasses.replace(msg, attachments=tuple(atts), email=_point_cids(msg.email, cids))
        prepared.append((channel, _inline_out(msg)))
        stored_ids.append(ids)
    rows = await receive_inbound_batch(session, prepared, reopen_within=reopen_within)
    for row, ids in zip(rows, stored_ids, strict=True):
        if row is not None and ids:
            await attach(session, ids, row.conversation_id)
    return rows


def _inline_out(msg: InboundMessage) -> InboundMessage:
    """Inline images leave the attachment list for ``meta.email.inline`` (still stored and downloadable)."""
    inline = [a for a in msg.attachments if a.inline]
    email = msg.email
    if not inline or email is None:
        return msg
    listed = [{"url": a.url, "content_type": a.content_type, "name": a.name, "size": a.size,
               "content_id": a.content_id} for a in inline]
    return dataclasses.replace(msg, attachments=tuple(a for a in msg.attachments if not a.inline),
                               email={**email, "inline": listed})


async def _distinct_message_ids(session: AsyncSession, items: Sequence[tuple[ChannelInstanceRow, InboundMessage]]
                                ) -> list[tuple[ChannelInstanceRow, InboundMessage]]:
    """Give a mail that reuses a stored (or an earlier one in this batch) Message-ID with another
    fingerprint a provider id of its own, so it is stored rather than dropped as a duplicate."""
    def fingerprint(msg: InboundMessage) -> str:
        return str(msg.email.get("fingerprint") or "") if msg.email is not None else ""

    keys = {(c.id, m.provider_id) for c, m in items if fingerprint(m)}
    if not keys:
        return list(items)
    seen = await conv_repo.stored_mail_fingerprints(session, keys)
    out = []
    for channel, msg in items:
        fp, key = fingerprint(msg), (channel.id, msg.provider_id)
        if fp and key in seen and seen[key] and seen[key] != fp:
            msg = dataclasses.replace(msg, provider_id=f"{msg.provider_id[:280]}#{fp}")
        elif fp and key not in seen:
            seen[key] = fp
        out.append((channel, msg))
    return out


def _point_cids(email: dict[str, object] | None, cids: dict[str, str]) -> dict[str, object] | None:
    """The email's HTML with its ``cid:`` links pointing at the stored inline images."""
    if not cids or email is None or not isinstance(email.get("html"), str):
        return email
    html = str(email["html"])
    for cid, url in cids.items():
        html = re.sub(rf'(["\'])cid:{re.escape(cid)}\1', lambda m, u=url: f"{m.group(1)}{u}{m.group(1)}", html,
                      flags=re.I)
    return {**email, "html": html}
