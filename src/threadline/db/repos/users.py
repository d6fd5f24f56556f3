from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import QueueMemberRow, QueueRow, TeamMemberRow, TeamRow, UserRow


async def get_user(session: AsyncSession, user_id: int) -> UserRow | None:
    return await session.get(UserRow, user_id)


async def get_users(session: AsyncSession, ids: set[int]) -> dict[int, UserRow]:
    if not ids:
        return {}
    return {u.id: u for u in (await session.execute(select(UserRow).where(UserRow.id.in_(ids)))).scalars()}


async def get_user_by_email(session: AsyncSession, email: str) -> UserRow | None:
    return (await session.execute(select(UserRow).where(UserRow.email == email.strip().lower()))).scalar_one_or_none()


async def list_users(session: AsyncSession) -> Sequence[UserRow]:
    return (await session.execute(select(UserRow).order_by(UserRow.id))).scalars().all()


async def count_users(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(UserRow))).scalar_one()


async def active_admin_ids(session: AsyncSession) -> list[int]:
    """Active admins; on PostgreSQL their rows stay locked until commit, so two admins demoting each
    other at once take turns (SQLite writers take turns anyway)."""
    stmt = select(UserRow.id).where(UserRow.role == "admin", UserRow.active.is_(True)).order_by(UserRow.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return list((await session.execute(stmt)).scalars().all())


async def team_ids_of(session: AsyncSession, user_id: int) -> list[int]:
    rows = await session.execute(select(TeamMemberRow.team_id).where(TeamMemberRow.user_id == user_id))
    return sorted(rows.scalars().all())


async def queue_ids_of(session: AsyncSession, user_id: int) -> list[int]:
    rows = await session.execute(select(QueueMemberRow.queue_id).where(QueueMemberRow.user_id == user_id))
    return sorted(rows.scalars().all())


async def memberships(session: AsyncSession) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Team ids and queue ids of every user, in two queries."""
    teams: dict[int, list[int]] = {}
    queues: dict[int, list[int]] = {}
    for uid, tid in (await session.execute(select(TeamMemberRow.user_id, TeamMemberRow.team_id))).all():
        teams.setdefault(uid, []).append(tid)
    for uid, qid in (await session.execute(select(QueueMemberRow.user_id, QueueMemberRow.queue_id))).all():
        queues.setdefault(uid, []).append(qid)
    return teams, queues


async def set_team_ids(session: AsyncSession, user_id: int, team_ids: list[int]) -> None:
    await session.execute(delete(TeamMemberRow).where(TeamMemberRow.user_id == user_id))
    session.add_all(TeamMemberRow(team_id=t, user_id=user_id) for t in sorted(set(team_ids)))


async def set_queue_ids(session: AsyncSession, user_id: int, queue_ids: list[int]) -> None:
    await session.execute(delete(QueueMemberRow).where(QueueMemberRow.user_id == user_id))
    session.add_all(QueueMemberRow(queue_id=q, user_id=user_id) for q in sorted(set(queue_ids)))


async def get_team(session: AsyncSession, team_id: int) -> TeamRow | None:
    return await session.get(TeamRow, team_id)


async def get_team_by_name(session: AsyncSession, name: str) -> TeamRow | None:
    return (await session.execute(select(TeamRow).where(TeamRow.name == name))).scalar_one_or_none()


async def list_teams(session: AsyncSession) -> Sequence[TeamRow]:
    return (await session.execute(select(TeamRow).order_by(TeamRow.id))).scalars().all()


async def team_member_ids(session: AsyncSession, team_id: int) -> list[int]:
    rows = await session.execute(select(TeamMemberRow.user_id).where(TeamMemberRow.team_id == team_id))
    return sorted(rows.scalars().all())


async def get_queue(session: AsyncSession, queue_id: int) -> QueueRow | None:
    return await session.get(QueueRow, queue_id)


async def get_queue_by_name(session: AsyncSession, name: str) -> QueueRow | None:
    return (await session.execute(select(QueueRow).where(QueueRow.name == name))).scalar_one_or_none()


async def list_queues(session: AsyncSession, ids: list[int] | None = None) -> Sequence[QueueRow]:
    stmt = select(QueueRow).order_by(QueueRow.id)
    if ids is not None:
        stmt = stmt.where(QueueRow.id.in_(ids))
    return (await session.execute(stmt)).scalars().all()


async def queue_member_ids(session: AsyncSession, queue_id: int) -> list[int]:
    rows = await session.execute(select(QueueMemberRow.user_id).where(QueueMemberRow.queue_id == queue_id))
    return sorted(rows.scalars().all())
