"""The desk's Queue view: routing tasks an agent may take by hand (``actions.routing.pick_task``), with
what the view shows about each. Which tasks: the rule of ``Visibility.may_pick`` (domain/access.py), in
SQL through ``db/repos/access.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ContactRow, ConversationRow, RoutingTaskRow
from threadline.db.repos.access import served_tasks_where
from threadline.domain.access import Visibility

PICKABLE = ("waiting", "offered")


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A routing task an agent may take by hand, with what the Queue view shows about it."""

    conversation_id: int
    queue_id: int
    channel: str  # the channel class: chat, messaging, email, voice
    status: str  # waiting or offered
    agent_id: int | None  # offered to
    enqueued_at: float  # Unix seconds, the router's clock
    priority: int
    position: int | None
    ewt_seconds: float | None
    note: str
    contact_id: int
    contact_name: str
    conversation_priority: str
    channel_instance_id: int | None
    origin_queue_id: int | None = None  # the queue it overflowed out of (None: still in its first queue)

    @property
    def priority_label(self) -> str:
        if self.priority >= 20:
            return "urgent"
        if self.priority >= 10:
            return "high"
        return "low" if self.priority <= -10 else "normal"


OVERFLOW_SCAN = 500  # tasks outside the agent's queues looked at for ones that overflowed out of them


def _pickable(vis: Visibility, queue_id: int | None, overflowed: list[int] | None = None) -> Any:
    """Tasks waiting or offered in the queues the actor serves (supervisors and admins: every queue),
    plus ``overflowed``: conversations whose task left one of the actor's queues (see _overflowed)."""
    stmt = RoutingTaskRow.status.in_(PICKABLE)
    mine = served_tasks_where(vis, queue_id, overflowed)
    return stmt if mine is None else stmt & mine


async def _overflowed(session: AsyncSession, vis: Visibility, queue_id: int | None) -> list[int]:
    """Conversations an agent may take although their task now waits in a queue they do not serve: it
    overflowed out of one they do (``pick_task`` allows its ORIGIN queue). The origin lives in the task
    JSON; rather than a dialect-specific JSON operator, the waiting tasks outside the agent's queues
    (at most OVERFLOW_SCAN, oldest first) are read and filtered here. ``queue_id`` narrows to tasks that
    came from that queue. Supervisors see every queue anyway: nothing to add."""
    if vis.everything or not vis.queue_ids:
        return []
    t = RoutingTaskRow
    stmt = (select(t.conversation_id, t.task)
            .where(t.status.in_(PICKABLE), t.queue_id.not_in(sorted(vis.queue_ids)))
            .order_by(t.enqueued_at, t.conversation_id).limit(OVERFLOW_SCAN))
    return [r.conversation_id for r in (await session.execute(stmt)).all()
            if isinstance(r.task, dict) and _came_from(vis, r.task.get("origin_queue_id"), queue_id)]


def _came_from(vis: Visibility, origin: Any, queue_id: int | None) -> bool:
    """The task overflowed out of a queue the actor serves (``queue_id``: out of that one)."""
    origin = origin if isinstance(origin, int) and not isinstance(origin, bool) else None
    return vis.may_pick(None, origin) and (queue_id is None or origin == queue_id)


async def queue_items(session: AsyncSession, vis: Visibility, queue_id: int | None = None,
                      limit: int = 200) -> list[QueueItem]:
    """The Queue view: tasks the actor may pick, in queue order (position, then time waited)."""
    if vis.limited and not vis.queue_ids:
        return []
    t = RoutingTaskRow
    overflowed = await _overflowed(session, vis, queue_id)
    stmt = (select(t.conversation_id, t.queue_id, t.channel, t.status, t.agent_id, t.enqueued_at, t.task,
                   t.position, t.ewt_seconds, t.note, ConversationRow.contact_id, ContactRow.name,
                   ConversationRow.priority, ConversationRow.last_channel_instance_id)
            .join(ConversationRow, ConversationRow.id == t.conversation_id)
            .join(ContactRow, ContactRow.id == ConversationRow.contact_id)
            .where(_pickable(vis, queue_id, overflowed))
            .order_by(t.position.is_(None), t.position, t.enqueued_at, t.conversation_id).limit(limit))
    out = []
    for r in (await session.execute(stmt)).all():
        raw = (r.task or {}).get("priority", 0)
        out.append(QueueItem(
            conversation_id=r.conversation_id, queue_id=r.queue_id, channel=r.channel, status=r.status,
            agent_id=r.agent_id, enqueued_at=r.enqueued_at.timestamp(),
            priority=raw if isinstance(raw, int) and not isinstance(raw, bool) else 0, position=r.position,
            ewt_seconds=r.ewt_seconds, note=r.note or "", contact_id=r.contact_id, contact_name=r.name or "",
            conversation_priority=r.priority, channel_instance_id=r.last_channel_instance_id,
            origin_queue_id=_origin(r.task, r.queue_id)))
    return out


def _origin(task: Any, queue_id: int) -> int | None:
    origin = task.get("origin_queue_id") if isinstance(task, dict) else None
    return origin if isinstance(origin, int) and origin != queue_id else None


async def queue_count(session: AsyncSession, vis: Visibility) -> int:
    """How many tasks wait (or are being offered) in the actor's queues, or overflowed out of them:
    the Queue view's count."""
    if vis.limited and not vis.queue_ids:
        return 0
    overflowed = await _overflowed(session, vis, None)
    stmt = select(func.count()).select_from(RoutingTaskRow).where(_pickable(vis, None, overflowed))
    return int((await session.execute(stmt)).scalar() or 0)
