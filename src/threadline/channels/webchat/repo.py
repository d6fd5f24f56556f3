"""Queries for the web chat channel: a visitor's conversation and history, agent availability, queue
positions, the customer's messages an agent has not read yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import (
    ConversationRow,
    MessageRow,
    QueueMemberRow,
    QueueRow,
    RoutingTaskRow,
    UserRow,
)


async def visitor_conversation_id(session: AsyncSession, channel_id: int, identity_id: int) -> int | None:
    """The conversation of the visitor's latest message on this channel (theirs or an agent's reply)."""
    stmt = (
        select(MessageRow.conversation_id)
        .where(MessageRow.channel_instance_id == channel_id, MessageRow.identity_id == identity_id,
               MessageRow.direction.in_(("in", "out")))
        .order_by(MessageRow.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def visitor_messages(session: AsyncSession, conversation_id: int, channel_id: int, limit: int = 200
                           ) -> Sequence[MessageRow]:
    """What the visitor may see of a conversation: customer messages and replies on this channel (never
    notes or activity lines), the latest ``limit``, oldest first."""
    stmt = (
        select(MessageRow)
        .where(MessageRow.conversation_id == conversation_id, MessageRow.channel_instance_id == channel_id,
               MessageRow.direction.in_(("in", "out")))
        .order_by(MessageRow.id.desc())
        .limit(limit)
    )
    return list(reversed((await session.execute(stmt)).scalars().all()))


async def messages_by_ids(session: AsyncSession, ids: Sequence[int]) -> Sequence[MessageRow]:
    if not ids:
        return []
    return (await session.execute(select(MessageRow).where(MessageRow.id.in_(set(ids))))).scalars().all()


async def user_names(session: AsyncSession, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(select(UserRow.id, UserRow.name).where(UserRow.id.in_(set(ids))))
    return {i: n for i, n in rows.all()}


async def queues(session: AsyncSession, ids: Sequence[int]) -> Sequence[QueueRow]:
    if not ids:
        return []
    return (await session.execute(select(QueueRow).where(QueueRow.id.in_(set(ids))))).scalars().all()


async def available_agents(session: AsyncSession, queue_ids: Sequence[int] | None) -> int:
    """How many active agents are available: in these queues, or anywhere when ``queue_ids`` is None."""
    stmt = select(func.count(func.distinct(UserRow.id))).where(UserRow.active.is_(True),
                                                                UserRow.presence == "available")
    if queue_ids is not None:
        stmt = stmt.join(QueueMemberRow, QueueMemberRow.user_id == UserRow.id).where(
            QueueMemberRow.queue_id.in_(set(queue_ids)))
    return int((await session.execute(stmt)).scalar_one())


@dataclass(frozen=True, slots=True)
class QueueWait:
    """Where a visitor's conversation stands: its state, the latest agent reply and activity line, and
    its routing task if there is one (position and estimated wait written by the router)."""

    conversation_id: int
    status: str
    assignee_id: int | None
    conversation_queue_id: int | None
    last_reply_id: int | None
    last_reply_at: datetime | None
    last_activity_id: int | None
    task_status: str | None
    enqueued_at: datetime | None
    position: int | None
    ewt_seconds: float | None
    queue_id: int | None
    queue_settings: dict[str, Any] | None
    left_offline: bool = False  # the visitor left a message with the offline form: answered by e-mail

    @property
    def answered(self) -> bool:
        """An agent has replied since it started waiting: after the task was queued and after the last
        activity line (assigned, given back, moved, reopened), so a customer's follow-up does not count."""
        if self.last_reply_id is None or self.last_reply_at is None:
            return False
        if self.last_activity_id is not None and self.last_activity_id > self.last_reply_id:
            return False
        return self.enqueued_at is None or self.last_reply_at >= self.enqueued_at


def _left_offline() -> Any:
    """Whether the conversation holds a message the visitor left with the offline form: it is answered
    by e-mail later, so the widget shows no place in the queue for it."""
    return (exists().where(MessageRow.conversation_id == ConversationRow.id, MessageRow.direction == "in",
                           MessageRow.meta["offline"].as_boolean().is_(True))
            .correlate(ConversationRow))


def _latest(column: Any, direction: str) -> Any:
    return (select(column).where(MessageRow.conversation_id == ConversationRow.id, MessageRow.direction == direction)
            .order_by(MessageRow.id.desc()).limit(1).correlate(ConversationRow).scalar_subquery())


async def queue_waits(session: AsyncSession, conversation_ids: Sequence[int]) -> list[QueueWait]:
    """One query for many conversations: status and assignee, the latest agent reply and activity line,
    and the routing task's status, position and estimated wait with its queue's settings (hours)."""
    ids = sorted(set(conversation_ids))
    out: list[QueueWait] = []
    for start in range(0, len(ids), 900):  # below SQLite's bound-parameter limit
        out.extend(await _queue_waits(session, ids[start:start + 900]))
    return out


async def _queue_waits(session: AsyncSession, conversation_ids: Sequence[int]) -> list[QueueWait]:
    stmt = (
        select(ConversationRow.id, ConversationRow.status, ConversationRow.assignee_id, ConversationRow.queue_id,
               _latest(MessageRow.id, "out"), _latest(MessageRow.created_at, "out"), _latest(MessageRow.id, "activity"),
               RoutingTaskRow.status, RoutingTaskRow.enqueued_at, RoutingTaskRow.position, RoutingTaskRow.ewt_seconds,
               RoutingTaskRow.queue_id, QueueRow.settings, _left_offline())
        .select_from(ConversationRow)
        .outerjoin(RoutingTaskRow, RoutingTaskRow.conversation_id == ConversationRow.id)
        .outerjoin(QueueRow, QueueRow.id == RoutingTaskRow.queue_id)
        .where(ConversationRow.id.in_(list(conversation_ids)))
    )
    return [QueueWait(*r) for r in (await session.execute(stmt)).all()]


async def unread_inbound(session: AsyncSession, conversation_id: int, up_to: int | None) -> Sequence[MessageRow]:
    """The customer's messages in a conversation not yet marked read by an agent (up to a message id)."""
    stmt = select(MessageRow).where(MessageRow.conversation_id == conversation_id, MessageRow.direction == "in",
                                    MessageRow.delivery_status.is_(None)).order_by(MessageRow.id).limit(500)
    if up_to is not None:
        stmt = stmt.where(MessageRow.id <= up_to)
    return (await session.execute(stmt)).scalars().all()
