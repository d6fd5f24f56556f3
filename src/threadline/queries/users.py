"""Users, teams and queues as the API shows them (``/api/v1/users``, ``/me``, ``/teams``, ``/queues``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import QueueRow, TeamRow, UserRow
from threadline.db.repos import users as repo
from threadline.domain.access import Visibility
from threadline.domain.errors import NotFound


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    role: str
    skills: dict[str, int]
    languages: list[str]
    team_ids: list[int]
    queue_ids: list[int]
    presence: str
    presence_reason: str
    presence_since: datetime | None
    active: bool


class TeamOut(BaseModel):
    id: int
    name: str
    member_ids: list[int]


class QueueOut(BaseModel):
    id: int
    name: str
    team_id: int | None
    settings: dict[str, Any]
    member_ids: list[int]


def _user(row: UserRow, team_ids: list[int], queue_ids: list[int]) -> UserOut:
    return UserOut(id=row.id, email=row.email, name=row.name, role=row.role, skills=row.skills or {},
                   languages=row.languages or [], team_ids=sorted(team_ids), queue_ids=sorted(queue_ids),
                   presence=row.presence, presence_reason=row.presence_reason, presence_since=row.presence_since,
                   active=row.active)


async def user_out(session: AsyncSession, user_id: int) -> UserOut:
    row = await repo.get_user(session, user_id)
    if row is None:
        raise NotFound(f"user {user_id} does not exist")
    return _user(row, await repo.team_ids_of(session, user_id), await repo.queue_ids_of(session, user_id))


async def team_out(session: AsyncSession, t: TeamRow) -> TeamOut:
    return TeamOut(id=t.id, name=t.name, member_ids=await repo.team_member_ids(session, t.id))


async def queue_out(session: AsyncSession, q: QueueRow) -> QueueOut:
    return QueueOut(id=q.id, name=q.name, team_id=q.team_id, settings=q.settings or {},
                    member_ids=await repo.queue_member_ids(session, q.id))


async def users_out(session: AsyncSession) -> list[UserOut]:
    rows = await repo.list_users(session)
    teams, queues = await repo.memberships(session)
    return [_user(r, teams.get(r.id, []), queues.get(r.id, [])) for r in rows]


async def queues_out(session: AsyncSession, vis: Visibility) -> list[QueueOut]:
    """The queues the actor serves (supervisors and admins: all)."""
    rows = await repo.list_queues(session, None if vis.everything else sorted(vis.queue_ids))
    return [await queue_out(session, q) for q in rows]
