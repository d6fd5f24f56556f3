"""Request dependencies: the services, who is calling (session cookie or API token), CSRF, roles."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import auth as auth_actions
from threadline.db.models import UserRow
from threadline.db.repos import users as users_repo
from threadline.db.types import utcnow
from threadline.domain.access import Actor
from threadline.domain.errors import DomainError, PermissionDenied
from threadline.domain.users import Role
from threadline.services import Services

SESSION_COOKIE = "tl_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class NotAuthenticated(DomainError):
    status = 401
    code = "not_authenticated"


class CsrfFailed(DomainError):
    status = 403
    code = "csrf_failed"


async def get_services(request: Request) -> Services:  # async: a sync dependency costs a thread hop
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def build_actor(session: AsyncSession, user: UserRow, via_token: bool) -> Actor:
    return Actor(user_id=user.id, role=Role(user.role), name=user.name,
                 queue_ids=await users_repo.queue_ids_of(session, user.id),
                 team_ids=await users_repo.team_ids_of(session, user.id), via_token=via_token)


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


async def authenticate(services: Services, *, token: str | None = None,
                       cookie: str | None = None) -> tuple[Actor, str | None]:
    """Return the actor and, for a cookie session, its CSRF token."""
    async with services.db.transaction(write=False) as session:
        if token:
            user = await auth_actions.token_user(session, token)
            if user is None:
                raise NotAuthenticated("the API token is unknown or revoked")
            return await build_actor(session, user, True), None
        if cookie:
            found = await auth_actions.session_user(session, cookie, utcnow())
            if found is not None:
                user, row = found
                return await build_actor(session, user, False), row.csrf_token
    raise NotAuthenticated("log in, or send an API token as 'Authorization: Bearer <token>'")


async def current_actor(request: Request, services: ServicesDep) -> Actor:
    token = bearer_token(request)
    actor, csrf = await authenticate(services, token=token,
                                     cookie=None if token else request.cookies.get(SESSION_COOKIE))
    request.state.actor = actor
    request.state.csrf_token = csrf
    if csrf is not None and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await request.form()).get("csrf_token", ""))
        if not sent or sent != csrf:
            raise CsrfFailed("missing or wrong CSRF token (send the X-CSRF-Token header from /api/v1/me)")
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require(role: Role):  # noqa: ANN201 - FastAPI dependency factory
    async def dep(actor: CurrentActor) -> Actor:
        if not actor.role.at_least(role):
            raise PermissionDenied(f"only a {role.value} or above may do this")
        return actor

    return Depends(dep)


SupervisorActor = Annotated[Actor, require(Role.SUPERVISOR)]
AdminActor = Annotated[Actor, require(Role.ADMIN)]
