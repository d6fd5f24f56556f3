"""Receive customers' messages: each joins the right conversation (or starts one), in batches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.contacts import resolve_senders
from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.inbound.consent import record_consent
from threadline.actions.inbound.media import queue_media
from threadline.actions.views import conversation_views, message_view
from threadline.db.models import ChannelInstanceRow, ConversationRow, IdentityRow, MessageRow
from threadline.db.repos import continuity as continuity_repo
from threadline.db.repos import conversations as repo
from threadline.db.types import utcnow
from threadline.domain.conversations import Conversation, ConversationStatus
from threadline.domain.events import (
    ConversationCreated,
    ConversationUpdated,
    MessageCreated,
)
from threadline.domain.messages import MAX_TEXT, InboundMessage


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
        await record_consent(session, consents)  # type: ignore[arg-type]
    media = [(out[idx], items[idx][1]) for idx, *_ in plan if "media_pending" in items[idx][1].extra]
    if media:  # linked provider media (MMS, WhatsApp, Telegram…): queued for workers/media.py, no query here
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
