"""What happens to an outbound message after it is queued: the sender's outcome (sent, failed, retry)
and the provider's delivery receipts, applied by rank so they never move a message backwards; a hard
bounce flags the address on the contact."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.contacts import update_contact
from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.db.models import ChannelInstanceRow, MessageRow, OutboundJobRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as repo
from threadline.domain.events import MessageStatusChanged
from threadline.domain.messages import DeliveryStatus, Direction, StatusUpdate, advance_status


async def _set_status(session: AsyncSession, msg: MessageRow, status: DeliveryStatus, error: str | None) -> bool:
    current = DeliveryStatus(msg.delivery_status) if msg.delivery_status else None
    new = advance_status(current, status)
    if new is None:
        return False
    msg.delivery_status = new.value
    msg.error = (error or "")[:1000] or None if new is DeliveryStatus.FAILED else None
    conv = await repo.get_conversation(session, msg.conversation_id)
    emit(session, MessageStatusChanged(message_id=msg.id, conversation_id=msg.conversation_id,
                                       status=new, error=msg.error), audience_for(conv, customer=True))
    return True


async def apply_status(session: AsyncSession, channel: ChannelInstanceRow, update: StatusUpdate) -> bool:
    """A provider's delivery receipt; applied by rank, so late or repeated receipts change nothing."""
    msg = await repo.message_by_provider_id(session, channel.id, update.provider_id)
    if msg is None or msg.direction != Direction.OUT:
        return False
    changed = await _set_status(session, msg, update.status, update.error)
    if update.identity_flag and msg.identity_id is not None:  # e.g. an email hard bounce
        await flag_undeliverable(session, msg.identity_id, update.identity_flag)
    return changed


async def record_sent(session: AsyncSession, job: OutboundJobRow, provider_id: str, status: DeliveryStatus) -> None:
    msg = await repo.get_message(session, job.message_id)
    job.status, job.attempts = "done", job.attempts + 1
    if msg is None:
        return
    if provider_id and await repo.message_by_provider_id(session, msg.channel_instance_id, provider_id) is not None:
        # A provider that answers with an id it already gave (a bug on its side, or a retried request it
        # had accepted): the message went out; keep the id in meta rather than retrying forever.
        msg.meta = {**(msg.meta or {}), "duplicate_provider_id": provider_id}
        provider_id = None
    msg.provider_id = provider_id
    await _set_status(session, msg, status, None)


async def record_failed(session: AsyncSession, job: OutboundJobRow, reason: str) -> None:
    msg = await repo.get_message(session, job.message_id)
    job.status, job.attempts, job.last_error = "failed", job.attempts + 1, reason[:2000]
    if msg is not None:
        await _set_status(session, msg, DeliveryStatus.FAILED, reason)


def record_retry(job: OutboundJobRow, reason: str, delay_seconds: float, now: datetime) -> None:
    job.attempts += 1
    job.last_error = reason[:2000]
    job.next_attempt_at = now + timedelta(seconds=delay_seconds)


BOUNCED = "undeliverable_addresses"


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
