"""Messages in and out: receive a customer's message, reply, add a note, track delivery."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.contacts import resolve_senders
from threadline.actions.continuity import confirm_answered_claims
from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.permissions import Actor
from threadline.actions.views import conversation_views, message_view
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow, ConversationRow, IdentityRow, MessageRow, OutboundJobRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import continuity as continuity_repo
from threadline.db.repos import conversations as repo
from threadline.db.session import mark_written
from threadline.db.types import utcnow
from threadline.domain.conversations import Conversation, ConversationStatus
from threadline.domain.errors import ValidationFailed
from threadline.domain.events import (
    ConversationCreated,
    ConversationUpdated,
    MessageCreated,
    MessageStatusChanged,
    MessageView,
)
from threadline.domain.messages import MAX_TEXT, DeliveryStatus, InboundMessage, StatusUpdate, advance_status


async def receive_inbound(session: AsyncSession, channel: ChannelInstanceRow, msg: InboundMessage
                          ) -> MessageRow | None:
    """Store a customer's message in the right conversation. Returns None for a duplicate."""
    return (await receive_inbound_batch(session, [(channel, msg)]))[0]


async def receive_inbound_batch(session: AsyncSession, items: Sequence[tuple[ChannelInstanceRow, InboundMessage]],
                                *, reopen_within: timedelta | None = None) -> list[MessageRow | None]:
    """Store customers' messages, each in the right conversation, with a fixed number of queries for
    the whole batch (the inbox worker hands over everything that arrived since its last round).

    Per message, in order: a provider id seen before is skipped (None); the sender is recognised or
    created; the message joins the contact's open conversation, reopening a pending or snoozed one,
    or starts a new conversation. With ``reopen_within``, a customer with no open conversation whose
    last one was resolved less than that long ago reopens it (a "thanks!" after the answer is not a new
    issue). Events carry the conversation as it is when the batch commits.

    An automatic message (``msg.automatic``: an out-of-office, a bounce…) is recorded quietly: in the
    conversation it answers (its hint, even resolved) or the contact's open one, changing neither its status,
    assignment, activity time nor where replies go, and with no ``conversation.updated`` (nothing for the
    router to do); with nowhere to go it starts a conversation that is resolved from the start, so nobody
    is asked to handle it.
    """
    out: list[MessageRow | None] = [None] * len(items)
    stored = await repo.existing_provider_ids(session, [(ch.id, m.provider_id) for ch, m in items])
    todo: list[int] = []
    for idx, (channel, msg) in enumerate(items):
        key = (channel.id, msg.provider_id)
        if key not in stored:
            stored.add(key)
            todo.append(idx)
    if not todo:
        return out
    now = utcnow()
    await confirm_answered_claims(session, [items[i] for i in todo])  # an e-mail answer proves a claimed address
    senders = await resolve_senders(session, [items[i][1].sender for i in todo])
    open_convs = await repo.latest_open_for_contacts(session, [c.id for c, _, _ in senders])
    hinted = await _hinted_conversations(session, [items[i] for i in todo])
    recent: dict[int, ConversationRow] = {}
    if reopen_within:
        lonely = [c.id for c, _, _ in senders if c.id not in open_convs]
        recent = await continuity_repo.latest_resolved_for_contacts(session, lonely, now - reopen_within)
    created: set[int] = set()  # id() of conversations this batch starts
    switches: list[tuple[ConversationRow, ChannelInstanceRow]] = []
    plan: list[tuple[int, ConversationRow, IdentityRow, list[str]]] = []
    for k, (idx, (contact, identity, _)) in enumerate(zip(todo, senders, strict=True)):
        channel, msg = items[idx]
        conv = hinted[k]
        if conv is None or conv.contact_id != contact.id:  # a hint never moves a message to someone else
            conv = open_convs.get(contact.id)
            if conv is None and not msg.conversation_id and not msg.automatic:  # a bound session starts anew
                conv = recent.get(contact.id)
                if conv is not None:
                    open_convs[contact.id] = conv
        if msg.automatic:  # recorded quietly: see the docstring
            if conv is None:
                conv = ConversationRow(contact_id=contact.id, status=ConversationStatus.RESOLVED.value,
                                       priority="normal", resolved_at=now, attributes={}, last_activity_at=now,
                                       queue_id=msg.queue_id if msg.queue_id is not None else channel.default_queue_id,
                                       last_channel_instance_id=channel.id)
                session.add(conv)
                created.add(id(conv))
            plan.append((idx, conv, identity, []))
            continue
        changes: list[str] = []
        if conv is None:
            queue_id = msg.queue_id if msg.queue_id is not None else channel.default_queue_id
            conv = ConversationRow(contact_id=contact.id, status="open", priority="normal",
                                   queue_id=queue_id, attributes={}, last_activity_at=now)
            session.add(conv)
            open_convs[contact.id] = conv
            created.add(id(conv))
        else:
            domain = Conversation(contact_id=conv.contact_id, status=ConversationStatus(conv.status),
                                  snoozed_until=conv.snoozed_until)
            if domain.on_customer_message(now):
                conv.status, conv.snoozed_until, conv.resolved_at = domain.status.value, None, None
                changes.append("status")
        if conv.last_channel_instance_id != channel.id:
            changes.append("last_channel_instance_id")
            if conv.last_channel_instance_id is not None and id(conv) not in created:
                switches.append((conv, channel))  # shown in the timeline: the customer changed channel
        conv.last_channel_instance_id = channel.id
        conv.last_activity_at = conv.updated_at = now
        plan.append((idx, conv, identity, changes))
    await session.flush()  # new conversations get their ids
    for conv, channel in switches:
        session.add(MessageRow(conversation_id=conv.id, direction="activity", text=f"The customer continued on "
                               f"{channel.name} ({channel.kind})", attachments=[], meta={"channel_switch": channel.id},
                               channel_instance_id=channel.id, created_at=now))
    for idx, conv, identity, _ in plan:
        channel, msg = items[idx]
        if not msg.automatic or conv.last_identity_id is None:
            conv.last_identity_id = identity.id
        out[idx] = MessageRow(
            conversation_id=conv.id, direction="in", text=msg.text[:MAX_TEXT],
            attachments=[{"url": a.url, "content_type": a.content_type, "name": a.name, "size": a.size}
                         for a in msg.attachments],
            channel_instance_id=channel.id, identity_id=identity.id, provider_id=msg.provider_id,
            meta={**msg.extra, **({"thread": msg.thread_hint} if msg.thread_hint else {}),
                  **({"automatic": True} if msg.automatic else {})},
            created_at=now,
        )
        session.add(out[idx])
    await session.flush()
    convs = list({id(c): c for _, c, _, _ in plan}.values())
    names = {contact.id: contact.name for contact, _, _ in senders}
    fresh = {c.id for c in convs if id(c) in created}
    views = dict(zip((id(c) for c in convs), await conversation_views(session, convs, names=names, unlabelled=fresh),
                     strict=True))
    announced: set[int] = set()
    for idx, conv, _, changes in plan:
        audience, view, row = audience_for(conv), views[id(conv)], out[idx]
        assert row is not None
        is_new = id(conv) in created
        if is_new and id(conv) not in announced:
            announced.add(id(conv))
            emit(session, ConversationCreated(conversation=view), audience)
        emit(session, MessageCreated(message=message_view(row)), audience)
        if changes and not is_new:
            emit(session, ConversationUpdated(conversation=view, changes=changes), audience)
    consents = [(out[idx], items[idx][1], items[idx][0]) for idx, *_ in plan if "consent" in items[idx][1].extra]
    if consents:  # STOP/START keywords (SMS, WhatsApp): rare, so a batch without one runs no extra query
        from threadline.actions.messaging import record_consent

        await record_consent(session, consents)  # type: ignore[arg-type]
    media = [(out[idx], items[idx][1]) for idx, *_ in plan if "media_pending" in items[idx][1].extra]
    if media:  # linked provider media (MMS, WhatsApp, Telegram…): queued for workers/media.py, no query here
        from threadline.actions.messaging import queue_media

        queue_media(session, media)  # type: ignore[arg-type]
    return out


async def _hinted_conversations(session: AsyncSession, items: Sequence[tuple[ChannelInstanceRow, InboundMessage]]
                                ) -> list[ConversationRow | None]:
    """The conversation each message's channel points at, if any (two queries for the batch):

    - ``conversation_id``: the channel's session is bound to it (web chat); ignored once resolved, so a
      new message after the end of an issue starts a new conversation;
    - ``references``: the message answers earlier messages of this channel (email References /
      In-Reply-To); it joins their conversation, reopening it if it was resolved.
    """
    refs = [(ch.id, ref) for ch, m in items for ref in m.references]
    by_ref = await repo.conversations_of_provider_ids(session, refs) if refs else {}
    wanted = {m.conversation_id for _, m in items if m.conversation_id} | set(by_ref.values())
    convs = await repo.get_conversations(session, wanted) if wanted else {}
    out: list[ConversationRow | None] = []
    for ch, m in items:
        conv = convs.get(m.conversation_id) if m.conversation_id else None
        if conv is not None and conv.status == ConversationStatus.RESOLVED.value and not m.automatic:
            conv = None
        if conv is None:
            for ref in m.references:  # strongest first: the message it directly replies to
                conv = convs.get(by_ref.get((ch.id, ref), -1))
                if conv is not None:
                    break
        out.append(conv)
    return out


async def _pick_target(session: AsyncSession, conv: ConversationRow, channel_instance_id: int | None,
                       identity_id: int | None) -> tuple[ChannelInstanceRow, int]:
    """Reply on the channel the customer last used, unless the agent picked another identity/channel."""
    if identity_id is not None:
        ident = await contacts_repo.get_identity(session, identity_id)
        if ident is None or ident.contact_id != conv.contact_id:
            raise ValidationFailed(f"identity {identity_id} is not one of this customer's", field="identity_id")
    if channel_instance_id is None:
        last = await repo.last_inbound(session, conv.id)
        channel_instance_id = conv.last_channel_instance_id or (last.channel_instance_id if last else None)
        if identity_id is None:
            identity_id = conv.last_identity_id or (last.identity_id if last else None)
    if channel_instance_id is None or identity_id is None:
        raise ValidationFailed("this customer has not written on any channel yet: pick a channel and identity",
                               field="channel_instance_id")
    channel = await channels_repo.get_channel(session, channel_instance_id)
    if channel is None:
        raise ValidationFailed(f"channel {channel_instance_id} does not exist", field="channel_instance_id")
    if not channel.enabled:
        raise ValidationFailed(f"channel {channel.name} is disabled", field="channel_instance_id")
    return channel, identity_id


async def send_reply(session: AsyncSession, actor: Actor, conversation_id: int, text: str, *,
                     attachments: list[dict[str, object]] | None = None,
                     channel_instance_id: int | None = None, identity_id: int | None = None,
                     meta: dict[str, object] | None = None) -> MessageView:
    """Queue a reply. ``meta`` travels to the adapter (e.g. ``{"template": …}`` from
    actions/messaging.send_template, which may go out when the channel's reply window is closed)."""
    from threadline.actions.messaging import check_send_rules

    conv = actor.check_can_see(await repo.get_conversation(session, conversation_id), conversation_id)
    text = text.strip()
    if not text and not attachments:
        raise ValidationFailed("a reply needs text or an attachment", field="text")
    channel, identity_id = await _pick_target(session, conv, channel_instance_id, identity_id)
    adapter_cls = get_adapter_class(channel.kind)
    if adapter_cls is None:
        raise ValidationFailed(f"channel kind {channel.kind!r} is not installed", field="channel_instance_id")
    limit = adapter_cls.capabilities.max_text_length
    if len(text) > limit:
        raise ValidationFailed(f"{adapter_cls.title} messages are at most {limit} characters; this one has "
                               f"{len(text)}", field="text")
    await check_send_rules(session, conv, channel, identity_id, adapter_cls,  # opt-outs, windows, media
                           template=bool((meta or {}).get("template")), attachments=attachments)
    now = utcnow()
    row = MessageRow(conversation_id=conv.id, direction="out", text=text, attachments=attachments or [],
                     channel_instance_id=channel.id, identity_id=identity_id, author_id=actor.user_id,
                     delivery_status=DeliveryStatus.QUEUED.value, meta=dict(meta or {}), created_at=now)
    session.add(row)
    conv.last_activity_at = conv.updated_at = now
    await session.flush()
    session.add(OutboundJobRow(message_id=row.id, channel_instance_id=channel.id, status="pending",
                               next_attempt_at=now))
    mark_written(session, "jobs")
    view = message_view(row)
    emit(session, MessageCreated(message=view), audience_for(conv))
    return view


async def add_note(session: AsyncSession, actor: Actor, conversation_id: int, text: str) -> MessageView:
    conv = actor.check_can_see(await repo.get_conversation(session, conversation_id), conversation_id)
    text = text.strip()
    if not text:
        raise ValidationFailed("a note needs text", field="text")
    if len(text) > MAX_TEXT:
        raise ValidationFailed(f"a note is at most {MAX_TEXT} characters", field="text")
    now = utcnow()
    row = MessageRow(conversation_id=conv.id, direction="note", text=text, author_id=actor.user_id,
                     attachments=[], meta={}, created_at=now)
    session.add(row)
    conv.updated_at = now
    await session.flush()
    view = message_view(row)
    emit(session, MessageCreated(message=view), audience_for(conv))
    return view


async def _set_status(session: AsyncSession, msg: MessageRow, status: DeliveryStatus, error: str | None) -> bool:
    current = DeliveryStatus(msg.delivery_status) if msg.delivery_status else None
    new = advance_status(current, status)
    if new is None:
        return False
    msg.delivery_status = new.value
    msg.error = (error or "")[:1000] or None if new is DeliveryStatus.FAILED else None
    conv = await repo.get_conversation(session, msg.conversation_id)
    emit(session, MessageStatusChanged(message_id=msg.id, conversation_id=msg.conversation_id,
                                       status=new.value, error=msg.error), audience_for(conv))
    return True


async def apply_status(session: AsyncSession, channel: ChannelInstanceRow, update: StatusUpdate) -> bool:
    """A provider's delivery receipt; applied by rank, so late or repeated receipts change nothing."""
    msg = await repo.message_by_provider_id(session, channel.id, update.provider_id)
    if msg is None or msg.direction != "out":
        return False
    changed = await _set_status(session, msg, update.status, update.error)
    if update.identity_flag and msg.identity_id is not None:  # e.g. an email hard bounce
        from threadline.actions.mail import flag_undeliverable

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
