"""Queries for continuity: merges, suggestions, the journey, lifetime contact counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import (
    ChannelInstanceRow,
    ContactActivityRow,
    ContactAttributeDefRow,
    ContactMergeRow,
    ContactRow,
    ConversationRow,
    IdentityRow,
    MergeSuggestionRow,
    MessageRow,
)
from threadline.domain.contacts import AttributeDef, AttributeType


async def attribute_defs(session: AsyncSession, keys: Sequence[str] | None = None) -> dict[str, AttributeDef]:
    stmt = select(ContactAttributeDefRow)
    if keys is not None:
        if not keys:
            return {}
        stmt = stmt.where(ContactAttributeDefRow.key.in_(keys))
    return {r.key: AttributeDef(r.key, r.label, AttributeType(r.type), tuple(r.options or ()))
            for r in (await session.execute(stmt.order_by(ContactAttributeDefRow.key))).scalars()}


async def move_all(session: AsyncSession, from_contact: int, to_contact: int) -> tuple[list[int], list[int]]:
    """Move every identity and conversation of a contact to another; their ids. Moving by contact (not by
    a list read earlier) catches what a concurrent transaction added meanwhile."""
    idents = (await session.execute(update(IdentityRow).where(IdentityRow.contact_id == from_contact)
                                    .values(contact_id=to_contact).returning(IdentityRow.id))).scalars().all()
    convs = (await session.execute(update(ConversationRow).where(ConversationRow.contact_id == from_contact)
                                   .values(contact_id=to_contact).returning(ConversationRow.id))).scalars().all()
    return sorted(idents), sorted(convs)


async def lock_contacts(session: AsyncSession, ids: Sequence[int]) -> None:
    """PostgreSQL: hold these contacts' rows until commit, so that a merge and an inbound message for the
    same customer take turns (SQLite writers take turns anyway)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(ContactRow.id).where(ContactRow.id.in_(ids)).with_for_update())


async def repoint_suggestions(session: AsyncSession, from_contact: int, to_contact: int) -> None:
    """Open suggestions about a merged contact now concern the one it was merged into."""
    for col, other in ((MergeSuggestionRow.contact_id, MergeSuggestionRow.other_contact_id),
                       (MergeSuggestionRow.other_contact_id, MergeSuggestionRow.contact_id)):
        await session.execute(update(MergeSuggestionRow).where(MergeSuggestionRow.status == "open", col == from_contact,
                                                               other == to_contact).values(status="merged"))
        await session.execute(update(MergeSuggestionRow).where(MergeSuggestionRow.status == "open", col == from_contact)
                              .values({col.key: to_contact}))


async def move_identities(session: AsyncSession, ids: Sequence[int], from_contact: int, to_contact: int) -> None:
    if ids:
        await session.execute(update(IdentityRow).where(IdentityRow.id.in_(ids), IdentityRow.contact_id == from_contact)
                              .values(contact_id=to_contact))


async def move_conversations(session: AsyncSession, ids: Sequence[int], from_contact: int, to_contact: int) -> None:
    if ids:
        await session.execute(update(ConversationRow)
                              .where(ConversationRow.id.in_(ids), ConversationRow.contact_id == from_contact)
                              .values(contact_id=to_contact))


async def move_messages(session: AsyncSession, from_conversation: int, to_conversation: int,
                        only_id: int | None = None) -> int:
    stmt = update(MessageRow).where(MessageRow.conversation_id == from_conversation)
    if only_id is not None:
        stmt = stmt.where(MessageRow.id == only_id)
    return (await session.execute(stmt.values(conversation_id=to_conversation))).rowcount or 0


async def latest_customer_message(session: AsyncSession, conversation_id: int) -> MessageRow | None:
    """The customer's latest message in a conversation that came through a channel, automatic replies
    (out-of-office, bounces) left out: where the customer last wrote."""
    stmt = (select(MessageRow)
            .where(MessageRow.conversation_id == conversation_id, MessageRow.direction == "in",
                   MessageRow.channel_instance_id.is_not(None))
            .order_by(MessageRow.id.desc()).limit(20))
    rows = (await session.execute(stmt)).scalars().all()
    return next((r for r in rows if not (r.meta or {}).get("automatic")), rows[0] if rows else None)


async def claimed_recipients(session: AsyncSession, keys: Sequence[tuple[int, str]]
                             ) -> list[tuple[int, str, MessageRow, IdentityRow]]:
    """Of these (channel instance, provider id) pairs, our outbound messages that went to an identity
    only claimed so far (unverified): (channel, provider id, message, identity). One query."""
    if not keys:
        return []
    stmt = (select(MessageRow, IdentityRow).join(IdentityRow, IdentityRow.id == MessageRow.identity_id)
            .where(MessageRow.channel_instance_id.in_({c for c, _ in keys}),
                   MessageRow.provider_id.in_({p for _, p in keys}), MessageRow.direction == "out",
                   IdentityRow.verified.is_(False)))
    wanted = set(keys)
    return [(m.channel_instance_id, m.provider_id, m, i) for m, i in (await session.execute(stmt)).all()
            if (m.channel_instance_id, m.provider_id) in wanted]


async def get_merge(session: AsyncSession, merge_id: int) -> ContactMergeRow | None:
    return await session.get(ContactMergeRow, merge_id)


async def open_suggestion(session: AsyncSession, a: int, b: int) -> MergeSuggestionRow | None:
    stmt = select(MergeSuggestionRow).where(
        MergeSuggestionRow.status == "open",
        ((MergeSuggestionRow.contact_id == a) & (MergeSuggestionRow.other_contact_id == b))
        | ((MergeSuggestionRow.contact_id == b) & (MergeSuggestionRow.other_contact_id == a)))
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def suggestions_for(session: AsyncSession, contact_id: int | None, status: str = "open"
                          ) -> Sequence[MergeSuggestionRow]:
    stmt = select(MergeSuggestionRow).where(MergeSuggestionRow.status == status)
    if contact_id is not None:
        stmt = stmt.where((MergeSuggestionRow.contact_id == contact_id)
                          | (MergeSuggestionRow.other_contact_id == contact_id))
    return (await session.execute(stmt.order_by(MergeSuggestionRow.id.desc()).limit(200))).scalars().all()


async def close_suggestions_between(session: AsyncSession, a: int, b: int, status: str) -> None:
    await session.execute(update(MergeSuggestionRow).where(
        MergeSuggestionRow.status == "open",
        ((MergeSuggestionRow.contact_id == a) & (MergeSuggestionRow.other_contact_id == b))
        | ((MergeSuggestionRow.contact_id == b) & (MergeSuggestionRow.other_contact_id == a))).values(status=status))


async def activity_of(session: AsyncSession, contact_id: int, limit: int = 200) -> Sequence[ContactActivityRow]:
    stmt = (select(ContactActivityRow).where(ContactActivityRow.contact_id == contact_id)
            .order_by(ContactActivityRow.at.desc(), ContactActivityRow.id.desc()).limit(limit))
    return (await session.execute(stmt)).scalars().all()


async def inbound_counts_by_channel(session: AsyncSession, contact_id: int) -> list[tuple[str, str, int, datetime]]:
    """(channel kind, channel name, inbound messages, last at) over the contact's whole life."""
    stmt = (select(ChannelInstanceRow.kind, ChannelInstanceRow.name, func.count(MessageRow.id),
                   func.max(MessageRow.created_at))
            .join(ConversationRow, ConversationRow.id == MessageRow.conversation_id)
            .join(ChannelInstanceRow, ChannelInstanceRow.id == MessageRow.channel_instance_id)
            .where(ConversationRow.contact_id == contact_id, MessageRow.direction == "in")
            .group_by(ChannelInstanceRow.kind, ChannelInstanceRow.name))
    return [(k, n, c, at) for k, n, c, at in (await session.execute(stmt)).all()]


async def conversations_of(session: AsyncSession, contact_id: int, limit: int = 100) -> Sequence[ConversationRow]:
    stmt = (select(ConversationRow).where(ConversationRow.contact_id == contact_id)
            .order_by(ConversationRow.last_activity_at.desc()).limit(limit))
    return (await session.execute(stmt)).scalars().all()


async def first_and_last_texts(session: AsyncSession, conversation_ids: Sequence[int]
                               ) -> dict[int, tuple[str, str]]:
    """Per conversation: the first customer message and the last message (summaries in the 360)."""
    if not conversation_ids:
        return {}
    firsts = select(MessageRow.conversation_id, func.min(MessageRow.id)).where(
        MessageRow.conversation_id.in_(conversation_ids), MessageRow.direction == "in").group_by(MessageRow.conversation_id)
    lasts = select(MessageRow.conversation_id, func.max(MessageRow.id)).where(
        MessageRow.conversation_id.in_(conversation_ids), MessageRow.direction.in_(("in", "out"))
    ).group_by(MessageRow.conversation_id)
    first_ids = dict((await session.execute(firsts)).all())
    last_ids = dict((await session.execute(lasts)).all())
    ids = set(first_ids.values()) | set(last_ids.values())
    texts = dict((await session.execute(select(MessageRow.id, MessageRow.text).where(MessageRow.id.in_(ids)))).all()) \
        if ids else {}
    return {cid: (texts.get(first_ids.get(cid, -1), ""), texts.get(last_ids.get(cid, -1), ""))
            for cid in conversation_ids}


async def latest_resolved_for_contacts(session: AsyncSession, contact_ids: Sequence[int], since: datetime
                                       ) -> dict[int, ConversationRow]:
    """Per contact, the most recently resolved conversation resolved after ``since`` (one query)."""
    if not contact_ids:
        return {}
    stmt = select(ConversationRow).where(ConversationRow.contact_id.in_(set(contact_ids)),
                                         ConversationRow.status == "resolved", ConversationRow.resolved_at >= since)
    out: dict[int, ConversationRow] = {}
    for row in (await session.execute(stmt)).scalars():
        best = out.get(row.contact_id)
        if best is None or (row.resolved_at, row.id) > (best.resolved_at, best.id):  # type: ignore[operator]
            out[row.contact_id] = row
    return out


async def csat_of_conversations(session: AsyncSession, conversation_ids: Sequence[int]) -> list[tuple[int, int, str, datetime]]:
    """(conversation, rating, comment, at) for these conversations, newest first (they follow merges)."""
    from threadline.db.models import CsatResponseRow

    if not conversation_ids:
        return []
    stmt = (select(CsatResponseRow.conversation_id, CsatResponseRow.rating, CsatResponseRow.comment,
                   CsatResponseRow.created_at)
            .where(CsatResponseRow.conversation_id.in_(conversation_ids)).order_by(CsatResponseRow.created_at.desc()))
    return [tuple(r) for r in (await session.execute(stmt)).all()]  # type: ignore[misc]
