"""Log in and out, API tokens, and who a request is from."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.models import ApiTokenRow, LoginAttemptRow, SessionRow, UserRow
from threadline.db.repos import auth as repo
from threadline.db.repos import users as users_repo
from threadline.db.types import utcnow
from threadline.domain.errors import DomainError, NotFound, RateLimited, ValidationFailed
from threadline.security import hash_token, new_token, verify_password


class LoginFailed(DomainError):
    status = 401
    code = "login_failed"


class TooManyAttempts(RateLimited):
    code = "too_many_attempts"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def check_throttle(session: AsyncSession, username: str, ip: str, max_failures: int, window_seconds: int,
                         max_ip_failures: int) -> None:
    """Refuse a login attempt (429) from an address that failed too often: for this account (``max_failures``
    in the window, counted since this address last logged in to it) or for any accounts
    (``max_ip_failures``, password spraying). Throttling is per address, never per account alone: someone
    guessing passwords cannot lock the real user out, who logs in from their own address as usual."""
    now = utcnow()
    window_start = now - timedelta(seconds=window_seconds)
    ip = ip[:64]
    since = window_start
    last_ok = await repo.last_success(session, username, ip)
    if last_ok is not None and last_ok > since:
        since = last_ok
    minutes = max(1, window_seconds // 60)
    if await repo.recent_failures(session, since, username=username, ip=ip) >= max_failures:
        raise TooManyAttempts(f"too many failed logins for {username} from your address; try again in {minutes} "
                              "minutes", retry_after=window_seconds)
    if await repo.recent_failures(session, window_start, ip=ip) >= max_ip_failures:
        raise TooManyAttempts(f"too many failed logins from your address; try again in {minutes} minutes",
                              retry_after=window_seconds)


async def login(session: AsyncSession, *, email: str, password: str, ip: str, user_agent: str,
                ttl_hours: int) -> tuple[UserRow, str, SessionRow]:
    """Check the password and open a session; the caller commits (failures are recorded too)."""
    username = email.strip().lower()[:320]
    user = await users_repo.get_user_by_email(session, username)
    ok = verify_password(user.password_hash if user else None, password) and user is not None and user.active
    session.add(LoginAttemptRow(username=username, ip=ip[:64], success=ok))
    if not ok or user is None:
        raise LoginFailed("wrong email or password")
    token = secrets.token_urlsafe(32)
    row = SessionRow(token_hash=hash_token(token), user_id=user.id, csrf_token=secrets.token_urlsafe(24),
                     expires_at=utcnow() + timedelta(hours=ttl_hours), ip=ip[:64], user_agent=user_agent[:300])
    session.add(row)
    await session.flush()
    return user, token, row


async def logout(session: AsyncSession, token: str) -> None:
    await repo.delete_session(session, hash_token(token))


async def session_user(session: AsyncSession, token: str, now: datetime) -> tuple[UserRow, SessionRow] | None:
    row = await repo.session_by_hash(session, hash_token(token))
    if row is None or row.expires_at <= now:
        return None
    user = await users_repo.get_user(session, row.user_id)
    if user is None or not user.active:
        return None
    return user, row


async def token_user(session: AsyncSession, token: str) -> UserRow | None:
    row = await repo.token_by_hash(session, hash_token(token))
    if row is None or row.revoked_at is not None:
        return None
    user = await users_repo.get_user(session, row.user_id)
    if user is None or not user.active:
        return None
    return user


async def create_token(session: AsyncSession, user_id: int, name: str) -> tuple[ApiTokenRow, str]:
    """Create an API token; the plain token is returned once and only its hash is kept."""
    if await users_repo.get_user(session, user_id) is None:
        raise NotFound(f"user {user_id} does not exist")
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("a token name is 1-100 characters", field="name")
    token = new_token("tl")
    row = ApiTokenRow(user_id=user_id, name=name, prefix=token[:10], token_hash=hash_token(token))
    session.add(row)
    await session.flush()
    return row, token


async def revoke_token(session: AsyncSession, token_id: int, *, owner_id: int | None = None) -> ApiTokenRow:
    row = await repo.get_token(session, token_id)
    if row is None or (owner_id is not None and row.user_id != owner_id):
        raise NotFound(f"token {token_id} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
