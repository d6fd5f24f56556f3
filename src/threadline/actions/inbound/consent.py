"""Opt-out keywords (STOP, START and their translations) recorded as the contact's consent, in the consent
scope of the channel they came on (see actions/consent.py for the ledger). Changing it emits
``contact.updated`` and writes an activity line in the conversation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.consent import CONSENT, OPTED_IN, OPTED_OUT, consent_entries, scope_title
from threadline.actions.contacts import update_contact
from threadline.actions.conversations import add_activity, audience_for
from threadline.actions.events import emit
from threadline.actions.views import message_view
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow, MessageRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.domain.events import MessageCreated
from threadline.domain.messages import InboundMessage
from threadline.domain.messaging import Consent


async def record_consent(session: AsyncSession,
                         stored: Sequence[tuple[MessageRow, InboundMessage, ChannelInstanceRow]]) -> None:
    """Record STOP/START (and their translations) as the contact's consent for that address, in the consent
    scope of the channel it came on. Only messages whose whole text is a keyword get here (the adapter marks
    them), so a batch without one costs nothing."""
    for row, msg, channel in stored:
        consent = msg.consent
        cls = get_adapter_class(channel.kind)
        scope = cls.capabilities.consent_scope if cls else None
        if consent not in (Consent.OPT_OUT, Consent.OPT_IN) or row.identity_id is None or not scope:
            continue
        ident = await contacts_repo.get_identity(session, row.identity_id)
        contact = await contacts_repo.get_contact(session, ident.contact_id) if ident else None
        if ident is None or contact is None:
            continue
        status = OPTED_OUT if consent is Consent.OPT_OUT else OPTED_IN
        entries = consent_entries(contact.attributes, ident.value)
        if (entries.get(scope) or {}).get("status") == status:
            continue
        entries[scope] = {"status": status, "keyword": msg.text.strip()[:40],
                          "channel_instance_id": row.channel_instance_id, "at": row.created_at.isoformat()}
        current: dict[str, Any] = {**((contact.attributes or {}).get(CONSENT) or {}), ident.value: entries}
        await update_contact(session, contact.id, attributes={CONSENT: current}, system=True)
        conv = await conv_repo.get_conversation(session, row.conversation_id)
        if conv is not None:
            title = scope_title(scope)
            what = f"opted out of {title} (no more {title} messages)" if status == OPTED_OUT \
                else f"opted back in to {title}"
            line = add_activity(session, conv, f"{ident.value} {what}: replied {msg.text.strip()[:40]!r}", None)
            await session.flush()
            emit(session, MessageCreated(message=message_view(line)), audience_for(conv))
