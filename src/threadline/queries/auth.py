"""Signing in and knowing who calls: the use cases behind ``/api/v1/auth/login``, the desk's login form,
and every request's session cookie or API token (``web/deps.py``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import auth as auth_actions
from threadline.db.models import UserRow
from threadline.db.repos import users as users_repo
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.errors import DomainError
from threadline.domain.users import Role
from threadline.security import hash_token
from threadline.services import Services


class NotAuthenticated(DomainError):
    status = 401
    code = "not_authenticated"


async def build_actor(session: AsyncSession, user: UserRow, via_token: bool) -> Actor:
    """The actor of a user: role, queues and teams, read once per request (its ``visibility`` follows)."""
    return Actor(user_id=user.id, role=Role(user.role), name=user.name,
                 queue_ids=await users_repo.queue_ids_of(session, user.id),
                 team_ids=await users_repo.team_ids_of(session, user.id), via_token=via_token)


async def authenticate(services: Services, *, token: str | None = None,
                       cookie: str | None = None) -> tuple[Actor, str | None]:
    """Return the actor and, for a cookie session, its CSRF token.

    The answer is kept while no user, membership, session or token has been written (the ``auth`` change
    counter, ``db/cache.py``): revoking a token, ending a session, deactivating a user or changing their
    queues raises it, in any process, and the next request reads again. A session's expiry is checked on
    every request. Failures are never kept."""
    db = services.db
    version = db.auth_version()  # before the reads (db/cache.py)
    key = ("auth", "token", hash_token(token)) if token else ("auth", "session", hash_token(cookie)) if cookie \
        else None
    now = utcnow()
    if key is not None and (hit := db.cache.get(key, version)) is not None:
        actor, csrf, expires_at = hit
        if expires_at is None or expires_at > now:
            return actor, csrf
    async with db.transaction(write=False) as session:
        if token:
            user = await auth_actions.token_user(session, token)
            if user is None:
                raise NotAuthenticated("the API token is unknown or revoked")
            actor = await build_actor(session, user, True)
            db.cache.put(key, version, (actor, None, None))
            return actor, None
        if cookie:
            found = await auth_actions.session_user(session, cookie, now)
            if found is not None:
                user, row = found
                actor = await build_actor(session, user, False)
                db.cache.put(key, version, (actor, row.csrf_token, row.expires_at))
                return actor, row.csrf_token
    raise NotAuthenticated("log in, or send an API token as 'Authorization: Bearer <token>'")


async def login(services: Services, email: str, password: str, ip: str, user_agent: str) -> tuple[int, str, str]:
    """Check throttling and the password; the attempt is recorded (committed) even when it fails.
    Returns the user id, the session token (for the cookie) and the session's CSRF token."""
    s = services.settings
    error: DomainError | None = None
    async with services.db.transaction(write=True) as session:
        await auth_actions.check_throttle(session, email.strip().lower(), ip, s.login_max_failures,
                                          s.login_window_seconds, s.login_max_failures_per_ip)
        try:
            user, token, row = await auth_actions.login(session, email=email, password=password, ip=ip,
                                                        user_agent=user_agent, ttl_hours=s.session_ttl_hours)
        except auth_actions.LoginFailed as exc:
            error = exc
    if error is not None:
        raise error
    return user.id, token, row.csrf_token
