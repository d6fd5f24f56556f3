from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ConversationLabelRow, ConversationRow, MessageRow
from threadline.db.repos.access import conversation_where
from threadline.db.repos.common import decode_cursor, encode_cursor
from threadline.domain.access import Visibility
from threadline.domain.messages import Direction


@dataclass
class ConversationFilter:
    status: list[str] = field(default_factory=list)
    queue_id: int | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    team_id: int | None = None
    contact_id: int | None = None
    label: str | None = None
    priority: list[str] = field(default_factory=list)
    channel_instance_id: int | None = None
    # What the caller may see (domain/access.py; None or a supervisor's: everything).
    visible_to: Visibility | None = None


async def get_conversation(session: AsyncSession, conversation_id: int, *, for_update: bool = False
                           ) -> ConversationRow | None:
    if for_update:
        stmt = select(ConversationRow).where(ConversationRow.id == conversation_id).with_for_update()
        return (await session.execute(stmt)).scalar_one_or_none()
    return await session.get(ConversationRow, conversation_id)


async def latest_open_for_contact(session: AsyncSession, contact_id: int) -> ConversationRow | None:
    stmt = (
        select(ConversationRow)
        .where(ConversationRow.contact_id == contact_id, ConversationRow.status != "resolved")
        .order_by(ConversationRow.last_activity_at.desc(), ConversationRow.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest_open_for_contacts(session: AsyncSession, contact_ids: Sequence[int]
                                   ) -> dict[int, ConversationRow]:
    """For each contact, its most recently active conversation that is not resolved (one query)."""
    if not contact_ids:
        return {}
    stmt = select(ConversationRow).where(ConversationRow.contact_id.in_(set(contact_ids)),
                                         ConversationRow.status != "resolved")
    out: dict[int, ConversationRow] = {}
    for row in (await session.execute(stmt)).scalars():
        best = out.get(row.contact_id)
        if best is None or (row.last_activity_at, row.id) > (best.last_activity_at, best.id):
            out[row.contact_id] = row
    return out


async def get_conversations(session: AsyncSession, ids: set[int]) -> dict[int, ConversationRow]:
    rows = await session.execute(select(ConversationRow).where(ConversationRow.id.in_(ids)))
    return {row.id: row for row in rows.scalars()}


async def conversations_of_provider_ids(session: AsyncSession, keys: Sequence[tuple[int, str]]
                                        ) -> dict[tuple[int, str], int]:
    """(channel instance, provider id) → the conversation holding that message (one query)."""
    stmt = select(MessageRow.channel_instance_id, MessageRow.provider_id, MessageRow.conversation_id).where(
        MessageRow.channel_instance_id.in_({c for c, _ in keys}), MessageRow.provider_id.in_({p for _, p in keys}))
    wanted = set(keys)
    return {(c, p): conv for c, p, conv in (await session.execute(stmt)).all() if (c, p) in wanted}


async def existing_provider_ids(session: AsyncSession, keys: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (channel instance, provider id) pairs are already stored (one query)."""
    if not keys:
        return set()
    stmt = select(MessageRow.channel_instance_id, MessageRow.provider_id).where(  # both: the index is used
        MessageRow.channel_instance_id.in_({cid for cid, _ in keys}), MessageRow.provider_id.in_({p for _, p in keys}))
    wanted = set(keys)
    return {(cid, pid) for cid, pid in (await session.execute(stmt)).all() if (cid, pid) in wanted}


async def list_conversations(
    session: AsyncSession, flt: ConversationFilter, cursor: str | None, limit: int
) -> tuple[Sequence[ConversationRow], str | None]:
    c = ConversationRow
    stmt = select(c).order_by(c.last_activity_at.desc(), c.id.desc()).limit(limit + 1)
    if flt.status:
        stmt = stmt.where(c.status.in_(flt.status))
    if flt.priority:
        stmt = stmt.where(c.priority.in_(flt.priority))
    if flt.queue_id is not None:
        stmt = stmt.where(c.queue_id == flt.queue_id)
    if flt.unassigned:
        stmt = stmt.where(c.assignee_id.is_(None))
    elif flt.assignee_id is not None:
        stmt = stmt.where(c.assignee_id == flt.assignee_id)
    if flt.team_id is not None:
        stmt = stmt.where(c.team_id == flt.team_id)
    if flt.contact_id is not None:
        stmt = stmt.where(c.contact_id == flt.contact_id)
    if flt.label:
        stmt = stmt.where(
            exists().where(ConversationLabelRow.conversation_id == c.id, ConversationLabelRow.label == flt.label)
        )
    if flt.channel_instance_id is not None:
        stmt = stmt.where(
            exists().where(MessageRow.conversation_id == c.id,
                           MessageRow.channel_instance_id == flt.channel_instance_id)
        )
    if (seen := conversation_where(flt.visible_to)) is not None:
        stmt = stmt.where(seen)
    if cursor:
        at, last_id = decode_cursor(cursor, 2)
        try:
            at_dt = datetime.fromisoformat(at)
        except (TypeError, ValueError):
            at_dt = None
        if at_dt is None or not isinstance(last_id, int):
            from threadline.domain.errors import ValidationFailed

            raise ValidationFailed("cursor is not one this API gave out", field="cursor")
        stmt = stmt.where(or_(c.last_activity_at < at_dt, (c.last_activity_at == at_dt) & (c.id < last_id)))
    rows = (await session.execute(stmt)).scalars().all()
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last.last_activity_at.isoformat(), last.id)
    return rows[:limit], next_cursor


async def labels_of(session: AsyncSession, conversation_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {cid: [] for cid in conversation_ids}
    if not conversation_ids:
        return out
    stmt = select(ConversationLabelRow).where(ConversationLabelRow.conversation_id.in_(conversation_ids))
    for row in (await session.execute(stmt)).scalars():
        out[row.conversation_id].append(row.label)
    return {k: sorted(v) for k, v in out.items()}


async def set_labels(session: AsyncSession, conversation_id: int, labels: list[str]) -> None:
    await session.execute(delete(ConversationLabelRow).where(ConversationLabelRow.conversation_id == conversation_id))
    session.add_all(ConversationLabelRow(conversation_id=conversation_id, label=lb) for lb in labels)


async def get_message(session: AsyncSession, message_id: int) -> MessageRow | None:
    return await session.get(MessageRow, message_id)


async def get_messages(session: AsyncSession, ids: set[int]) -> dict[int, MessageRow]:
    if not ids:
        return {}
    return {m.id: m for m in (await session.execute(select(MessageRow).where(MessageRow.id.in_(ids)))).scalars()}


async def message_by_provider_id(session: AsyncSession, channel_instance_id: int, provider_id: str
                                 ) -> MessageRow | None:
    stmt = select(MessageRow).where(
        MessageRow.channel_instance_id == channel_instance_id, MessageRow.provider_id == provider_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_messages(
    session: AsyncSession, conversation_id: int, after_id: int | None, limit: int
) -> tuple[Sequence[MessageRow], str | None]:
    stmt = (
        select(MessageRow)
        .where(MessageRow.conversation_id == conversation_id)
        .order_by(MessageRow.id)
        .limit(limit + 1)
    )
    if after_id is not None:
        stmt = stmt.where(MessageRow.id > after_id)
    rows = (await session.execute(stmt)).scalars().all()
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def last_inbound(session: AsyncSession, conversation_id: int) -> MessageRow | None:
    stmt = (
        select(MessageRow)
        .where(MessageRow.conversation_id == conversation_id, MessageRow.direction == Direction.IN.value)
        .order_by(MessageRow.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def last_inbound_of(session: AsyncSession, conversation_ids: set[int]) -> dict[int, MessageRow]:
    """``last_inbound`` for several conversations, one query: each one's latest customer message."""
    if not conversation_ids:
        return {}
    latest = (select(func.max(MessageRow.id))
              .where(MessageRow.conversation_id.in_(conversation_ids), MessageRow.direction == Direction.IN.value)
              .group_by(MessageRow.conversation_id))
    rows = (await session.execute(select(MessageRow).where(MessageRow.id.in_(latest.scalar_subquery())))).scalars()
    return {m.conversation_id: m for m in rows}


async def stored_mail_fingerprints(session: AsyncSession, keys: set[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """For the (channel, provider id) pairs already stored as messages: the stored mail's fingerprint
    (``meta.email.fingerprint``; "" for a message stored before fingerprints). One query."""
    if not keys:
        return {}
    stmt = select(MessageRow.channel_instance_id, MessageRow.provider_id, MessageRow.meta).where(
        MessageRow.channel_instance_id.in_({c for c, _ in keys}), MessageRow.provider_id.in_({p for _, p in keys}))
    out: dict[tuple[int, str], str] = {}
    for channel_id, provider_id, meta in (await session.execute(stmt)).all():
        if (channel_id, provider_id) in keys:
            email = (meta or {}).get("email")
            out[(channel_id, provider_id)] = str(email.get("fingerprint") or "") if isinstance(email, dict) else ""
    return out


async def first_reply_at(session: AsyncSession, conversation_id: int) -> datetime | None:
    """When the conversation's first reply to the customer was written (notes and activity lines are not)."""
    stmt = select(func.min(MessageRow.created_at)).where(MessageRow.conversation_id == conversation_id,
                                                         MessageRow.direction == Direction.OUT.value)
    return (await session.execute(stmt)).scalar_one_or_none()
