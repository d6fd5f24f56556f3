"""Inbound media: linked provider files (MMS, WhatsApp, Telegram…) queued with the message, downloaded
by workers/media.py, then attached (or the attachment says why it could not be)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.attachments import describe, store_attachment
from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.views import message_view
from threadline.db.models import MediaDownloadRow, MessageRow
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import messaging as repo
from threadline.db.session import mark_written
from threadline.db.types import utcnow
from threadline.domain.events import MessageUpdated
from threadline.domain.messages import InboundMessage
from threadline.files.store import FileStore

MEDIA_RETRY_SECONDS = (5, 30, 120, 600, 1800)


def queue_media(session: AsyncSession, stored: Sequence[tuple[MessageRow, InboundMessage]]) -> None:
    """One download row per linked attachment of the messages just stored (no query: rows are added to
    the batch's flush). Called by receive_inbound_batch only when a message has ``media_pending``."""
    for row, msg in stored:
        pending = msg.media_pending
        for position, att in enumerate(msg.attachments):
            if att.url in pending:
                session.add(MediaDownloadRow(message_id=row.id, channel_instance_id=row.channel_instance_id,
                                             position=position, url=att.url[:2000], status="pending",
                                             next_attempt_at=row.created_at))
    mark_written(session, "media")


async def attach_media(session: AsyncSession, files: FileStore, download_id: int, data: bytes, content_type: str,
                       max_bytes: int) -> bool:
    """Store downloaded bytes and point the message's attachment at them; one ``message.updated`` event."""
    job = await repo.get_media(session, download_id)
    if job is None or job.status != "pending":
        return False
    msg = await conv_repo.get_message(session, job.message_id)
    if msg is None:
        job.status, job.error = "failed", "the message no longer exists"
        return False
    atts = [dict(a) for a in (msg.attachments or [])]
    if job.position >= len(atts):
        job.status, job.error = "failed", "the attachment is no longer on the message"
        return False
    current = atts[job.position]
    stored = await store_attachment(session, files, data, name=str(current.get("name") or "file"),
                                    content_type=content_type or str(current.get("content_type") or ""),
                                    conversation_id=msg.conversation_id, max_bytes=max_bytes)
    atts[job.position] = {**describe(stored), "source_url": current.get("url")}
    msg.attachments = atts
    meta = dict(msg.meta or {})
    pending = [u for u in meta.get("media_pending") or [] if u != job.url]
    if pending:
        meta["media_pending"] = pending
    else:
        meta.pop("media_pending", None)
    msg.meta = meta
    job.status, job.error, job.attempts = "done", None, job.attempts + 1
    conv = await conv_repo.get_conversation(session, msg.conversation_id)
    emit(session, MessageUpdated(message=message_view(msg), changes=["attachments"]),
         audience_for(conv, customer=msg.direction in ("in", "out")))
    return True


async def media_failed(session: AsyncSession, download_id: int, reason: str, *, permanent: bool) -> None:
    """Try again later (with backoff), or give up and say why on the message's attachment."""
    job = await repo.get_media(session, download_id)
    if job is None or job.status != "pending":
        return
    job.attempts += 1
    job.error = reason[:1000]
    if not permanent and job.attempts < len(MEDIA_RETRY_SECONDS):
        job.next_attempt_at = utcnow() + timedelta(seconds=MEDIA_RETRY_SECONDS[job.attempts - 1])
        return
    job.status = "failed"
    msg = await conv_repo.get_message(session, job.message_id)
    if msg is not None and job.position < len(msg.attachments or []):
        atts = [dict(a) for a in msg.attachments]
        atts[job.position] = {**atts[job.position], "error": f"could not be downloaded: {reason}"[:300]}
        msg.attachments = atts
        conv = await conv_repo.get_conversation(session, msg.conversation_id)
        emit(session, MessageUpdated(message=message_view(msg), changes=["attachments"]),
         audience_for(conv, customer=msg.direction in ("in", "out")))
