"""One customer, one story: merge and split contacts and conversations, merge suggestions, the journey.

Merges are recorded with what moved (identities, conversations, attributes), so an agent can undo one;
the merged contact is kept, hidden (``merged_into_id``), until then. Unverified claims never merge
anybody: they become suggestions an agent accepts or dismisses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.conversations import add_activity, audience_for
from threadline.actions.events import emit
from threadline.actions.guards import check_sensitive
from threadline.actions.permissions import visible_contact, visible_contact_ids
from threadline.actions.views import contact_view, conversation_view
from threadline.db.models import (
    ChannelInstanceRow,
    ContactActivityRow,
    ContactAttributeDefRow,
    ContactMergeRow,
    ContactRow,
    ConversationRow,
    MergeSuggestionRow,
    MessageRow,
)
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import continuity as repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.contacts import ATTRIBUTE_KEY, AttributeDef, AttributeType, SuggestionStatus
from threadline.domain.conversations import ConversationStatus
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import (
    Audience,
    ContactMerged,
    ContactUpdated,
    ConversationCreated,
    ConversationUpdated,
    ConversationView,
    MergeSuggested,
)
from threadline.domain.messages import InboundMessage
from threadline.domain.users import Role

ACTIVITY_KINDS = {"page_view", "article_read", "crm", "purchase", "signup", "custom"}


async def _live_contact(session: AsyncSession, contact_id: int, role: str) -> ContactRow:
    row = await contacts_repo.get_contact(session, contact_id)
    if row is None:
        raise NotFound(f"contact {contact_id} does not exist")
    if row.merged_into_id is not None:
        raise Conflict(f"contact {contact_id} was merged into contact {row.merged_into_id}; use that one as the "
                       f"{role}", field=f"{role}_id")
    return row


async def _refresh_search(session: AsyncSession, *contacts: ContactRow) -> dict[int, list[Any]]:
    idents = await contacts_repo.identities_of(session, [c.id for c in contacts])
    for c in contacts:
        c.search_text = " ".join([c.name.lower(), *(i.value.lower() for i in idents[c.id])])[:2000] \
            if c.merged_into_id is None else ""
    return idents


async def merge_contacts(session: AsyncSession, actor: Actor | None, source_id: int, target_id: int,
                         *, reason: str = "") -> ContactMergeRow:
    """Move everything of ``source`` onto ``target``: identities, conversations, attributes it lacks.
    ``actor`` None: Threadline itself merges, for ``reason`` (a visitor proved an address with a code)."""
    if source_id == target_id:
        raise ValidationFailed("a contact cannot be merged into itself", field="source_id")
    await repo.lock_contacts(session, [source_id, target_id])
    for contact_id in (target_id, source_id) if actor is not None else ():  # an agent merges only what they see
        await visible_contact(session, actor, contact_id, all_conversations=True)
    if actor is not None:  # e.g. voice: not while an unverified caller is on the line (actions/guards.py)
        await check_sensitive(session, [source_id, target_id], "merging contacts")
    source = await _live_contact(session, source_id, "source")
    target = await _live_contact(session, target_id, "target")
    source_attrs, target_attrs = dict(source.attributes or {}), dict(target.attributes or {})
    added = {k: v for k, v in source_attrs.items() if k not in target_attrs}
    # Per-address ledgers (SMS/WhatsApp consent, undeliverable addresses…) are merged entry by entry, so
    # an opt-out recorded on the source is never lost.
    merged_entries = {k: sorted(set(v) - set(target_attrs[k])) for k, v in source_attrs.items()
                      if isinstance(v, dict) and isinstance(target_attrs.get(k), dict) and set(v) - set(target_attrs[k])}
    took_name = not target.name and bool(source.name)
    identities, conversations = await repo.move_all(session, source.id, target.id)
    target.attributes = {**target_attrs, **added,
                         **{k: {**source_attrs[k], **target_attrs[k]} for k in merged_entries}}
    if took_name:
        target.name = source.name
    source.merged_into_id = target.id
    target.updated_at = source.updated_at = utcnow()
    actor_id = actor.user_id if actor is not None else None
    row = ContactMergeRow(source_id=source.id, target_id=target.id, actor_id=actor_id,
                          moved={"identities": identities, "conversations": conversations,
                                 "attributes_added": sorted(added), "entries_added": merged_entries,
                                 "took_name": took_name})
    session.add(row)
    await repo.close_suggestions_between(session, source.id, target.id, SuggestionStatus.MERGED.value)
    await repo.repoint_suggestions(session, source.id, target.id)
    await session.flush()
    idents = await _refresh_search(session, source, target)
    emit(session, ContactMerged(contact=contact_view(target, idents[target.id]), source_id=source.id, merge_id=row.id,
                                actor_id=actor_id), Audience())
    who = actor.name if actor is not None else "Threadline"
    await _announce_moved(session, conversations, f"{who} merged contact #{source.id} into #{target.id}"
                          + (f" ({reason})" if reason else ""), actor_id)
    return row


async def undo_merge(session: AsyncSession, actor: Actor, merge_id: int) -> ContactMergeRow:
    """Put back what a merge moved (what has moved again since stays where it is)."""
    row = await repo.get_merge(session, merge_id)
    if row is None:
        raise NotFound(f"merge {merge_id} does not exist")
    try:  # the merged contact's conversations are all on the target now: the agent must see every one
        await visible_contact(session, actor, row.target_id, all_conversations=True)
    except NotFound:
        raise NotFound(f"merge {merge_id} does not exist") from None
    if row.undone_at is not None:
        raise Conflict(f"merge {merge_id} was already undone")
    await repo.lock_contacts(session, [row.source_id, row.target_id])
    source = await contacts_repo.get_contact(session, row.source_id)
    target = await contacts_repo.get_contact(session, row.target_id)
    if source is None or target is None:
        raise Conflict(f"merge {merge_id} cannot be undone: a contact it joined was deleted")
    moved = row.moved or {}
    await repo.move_identities(session, moved.get("identities", []), target.id, source.id)
    await repo.move_conversations(session, moved.get("conversations", []), target.id, source.id)
    attrs = dict(target.attributes or {})
    for key in moved.get("attributes_added", []):
        if key in attrs and attrs[key] == (source.attributes or {}).get(key):
            attrs.pop(key)
    for key, entries in (moved.get("entries_added") or {}).items():
        if isinstance(attrs.get(key), dict):
            attrs[key] = {k: v for k, v in attrs[key].items() if k not in entries}
    target.attributes = attrs
    if moved.get("took_name") and target.name == source.name:
        target.name = ""
    source.merged_into_id = None
    row.undone_at = source.updated_at = target.updated_at = utcnow()
    await session.flush()
    idents = await _refresh_search(session, source, target)
    emit(session, ContactMerged(contact=contact_view(target, idents[target.id]), source_id=source.id, merge_id=row.id,
                                actor_id=actor.user_id, undone=True), Audience())
    await _announce_moved(session, moved.get("conversations", []), f"{actor.name} undid the merge of contact "
                          f"#{source.id} into #{target.id}", actor.user_id)
    return row


async def _announce_moved(session: AsyncSession, conversation_ids: list[int], text: str, actor_id: int | None
                          ) -> None:
    for conv_id in sorted(conversation_ids)[-50:]:  # the newest matter; an event each keeps desks right
        conv = await conv_repo.get_conversation(session, conv_id)
        if conv is None:
            continue
        add_activity(session, conv, text, actor_id)
        await session.flush()
        emit(session, ConversationUpdated(conversation=await conversation_view(session, conv), changes=["contact_id"],
                                          actor_id=actor_id), audience_for(conv, customer=True))


async def merge_conversations(session: AsyncSession, actor: Actor, source_id: int, target_id: int
                              ) -> ConversationView:
    """Move every message of ``source`` into ``target`` (same customer) and resolve ``source``."""
    if source_id == target_id:
        raise ValidationFailed("a conversation cannot be merged into itself", field="source_id")
    source = actor.check_can_see(await conv_repo.get_conversation(session, source_id), source_id)
    target = actor.check_can_see(await conv_repo.get_conversation(session, target_id), target_id)
    if source.contact_id != target.contact_id:
        raise ValidationFailed("these conversations belong to different contacts; merge the contacts first",
                               field="target_id")
    moved = await repo.move_messages(session, source.id, target.id)
    labels = await conv_repo.labels_of(session, [source.id, target.id])
    union = sorted(set(labels[source.id]) | set(labels[target.id]))
    if union != labels[target.id]:
        await conv_repo.set_labels(session, target.id, union)
    now = utcnow()
    source.status, source.resolved_at = ConversationStatus.RESOLVED.value, now
    source.attributes = {**(source.attributes or {}), "merged_into": target.id}
    target.last_activity_at = max(target.last_activity_at, source.last_activity_at)
    source.updated_at = target.updated_at = now
    add_activity(session, target, f"{actor.name} merged conversation #{source.id} here ({moved} messages)",
                 actor.user_id)
    add_activity(session, source, f"{actor.name} merged this conversation into #{target.id}", actor.user_id)
    await session.flush()
    switched = await continue_where_last_written(session, target)
    for conv, changes in ((source, ["status", "merged_into"]),
                          (target, ["messages", *(["last_channel_instance_id"] if switched else [])])):
        emit(session, ConversationUpdated(conversation=await conversation_view(session, conv), changes=changes,
                                          actor_id=actor.user_id), audience_for(conv, customer=True))
    return await conversation_view(session, target)


async def confirm_answered_claims(session: AsyncSession,
                                  items: Sequence[tuple[ChannelInstanceRow, InboundMessage]]) -> list[int]:
    """A claimed address proven by an answer: we wrote to an identity a customer only claimed (the e-mail
    typed into the web chat's offline form), and a mail now comes from that very address answering our
    message (its In-Reply-To/References name our Message-ID). The address received our mail and answered
    it, so the claim is confirmed: the identity becomes verified where it is, and the sender resolves to
    the contact and conversation we promised to continue (instead of taking the address away to a new
    contact). Anything else (another sender quoting our Message-ID, an automatic reply) proves nothing.
    Runs before the senders are resolved; one query, none when no message answers anything. Returns the
    identities confirmed."""
    keys = [(ch.id, ref) for ch, m in items if not m.automatic for ref in m.references]
    found = await repo.claimed_recipients(session, keys) if keys else []
    if not found:
        return []
    by_key = {(c, p): (msg, ident) for c, p, msg, ident in found}
    confirmed: list[int] = []
    for ch, m in items:
        sender = m.sender.identities[0] if m.sender.identities else None
        for ref in m.references if sender is not None and not m.automatic else ():
            msg, ident = by_key.get((ch.id, ref), (None, None))
            if msg is None or ident is None or ident.verified or \
                    (ident.kind, ident.scope, ident.value) != (sender.kind.value, sender.scope, sender.value):
                continue
            ident.verified = True
            confirmed.append(ident.id)
            conv = await conv_repo.get_conversation(session, msg.conversation_id)
            if conv is not None:
                add_activity(session, conv, f"The customer confirmed {ident.value} by answering our e-mail", None)
            contact = await contacts_repo.get_contact(session, ident.contact_id)
            if contact is not None:
                await session.flush()
                idents = await contacts_repo.identities_of(session, [contact.id])
                emit(session, ContactUpdated(contact=contact_view(contact, idents[contact.id]),
                                             changes=["identities"]), Audience())
            break
    return confirmed


def continued_on(session: AsyncSession, conv: ConversationRow, channel: ChannelInstanceRow) -> MessageRow:
    """The timeline line that says the conversation now goes on through another channel (the default
    reply goes there)."""
    row = MessageRow(conversation_id=conv.id, direction="activity",
                     text=f"The customer continued on {channel.name} ({channel.kind})", attachments=[],
                     meta={"channel_switch": channel.id}, channel_instance_id=channel.id, created_at=utcnow())
    session.add(row)
    return row


async def continue_where_last_written(session: AsyncSession, conv: ConversationRow) -> bool:
    """After messages joined a conversation (a merge), replies go where the customer wrote last, not
    where the target conversation happened to be (an abandoned web chat): the conversation's reply
    channel and identity follow the latest customer message, with a "continued on" line when the channel
    changes. Returns whether it changed."""
    last = await repo.latest_customer_message(session, conv.id)
    if last is None or last.channel_instance_id is None:
        return False
    if last.identity_id is not None:
        conv.last_identity_id = last.identity_id
    if conv.last_channel_instance_id == last.channel_instance_id:
        return False
    channel = await channels_repo.get_channel(session, last.channel_instance_id)
    if channel is None:
        return False
    conv.last_channel_instance_id = channel.id
    continued_on(session, conv, channel)
    await session.flush()
    return True


async def split_message(session: AsyncSession, actor: Actor, message_id: int) -> ConversationView:
    """Move one customer or agent message into a new conversation of the same customer (a new issue)."""
    msg = await conv_repo.get_message(session, message_id)
    if msg is None:
        raise NotFound(f"message {message_id} does not exist")
    old = actor.check_can_see(await conv_repo.get_conversation(session, msg.conversation_id), msg.conversation_id)
    if msg.direction not in ("in", "out"):
        raise ValidationFailed("only customer and agent messages can start a new conversation", field="message_id")
    now = utcnow()
    new = ConversationRow(contact_id=old.contact_id, status=ConversationStatus.OPEN.value, priority=old.priority,
                          queue_id=old.queue_id, team_id=old.team_id, attributes={"split_from": old.id},
                          last_activity_at=msg.created_at, last_channel_instance_id=msg.channel_instance_id,
                          last_identity_id=msg.identity_id)
    session.add(new)
    await session.flush()
    await repo.move_messages(session, old.id, new.id, only_id=msg.id)
    add_activity(session, new, f"{actor.name} split this from conversation #{old.id}", actor.user_id)
    add_activity(session, old, f"{actor.name} moved a message to new conversation #{new.id}", actor.user_id)
    old.updated_at = now
    await session.flush()
    view = await conversation_view(session, new)
    emit(session, ConversationCreated(conversation=view), audience_for(new, customer=True))
    emit(session, ConversationUpdated(conversation=await conversation_view(session, old), changes=["messages"],
                                      actor_id=actor.user_id), audience_for(old, customer=True))
    return view


async def suggest_merge(session: AsyncSession, contact_id: int, other_contact_id: int, reason: str
                        ) -> MergeSuggestionRow | None:
    """Record that two contacts may be one person (once while it is open); None when nothing to suggest."""
    if contact_id == other_contact_id or await repo.open_suggestion(session, contact_id, other_contact_id):
        return None
    row = MergeSuggestionRow(contact_id=contact_id, other_contact_id=other_contact_id, reason=reason[:500],
                             status=SuggestionStatus.OPEN.value)
    session.add(row)
    await session.flush()
    emit(session, MergeSuggested(suggestion_id=row.id, contact_id=contact_id, other_contact_id=other_contact_id,
                                 reason=row.reason), Audience())
    return row


async def dismiss_suggestion(session: AsyncSession, actor: Actor, suggestion_id: int) -> None:
    row = await session.get(MergeSuggestionRow, suggestion_id)
    if row is None or not await visible_contact_ids(session, actor, [row.contact_id, row.other_contact_id]):
        raise NotFound(f"merge suggestion {suggestion_id} does not exist")
    if row.status != SuggestionStatus.OPEN:
        raise Conflict(f"merge suggestion {suggestion_id} is already {row.status}")
    row.status = SuggestionStatus.DISMISSED.value


async def record_activity(session: AsyncSession, contact_id: int, *, kind: str, title: str = "", url: str = "",
                          data: dict[str, Any] | None = None, at: datetime | None = None,
                          actor: Actor | None = None) -> ContactActivityRow:
    if kind not in ACTIVITY_KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(sorted(ACTIVITY_KINDS))}", field="kind")
    if actor is not None:
        await visible_contact(session, actor, contact_id)
    await _live_contact(session, contact_id, "contact")
    row = ContactActivityRow(contact_id=contact_id, kind=kind, title=title[:300], url=url[:2000], data=data or {},
                             at=at or utcnow())
    session.add(row)
    await session.flush()
    return row


async def define_attribute(session: AsyncSession, actor: Actor, key: str, *, label: str, type: AttributeType,
                           options: list[str]) -> AttributeDef:
    """Define (or redefine) a typed custom attribute; values already stored are not rewritten."""
    actor.require(Role.ADMIN, "define custom attributes")
    if not ATTRIBUTE_KEY.match(key):
        raise ValidationFailed("an attribute key is 1-64 lower-case letters, digits or _, starting with a letter",
                               field="key")
    clean = [o.strip()[:100] for o in options if o.strip()]
    if type is AttributeType.SELECT and not clean:
        raise ValidationFailed("a select attribute needs at least one option", field="options")
    row = await session.get(ContactAttributeDefRow, key)
    if row is None:
        row = ContactAttributeDefRow(key=key)
        session.add(row)
    row.label, row.type, row.options = label.strip()[:100], type.value, clean
    await session.flush()
    return AttributeDef(key, row.label, type, tuple(clean))


async def undefine_attribute(session: AsyncSession, actor: Actor, key: str) -> None:
    actor.require(Role.ADMIN, "remove custom attributes")
    row = await session.get(ContactAttributeDefRow, key)
    if row is None:
        raise NotFound(f"no custom attribute is defined with key {key!r}")
    await session.delete(row)
