"""The access rule of ``domain/access.py`` in SQL: the one place a ``Visibility`` becomes a where-clause.

Lists and counts (the API's conversation list, the desk's views and counts, contact search, the Queue
view) filter with these conditions; single objects are checked in memory with ``Visibility.allows``.
Each function returns None when nothing is to be filtered (a supervisor or admin sees everything).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, or_

from threadline.db.models import ConversationRow, RoutingTaskRow
from threadline.domain.access import Visibility


def _in(column: Any, ids: frozenset[int]) -> ColumnElement[bool]:
    return column.in_(sorted(ids)) if ids else false()


def conversation_where(vis: Visibility | None) -> ColumnElement[bool] | None:
    """Conversations the actor sees: assigned to them, in a queue they serve, or of a team they are in."""
    if vis is None or vis.everything:
        return None
    c = ConversationRow
    return or_(c.assignee_id == vis.user_id, _in(c.queue_id, vis.queue_ids), _in(c.team_id, vis.team_ids))


def served_tasks_where(vis: Visibility, queue_id: int | None = None,
                       also: list[int] | None = None) -> ColumnElement[bool] | None:
    """Routing tasks in the queues the actor serves (``Visibility.serves``), narrowed to ``queue_id``,
    plus the conversations in ``also`` (tasks that overflowed out of the actor's queues: their origin
    lives in the task JSON, read by the caller; ``Visibility.may_pick``)."""
    t = RoutingTaskRow
    if vis.everything:
        return None if queue_id is None else t.queue_id == queue_id
    mine = _in(t.queue_id, vis.queue_ids)
    if queue_id is not None:
        mine = mine & (t.queue_id == queue_id)
    if also:
        mine = mine | t.conversation_id.in_(also)
    return mine
