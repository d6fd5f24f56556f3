"""The messaging channels' rules, as writes and checks: opt-out keywords recorded as consent, no outbound
to an opted-out identity, WhatsApp's 24-hour window (free text inside it, approved templates outside),
template management, and what the composer needs to know before sending (limits, SMS segments).

Consent lives on the contact, per address and per consent scope, the way providers apply opt-outs
(a channel's ``Capabilities.consent_scope``): ``attributes["consent"]["+14155551234"]["sms"] = {"status":
"opted_out", "keyword": "STOP", "channel_instance_id": 3, "at": "…"}``. A STOP on SMS stops SMS to that
number from every SMS channel; a STOP on WhatsApp stops WhatsApp (Cloud API or through Twilio) and leaves
SMS alone. Changing it emits ``contact.updated`` and writes an activity line in the conversation. An entry
of the older, unscoped shape (``consent[address] = {"status": …}``, migrated by ``0011_consent_scope``) is
read as an SMS opt-out, the only one that was ever enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.attachments import describe, store_attachment
from threadline.actions.contacts import update_contact
from threadline.actions.conversations import add_activity, audience_for
from threadline.actions.events import emit
from threadline.actions.views import message_view
from threadline.channels.base import Capabilities, ChannelAdapter
from threadline.channels.registry import get_adapter_class
from threadline.db.models import (
    ChannelInstanceRow,
    ConversationRow,
    MediaDownloadRow,
    MessageRow,
    MessageTemplateRow,
)
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import messaging as repo
from threadline.db.session import mark_written
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import MessageCreated, MessageUpdated, MessageView
from threadline.domain.messages import InboundMessage
from threadline.domain.messaging import (
    Consent,
    render_template,
    sms_segments,
    template_variables,
    window_open,
)
from threadline.files.store import FileStore

CONSENT = "consent"
OPTED_OUT, OPTED_IN = "opted_out", "opted_in"


# --- consent -----------------------------------------------------------------------------------------

SMS, WHATSAPP = "sms", "whatsapp"
SCOPE_TITLES = {SMS: "SMS", WHATSAPP: "WhatsApp"}


def scope_title(scope: str) -> str:
    return SCOPE_TITLES.get(scope, scope)


def consent_entries(attributes: dict[str, Any] | None, address: str) -> dict[str, dict[str, Any]]:
    """The consent records of one address, by scope (an unscoped legacy record counts as SMS)."""
    record = ((attributes or {}).get(CONSENT) or {}).get(address)
    if not isinstance(record, dict):
        return {}
    if "status" in record:  # the shape before consent had scopes
        return {SMS: record}
    return {scope: entry for scope, entry in record.items() if isinstance(entry, dict)}


def consent_view(attributes: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every recorded consent of a contact, for the desk: address, scope, its title, status, keyword, at."""
    out = []
    for address in sorted((attributes or {}).get(CONSENT) or {}):
        for scope, entry in sorted(consent_entries(attributes, address).items()):
            out.append({"address": address, "scope": scope, "title": scope_title(scope),
                        "status": entry.get("status"), "keyword": entry.get("keyword"), "at": entry.get("at")})
    return out


async def record_consent(session: AsyncSession,
                         stored: Sequence[tuple[MessageRow, InboundMessage, ChannelInstanceRow]]) -> None:
    """Record STOP/START (and their translations) as the contact's consent for that address, in the consent
    scope of the channel it came on. Only messages whose whole text is a keyword get here (the adapter marks
    them), so a batch without one costs nothing."""
    for row, msg, channel in stored:
        consent = msg.extra.get("consent")
        cls = get_adapter_class(channel.kind)
        scope = cls.capabilities.consent_scope if cls else None
        if consent not in (Consent.OPT_OUT.value, Consent.OPT_IN.value) or row.identity_id is None or not scope:
            continue
        ident = await contacts_repo.get_identity(session, row.identity_id)
        contact = await contacts_repo.get_contact(session, ident.contact_id) if ident else None
        if ident is None or contact is None:
            continue
        status = OPTED_OUT if consent == Consent.OPT_OUT.value else OPTED_IN
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


async def opted_out(session: AsyncSession, identity_id: int, scope: str = SMS) -> dict[str, Any] | None:
    """The opt-out record of this address in ``scope`` (a channel's ``consent_scope``; SMS by default, what
    the sender re-checks for channels with carrier keywords), or None when it may receive messages there."""
    ident = await contacts_repo.get_identity(session, identity_id)
    contact = await contacts_repo.get_contact(session, ident.contact_id) if ident else None
    if ident is None or contact is None:
        return None
    record = consent_entries(contact.attributes, ident.value).get(scope)
    return record if isinstance(record, dict) and record.get("status") == OPTED_OUT else None


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


# --- templates ---------------------------------------------------------------------------------------

def template_view(row: MessageTemplateRow) -> dict[str, Any]:
    return {"id": row.id, "channel_id": row.channel_instance_id, "name": row.name, "language": row.language,
            "category": row.category, "body": row.body, "provider_ref": row.provider_ref, "status": row.status,
            "variables": template_variables(row.body)}


async def _templated_channel(session: AsyncSession, channel_id: int) -> tuple[ChannelInstanceRow, type[ChannelAdapter]]:
    channel = await channels_repo.get_channel(session, channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} does not exist")
    cls = get_adapter_class(channel.kind)
    if cls is None or not cls.capabilities.templates:
        raise ValidationFailed(f"{cls.title if cls else channel.kind} channels have no message templates",
                               field="channel_id")
    return channel, cls


async def create_template(session: AsyncSession, channel_id: int, *, name: str, language: str, body: str,
                          provider_ref: str | None = None, category: str = "utility") -> dict[str, Any]:
    channel, _ = await _templated_channel(session, channel_id)
    name, language, body = name.strip(), language.strip() or "en_US", body.strip()
    if not name or not body:
        raise ValidationFailed("a template needs a name and a body", field="name" if not name else "body")
    if await repo.find_template(session, channel.id, name, language) is not None:
        raise Conflict(f"template {name!r} ({language}) already exists on this channel", field="name")
    row = MessageTemplateRow(channel_instance_id=channel.id, name=name[:200], language=language[:20],
                             category=category[:40], body=body, provider_ref=(provider_ref or name).strip()[:200],
                             status="approved")
    session.add(row)
    await session.flush()
    return template_view(row)


async def delete_template(session: AsyncSession, channel_id: int, template_id: int) -> None:
    row = await repo.get_template(session, template_id)
    if row is None or row.channel_instance_id != channel_id:
        raise NotFound(f"template {template_id} does not exist on channel {channel_id}")
    await session.delete(row)


async def send_template(session: AsyncSession, actor: Actor, conversation_id: int, template_id: int,
                        variables: dict[str, str], *, identity_id: int | None = None) -> MessageView:
    """Queue an approved template, its variables filled in: allowed outside the reply window."""
    from threadline.actions.messages import send_reply

    row = await repo.get_template(session, template_id)
    if row is None:
        raise NotFound(f"template {template_id} does not exist")
    try:
        text = render_template(row.body, {k: str(v) for k, v in variables.items()})
    except KeyError as exc:
        raise ValidationFailed(f"template {row.name!r} needs a value for {{{{{exc.args[0]}}}}}",
                               field="variables") from None
    meta = {"template": {"id": row.id, "name": row.name, "language": row.language, "provider_ref": row.provider_ref,
                         "order": template_variables(row.body),
                         "variables": {k: str(variables[k]) for k in template_variables(row.body)}}}
    if identity_id is None:  # the customer's address on the template's channel, if they wrote there last
        conv = await conv_repo.get_conversation(session, conversation_id)
        if conv is not None and conv.last_channel_instance_id == row.channel_instance_id:
            identity_id = conv.last_identity_id
    return await send_reply(session, actor, conversation_id, text, channel_instance_id=row.channel_instance_id,
                            identity_id=identity_id, meta=meta)


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



# --- inbound media: queued with the message, downloaded by workers/media.py, then attached -------------

MEDIA_RETRY_SECONDS = (5, 30, 120, 600, 1800)


def queue_media(session: AsyncSession, stored: Sequence[tuple[MessageRow, InboundMessage]]) -> None:
    """One download row per linked attachment of the messages just stored (no query: rows are added to
    the batch's flush). Called by receive_inbound_batch only when a message has ``media_pending``."""
    for row, msg in stored:
        pending = msg.extra.get("media_pending")
        if not isinstance(pending, list):
            continue
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
