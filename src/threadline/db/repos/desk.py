"""Queries of the agent desk: filtered and searched conversation lists, view counts, a contact's
history, the last message of each conversation (list previews), canned responses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import (
    CannedResponseRow,
    ContactRow,
    ConversationLabelRow,
    ConversationRow,
    MessageRow,
)
from threadline.db.repos.access import conversation_where
from threadline.db.repos.common import decode_cursor, encode_cursor
from threadline.db.repos.conversations import ConversationFilter
from threadline.domain.access import Visibility
from threadline.domain.errors import ValidationFailed
from threadline.domain.messages import Direction

# The "Open" view: what needs an agent. Snoozed conversations are out of it until they wake (their own
# "Snoozed" filter lists them); pending ones (waiting on the customer) stay in it.
OPEN_STATUSES = ("open", "pending")


def _conditions(flt: ConversationFilter, q: str | None) -> list[Any]:
    c = ConversationRow
    cond: list[Any] = []
    if flt.status:
        cond.append(c.status.in_(flt.status))
    if flt.priority:
        cond.append(c.priority.in_(flt.priority))
    if flt.queue_id is not None:
        cond.append(c.queue_id == flt.queue_id)
    if flt.unassigned:
        cond.append(c.assignee_id.is_(None))
    elif flt.assignee_id is not None:
        cond.append(c.assignee_id == flt.assignee_id)
    if flt.team_id is not None:
        cond.append(c.team_id == flt.team_id)
    if flt.contact_id is not None:
        cond.append(c.contact_id == flt.contact_id)
    if flt.label:
        cond.append(exists().where(ConversationLabelRow.conversation_id == c.id, ConversationLabelRow.label == flt.label))
    if flt.channel_instance_id is not None:
        cond.append(exists().where(MessageRow.conversation_id == c.id,
                                   MessageRow.channel_instance_id == flt.channel_instance_id))
    if (seen := conversation_where(flt.visible_to)) is not None:
        cond.append(seen)
    if q and q.strip():
        needle = q.strip().lower()
        like = f"%{needle.replace('%', '').replace('_', '')}%"
        matches = [exists().where(ContactRow.id == c.contact_id, ContactRow.search_text.like(like)),
                   exists().where(MessageRow.conversation_id == c.id,
                                  MessageRow.direction.in_((Direction.IN.value, Direction.OUT.value, Direction.NOTE.value)),
                                  func.lower(MessageRow.text).like(like))]
        if needle.lstrip("#").isdigit():
            matches.append(c.id == int(needle.lstrip("#")))
        cond.append(or_(*matches))
    return cond


async def search_conversations(session: AsyncSession, flt: ConversationFilter, q: str | None, limit: int,
                               cursor: str | None = None) -> tuple[Sequence[ConversationRow], str | None]:
    """One page of the desk's list, newest activity first, and the cursor of the next page (None: no more).

    Keyset pagination on the list's order (last_activity_at desc, id desc): the cursor is the last row's
    (last_activity_at, id), so conversations that become active meanwhile move to the top without
    shifting the rows of the pages still to come (no OFFSET)."""
    c = ConversationRow
    stmt = select(c).where(*_conditions(flt, q)).order_by(c.last_activity_at.desc(), c.id.desc())
    if cursor:
        at_raw, last_id = decode_cursor(cursor, 2)
        try:
            at = datetime.fromisoformat(at_raw) if isinstance(at_raw, str) else None
        except ValueError:
            at = None
        if at is None or at.tzinfo is None or not isinstance(last_id, int) or isinstance(last_id, bool):
            raise ValidationFailed("cursor is not one this page gave out", field="after")
        stmt = stmt.where(or_(c.last_activity_at < at, and_(c.last_activity_at == at, c.id < last_id)))
    rows = (await session.execute(stmt.limit(limit + 1))).scalars().all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.last_activity_at.isoformat(), last.id)


async def count_conversations(session: AsyncSession, flt: ConversationFilter) -> int:
    stmt = select(func.count()).select_from(ConversationRow).where(*_conditions(flt, None))
    return int((await session.execute(stmt)).scalar_one())


async def open_counts_by_queue(session: AsyncSession, visible_to: Visibility | None
                               ) -> dict[int | None, int]:
    flt = ConversationFilter(status=list(OPEN_STATUSES), visible_to=visible_to)
    stmt = (select(ConversationRow.queue_id, func.count()).where(*_conditions(flt, None))
            .group_by(ConversationRow.queue_id))
    return {qid: int(n) for qid, n in (await session.execute(stmt)).all()}


async def all_labels(session: AsyncSession, limit: int = 200) -> list[str]:
    stmt = select(ConversationLabelRow.label).distinct().order_by(ConversationLabelRow.label).limit(limit)
    return list((await session.execute(stmt)).scalars().all())


async def last_messages(session: AsyncSession, conversation_ids: Sequence[int]) -> dict[int, MessageRow]:
    """The latest customer/agent message of each conversation (for list previews), in one query."""
    if not conversation_ids:
        return {}
    latest = (select(func.max(MessageRow.id))
              .where(MessageRow.conversation_id.in_(conversation_ids),
                     MessageRow.direction.in_((Direction.IN.value, Direction.OUT.value)))
              .group_by(MessageRow.conversation_id))
    rows = await session.execute(select(MessageRow).where(MessageRow.id.in_(latest)))
    return {m.conversation_id: m for m in rows.scalars()}


async def conversations_of_contact(session: AsyncSession, contact_id: int, limit: int = 20
                                   ) -> Sequence[ConversationRow]:
    stmt = (select(ConversationRow).where(ConversationRow.contact_id == contact_id)
            .order_by(ConversationRow.last_activity_at.desc(), ConversationRow.id.desc()).limit(limit))
    return (await session.execute(stmt)).scalars().all()


async def messages_after(session: AsyncSession, conversation_id: int, after_id: int, limit: int = 500
                         ) -> Sequence[MessageRow]:
    stmt = (select(MessageRow).where(MessageRow.conversation_id == conversation_id, MessageRow.id > after_id)
            .order_by(MessageRow.id).limit(limit))
    return (await session.execute(stmt)).scalars().all()


async def channels_used_by_identities(session: AsyncSession, identity_ids: Sequence[int]) -> dict[int, set[int]]:
    """For each identity, the channel instances it has written through (where a reply can go)."""
    out: dict[int, set[int]] = {i: set() for i in identity_ids}
    if not identity_ids:
        return out
    stmt = (select(MessageRow.identity_id, MessageRow.channel_instance_id)
            .where(MessageRow.identity_id.in_(identity_ids), MessageRow.direction == Direction.IN.value,
                   MessageRow.channel_instance_id.is_not(None)).distinct())
    for ident, chan in (await session.execute(stmt)).all():
        out[ident].add(chan)
    return out


# --- canned responses ---------------------------------------------------------------------------

async def list_canned(session: AsyncSession) -> Sequence[CannedResponseRow]:
    return (await session.execute(select(CannedResponseRow).order_by(CannedResponseRow.shortcut))).scalars().all()


async def get_canned(session: AsyncSession, canned_id: int) -> CannedResponseRow | None:
    return await session.get(CannedResponseRow, canned_id)


async def get_canned_by_shortcut(session: AsyncSession, shortcut: str) -> CannedResponseRow | None:
    stmt = select(CannedResponseRow).where(CannedResponseRow.shortcut == shortcut)
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_canned(session: AsyncSession, row: CannedResponseRow) -> None:
    await session.delete(row)


async def last_channel_before(session: AsyncSession, conversation_id: int, before_id: int) -> int | None:
    """The channel of the latest customer/agent message up to ``before_id`` (to mark channel switches)."""
    stmt = (select(MessageRow.channel_instance_id)
            .where(MessageRow.conversation_id == conversation_id, MessageRow.id <= before_id,
                   MessageRow.channel_instance_id.is_not(None))
            .order_by(MessageRow.id.desc()).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()
