"""Receive customers' messages: each joins the right conversation (or starts one), in batches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.contacts import resolve_senders
from threadline.actions.continuity import confirm_answered_claims
from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.inbound.consent import record_consent
from threadline.actions.inbound.media import queue_media
from threadline.actions.views import conversation_views, message_view
from threadline.db.models import ChannelInstanceRow, ConversationRow, IdentityRow, MessageRow
from threadline.db.repos import continuity as continuity_repo
from threadline.db.repos import conversations as repo
from threadline.db.session import insert_built, reserve_ids
from threadline.db.types import utcnow
from threadline.domain.conversations import (
    Arrival,
    ConversationFacts,
    ConversationRef,
    ConversationStatus,
    NewConversation,
    Placement,
    place_messages,
)
from threadline.domain.events import ConversationCreated, ConversationUpdated, MessageCreated
from threadline.domain.messages import MAX_TEXT, Direction, InboundMessage

CONVERSATIONS, MESSAGES = ConversationRow.__table__, MessageRow.__table__


async def receive_inbound(session: AsyncSession, channel: ChannelInstanceRow, msg: InboundMessage
                          ) -> MessageRow | None:
    """Store a customer's message in the right conversation. Returns None for a duplicate."""
    return (await receive_inbound_batch(session, [(channel, msg)]))[0]


async def receive_inbound_batch(session: AsyncSession, items: Sequence[tuple[ChannelInstanceRow, InboundMessage]],
                                *, reopen_within: timedelta | None = None) -> list[MessageRow | None]:
    """Store customers' messages, each in the right conversation, with a fixed number of queries for
    the whole batch (the inbox worker hands over everything that arrived since its last round). The
    decisions are two pure planners, ``domain.contacts.plan_identities`` (who wrote) and
    ``domain.conversations.place_messages`` (where it goes); this function reads their facts and applies
    their plans.

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
    bound, referenced, hinted = await _hinted_conversations(session, [items[i] for i in todo])
    recent: dict[int, ConversationRow] = {}
    if reopen_within:
        lonely = [c.id for c, _, _ in senders if c.id not in open_convs]
        recent = await continuity_repo.latest_resolved_for_contacts(session, lonely, now - reopen_within)
    rows = {c.id: c for c in (*hinted.values(), *open_convs.values(), *recent.values())}
    arrivals = []
    for k, (idx, (contact, _, _)) in enumerate(zip(todo, senders, strict=True)):
        channel, msg = items[idx]
        arrivals.append(Arrival(contact_id=contact.id, channel_id=channel.id, automatic=msg.automatic,
                                queue_id=msg.queue_id if msg.queue_id is not None else channel.default_queue_id,
                                bound_to=bound[k], references=referenced[k]))
    placed = place_messages(arrivals, {cid: _facts(row) for cid, row in rows.items()},
                            open_by_contact={cid: c.id for cid, c in open_convs.items()},
                            recent_by_contact={cid: c.id for cid, c in recent.items()}, now=now)
    # ids up front (one statement per table), so the whole batch is inserted by one flush, one statement per table
    created: list[ConversationRow] = []
    for new, conv_id in zip(placed.new, await reserve_ids(session, CONVERSATIONS, len(placed.new)), strict=True):
        conv = ConversationRow(id=conv_id, contact_id=new.contact_id, priority="normal", attributes={},
                               queue_id=new.queue_id, last_activity_at=now, status=ConversationStatus.OPEN.value,
                               created_at=now, updated_at=now)
        if new.resolved:
            conv.status, conv.resolved_at = ConversationStatus.RESOLVED.value, now
            conv.last_channel_instance_id = new.channel_id
        created.append(conv)

    def row_of(ref: ConversationRef) -> ConversationRow:
        return created[ref.index] if isinstance(ref, NewConversation) else rows[ref]

    switches: list[tuple[ConversationRow, ChannelInstanceRow]] = []
    plan: list[tuple[int, ConversationRow, IdentityRow, Placement]] = []
    for idx, (_, identity, _), placement in zip(todo, senders, placed.placements, strict=True):
        channel = items[idx][0]
        conv = row_of(placement.conversation)
        if placement.reopen:
            conv.status, conv.snoozed_until, conv.resolved_at = ConversationStatus.OPEN.value, None, None
        if placement.switched_channel:
            switches.append((conv, channel))  # shown in the timeline: the customer changed channel
        if placement.touch:
            conv.last_channel_instance_id = channel.id
            conv.last_activity_at = conv.updated_at = now
        if placement.sets_last_identity:
            conv.last_identity_id = identity.id
        plan.append((idx, conv, identity, placement))
    await insert_built(session, created)
    message_ids = iter(await reserve_ids(session, MESSAGES, len(switches) + len(plan)))
    messages: list[MessageRow] = []
    for conv, channel in switches:
        messages.append(MessageRow(id=next(message_ids), conversation_id=conv.id, direction=Direction.ACTIVITY.value,
                                   text=f"The customer continued on {channel.name} ({channel.kind})", attachments=[],
                                   meta={"channel_switch": channel.id}, channel_instance_id=channel.id, created_at=now))
    for idx, conv, identity, _ in plan:
        channel, msg = items[idx]
        out[idx] = MessageRow(
            id=next(message_ids), conversation_id=conv.id, direction=Direction.IN.value, text=msg.text[:MAX_TEXT],
            attachments=[{"url": a.url, "content_type": a.content_type, "name": a.name, "size": a.size}
                         for a in msg.attachments],
            channel_instance_id=channel.id, identity_id=identity.id, provider_id=msg.provider_id,
            meta=msg.stored_meta(),
            created_at=now,
        )
        messages.append(out[idx])
    await insert_built(session, messages)
    convs = list({id(c): c for _, c, _, _ in plan}.values())
    names = {contact.id: contact.name for contact, _, _ in senders}
    fresh = {c.id for c in created}
    views = dict(zip((id(c) for c in convs), await conversation_views(session, convs, names=names, unlabelled=fresh),
                     strict=True))
    announced: set[int] = set()
    for idx, conv, _, placement in plan:
        audience, view, row = audience_for(conv, customer=True), views[id(conv)], out[idx]
        assert row is not None
        if placement.is_new and id(conv) not in announced:
            announced.add(id(conv))
            emit(session, ConversationCreated(conversation=view), audience)
        emit(session, MessageCreated(message=message_view(row)), audience)
        if placement.changes and not placement.is_new:
            emit(session, ConversationUpdated(conversation=view, changes=list(placement.changes)), audience)
    consents = [(out[idx], items[idx][1], items[idx][0]) for idx, *_ in plan if items[idx][1].consent is not None]
    if consents:  # STOP/START keywords (SMS, WhatsApp): rare, so a batch without one runs no extra query
        await record_consent(session, consents)  # type: ignore[arg-type]
    media = [(out[idx], items[idx][1]) for idx, *_ in plan if items[idx][1].media_pending]
    if media:  # linked provider media (MMS, WhatsApp, Telegram…): queued for workers/media.py, no query here
        queue_media(session, media)  # type: ignore[arg-type]
    return out


def _facts(row: ConversationRow) -> ConversationFacts:
    return ConversationFacts(id=row.id, contact_id=row.contact_id, status=ConversationStatus(row.status),
                             snoozed_until=row.snoozed_until, last_channel_instance_id=row.last_channel_instance_id,
                             has_last_identity=row.last_identity_id is not None)


async def _hinted_conversations(session: AsyncSession, items: Sequence[tuple[ChannelInstanceRow, InboundMessage]]
                                ) -> tuple[list[int | None], list[tuple[int, ...]], dict[int, ConversationRow]]:
    """What each message's channel points at (two queries for the batch): the conversation its session is
    bound to (web chat), the conversations of the earlier messages it answers (email References /
    In-Reply-To, strongest first), and those conversations. ``domain.conversations.place_messages``
    decides which hint holds."""
    refs = [(ch.id, ref) for ch, m in items for ref in m.references]
    by_ref = await repo.conversations_of_provider_ids(session, refs) if refs else {}
    wanted = {m.conversation_id for _, m in items if m.conversation_id} | set(by_ref.values())
    convs = await repo.get_conversations(session, wanted) if wanted else {}
    bound = [m.conversation_id or None for _, m in items]
    referenced = [tuple(by_ref[(ch.id, ref)] for ref in m.references if (ch.id, ref) in by_ref) for ch, m in items]
    return bound, referenced, convs


