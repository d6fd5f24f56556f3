"""The messaging channels' rules before an outbound message is queued: media the channel takes, no outbound
to an opted-out identity (actions/consent.py), WhatsApp's 24-hour window (free text inside it, approved
templates outside); and what the composer needs to know before sending (limits, SMS segments, window,
consent).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.consent import consent_entries, opted_out, scope_title
from threadline.channels.base import Capabilities, ChannelAdapter
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow, ConversationRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import messaging as repo
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.errors import NotFound, ValidationFailed
from threadline.domain.messaging import sms_segments, window_open

# --- checks before an outbound message is queued ---------------------------------------------------------

async def check_send_rules(session: AsyncSession, conv: ConversationRow, channel: ChannelInstanceRow,
                           identity_id: int, adapter_cls: type[ChannelAdapter], *, template: bool,
                           attachments: Sequence[dict[str, Any]] | None = None, now: datetime | None = None) -> None:
    """Refuse, with a message the agent can act on, what the channel's rules forbid."""
    caps = adapter_cls.capabilities
    for a in attachments or []:
        problem = media_problem(caps, str(a.get("content_type") or ""), a.get("size"))
        if problem:
            raise ValidationFailed(f"{adapter_cls.title}: {a.get('name') or 'an attachment'} {problem}",
                                   field="attachments")
    if caps.consent_scope:
        record = await opted_out(session, identity_id, caps.consent_scope)
        if record is not None:
            ident = await contacts_repo.get_identity(session, identity_id)
            title = scope_title(caps.consent_scope)
            raise ValidationFailed(
                f"{ident.value if ident else 'this customer'} replied {record.get('keyword') or 'STOP'!r} and opted "
                f"out of {title} messages; nothing can be sent on {title} until they reply START (other channels "
                "are not affected)", field="text")
    if caps.reply_window_seconds and not template:
        last = await repo.last_inbound_at(session, conv.id, channel.id, identity_id)
        if not window_open(last, now or utcnow(), caps.reply_window_seconds):
            hours = caps.reply_window_seconds // 3600
            when = f"last wrote at {last:%Y-%m-%d %H:%M} UTC" if last else "has not written on this channel"
            raise ValidationFailed(
                f"{adapter_cls.title}: the {hours}-hour customer-service window is closed (the customer {when}); "
                + ("free text cannot be sent, send an approved template instead" if caps.templates
                   else "nothing can be sent until the customer writes again"), field="text")


def media_problem(caps: Capabilities, content_type: str, size: object) -> str | None:
    """Why a file cannot go out on a channel (type or size), or None."""
    if not caps.attachments:
        return "cannot be sent: this channel takes no attachments"
    allowed = caps.allowed_content_types
    ctype = content_type.lower()
    if not any(p in ("*/*", ctype) or (p.endswith("/*") and ctype.startswith(p[:-1])) for p in allowed):
        return f"is {ctype or 'of an unknown type'}; this channel sends {', '.join(allowed)}"
    if isinstance(size, int) and size > caps.max_attachment_bytes:
        return f"is {size} bytes; the limit is {caps.max_attachment_bytes}"
    return None


# --- what the composer shows before sending ------------------------------------------------------------

async def composer_limits(session: AsyncSession, actor: Actor, channel_id: int, *, text: str = "",
                          conversation_id: int | None = None, identity_id: int | None = None) -> dict[str, Any]:
    channel = await channels_repo.get_channel(session, channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} does not exist")
    cls = get_adapter_class(channel.kind)
    if cls is None:
        raise NotFound(f"channel kind {channel.kind!r} is not installed")
    caps = cls.capabilities
    out: dict[str, Any] = {
        "channel_id": channel.id, "kind": channel.kind, "title": cls.title, "enabled": channel.enabled,
        "max_text_length": caps.max_text_length, "text_length": len(text),
        "attachments": caps.attachments, "max_attachment_bytes": caps.max_attachment_bytes,
        "allowed_content_types": list(caps.allowed_content_types), "reply_window_seconds": caps.reply_window_seconds,
        "templates": caps.templates, "consent_keywords": caps.consent_keywords,
        "consent_scope": caps.consent_scope, "problems": [],
    }
    if len(text) > caps.max_text_length:
        out["problems"].append(f"{cls.title} messages are at most {caps.max_text_length} characters")
    if caps.sms_segments:
        seg = sms_segments(text)
        out["sms"] = {"encoding": seg.encoding, "units": seg.units, "segments": seg.segments,
                      "per_segment": seg.per_segment, "remaining": seg.remaining,
                      "non_gsm_characters": list(seg.non_gsm_characters)}
    if conversation_id is not None:
        conv = actor.check_can_see(await conv_repo.get_conversation(session, conversation_id), conversation_id)
        if identity_id is not None:  # the address the agent picked: it must be this customer's
            ident = await contacts_repo.get_identity(session, identity_id)
            if ident is None or ident.contact_id != conv.contact_id:
                raise ValidationFailed(f"identity {identity_id} is not one of this customer's", field="identity_id")
        elif conv.last_channel_instance_id == channel.id:
            identity_id = conv.last_identity_id
        if identity_id is None:  # the address the customer last wrote from on this channel
            identity_id = await repo.last_inbound_identity(session, conv.id, channel.id)
        if identity_id is not None and caps.reply_window_seconds:
            last_at = await repo.last_inbound_at(session, conv.id, channel.id, identity_id)
            now = utcnow()
            is_open = window_open(last_at, now, caps.reply_window_seconds)
            out["window"] = {"open": is_open, "last_inbound_at": last_at.isoformat() if last_at else None,
                             "closes_at": (last_at + timedelta(seconds=caps.reply_window_seconds)).isoformat()
                             if last_at else None}
            if not is_open:
                out["problems"].append("the customer-service window is closed: " + (
                    "only an approved template can be sent" if caps.templates else "wait for the customer to write"))
        if identity_id is not None and caps.consent_scope:
            record = await opted_out(session, identity_id, caps.consent_scope)
            out["opted_out"] = record
            if record:
                out["problems"].append(f"the customer replied {record.get('keyword')!r}: they opted out of "
                                       f"{scope_title(caps.consent_scope)}")
        if identity_id is not None:  # the customer's consent on every scope, e.g. "opted out of SMS" on WhatsApp
            ident = await contacts_repo.get_identity(session, identity_id)
            contact = await contacts_repo.get_contact(session, ident.contact_id) if ident else None
            out["consent"] = {scope: {**entry, "title": scope_title(scope)} for scope, entry in consent_entries(
                contact.attributes if contact else None, ident.value if ident else "").items()}
    return out
