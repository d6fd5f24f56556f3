"""Request dependencies: the services, who is calling (session cookie or API token), CSRF, roles."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from threadline.domain.access import Actor
from threadline.domain.errors import DomainError, PermissionDenied
from threadline.domain.users import Role
from threadline.queries.auth import NotAuthenticated, authenticate  # noqa: F401 - NotAuthenticated re-exported
from threadline.services import Services

SESSION_COOKIE = "tl_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class CsrfFailed(DomainError):
    status = 403
    code = "csrf_failed"


async def get_services(request: Request) -> Services:  # async: a sync dependency costs a thread hop
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def set_session_cookie(response: Response, services, token: str) -> None:  # type: ignore[no-untyped-def]
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                        secure=services.settings.secure_cookies,
                        max_age=services.settings.session_ttl_hours * 3600, path="/")


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


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
