from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ApiTokenRow, LoginAttemptRow, SessionRow


async def session_by_hash(session: AsyncSession, token_hash: str) -> SessionRow | None:
    stmt = select(SessionRow).where(SessionRow.token_hash == token_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def delete_session(session: AsyncSession, token_hash: str) -> None:
    await session.execute(delete(SessionRow).where(SessionRow.token_hash == token_hash))


async def delete_sessions_of(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(SessionRow).where(SessionRow.user_id == user_id))


async def token_by_hash(session: AsyncSession, token_hash: str) -> ApiTokenRow | None:
    stmt = select(ApiTokenRow).where(ApiTokenRow.token_hash == token_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_token(session: AsyncSession, token_id: int) -> ApiTokenRow | None:
    return await session.get(ApiTokenRow, token_id)


async def list_tokens(session: AsyncSession, user_id: int | None = None) -> Sequence[ApiTokenRow]:
    stmt = select(ApiTokenRow).order_by(ApiTokenRow.id)
    if user_id is not None:
        stmt = stmt.where(ApiTokenRow.user_id == user_id)
    return (await session.execute(stmt)).scalars().all()


async def recent_failures(session: AsyncSession, since: datetime, *, username: str | None = None,
                          ip: str | None = None) -> int:
    """Failed logins since then, for this account and/or from this address."""
    stmt = select(func.count()).select_from(LoginAttemptRow).where(
        LoginAttemptRow.at >= since, LoginAttemptRow.success.is_(False))
    if username is not None:
        stmt = stmt.where(LoginAttemptRow.username == username)
    if ip is not None:
        stmt = stmt.where(LoginAttemptRow.ip == ip)
    return (await session.execute(stmt)).scalar_one()


async def last_success(session: AsyncSession, username: str, ip: str | None = None) -> datetime | None:
    stmt = select(func.max(LoginAttemptRow.at)).where(
        LoginAttemptRow.username == username, LoginAttemptRow.success.is_(True))
    if ip is not None:
        stmt = stmt.where(LoginAttemptRow.ip == ip)
    return (await session.execute(stmt)).scalar_one_or_none()
