"""Log in/out with a session cookie, who am I, and personal API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from threadline.actions import auth as auth_actions
from threadline.db.repos import auth as auth_repo
from threadline.domain.errors import ValidationFailed
from threadline.queries import auth as auth_queries
from threadline.queries.users import user_out
from threadline.web.api.schemas import Id, LoginIn, MeOut, TokenCreated, TokenIn, TokenOut
from threadline.web.deps import SESSION_COOKIE, CurrentActor, ServicesDep, client_ip, set_session_cookie
from threadline.web.errors import problem

router = APIRouter(tags=["auth"])


@router.post("/auth/login", response_model=MeOut, summary="Log in; sets the session cookie")
async def login(body: LoginIn, request: Request, response: Response, services: ServicesDep) -> MeOut:
    user_id, token, csrf = await auth_queries.login(services, body.email, body.password, client_ip(request),
                                                   request.headers.get("user-agent", ""))
    set_session_cookie(response, services, token)
    async with services.db.transaction(write=False) as session:
        out = await user_out(session, user_id)
    return MeOut(**out.model_dump(), csrf_token=csrf)


@router.post("/auth/logout", status_code=204, summary="End this browser session (deleted on the server too)")
async def logout(request: Request, actor: CurrentActor, services: ServicesDep) -> Response:
    """The session of the cookie, authenticated with its CSRF token (``CurrentActor``), is deleted; an API
    token has no session to end (revoke it with ``DELETE /api/v1/tokens/{id}``)."""
    if actor.via_token:
        raise ValidationFailed("an API token has no session to end; revoke it with DELETE /api/v1/tokens/{id}")
    async with services.db.transaction(write=True) as session:
        await auth_actions.logout(session, request.cookies[SESSION_COOKIE])
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=services.settings.secure_cookies)
    return response


@router.get("/me", response_model=MeOut, summary="The calling user, with the CSRF token of this session")
async def me(request: Request, actor: CurrentActor, services: ServicesDep) -> MeOut:
    async with services.db.transaction(write=False) as session:
        out = await user_out(session, actor.user_id)
    return MeOut(**out.model_dump(), csrf_token=request.state.csrf_token)


def token_out(row) -> TokenOut:  # type: ignore[no-untyped-def]
    return TokenOut(id=row.id, user_id=row.user_id, name=row.name, prefix=row.prefix, created_at=row.created_at,
                    revoked_at=row.revoked_at)


@router.get("/tokens", response_model=list[TokenOut], summary="Your API tokens (admins: everyone's)")
async def list_tokens(actor: CurrentActor, services: ServicesDep) -> list[TokenOut]:
    async with services.db.transaction(write=False) as session:
        rows = await auth_repo.list_tokens(session, None if actor.role.value == "admin" else actor.user_id)
    return [token_out(r) for r in rows]


@router.post("/tokens", response_model=TokenCreated, status_code=201,
             summary="Create an API token with your permissions (shown once)")
async def create_token(body: TokenIn, actor: CurrentActor, services: ServicesDep) -> TokenCreated:
    async with services.db.transaction(write=True) as session:
        row, token = await auth_actions.create_token(session, actor.user_id, body.name)
    return TokenCreated(**token_out(row).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an API token")
async def revoke_token(token_id: Id, actor: CurrentActor, services: ServicesDep) -> Response:
    async with services.db.transaction(write=True) as session:
        await auth_actions.revoke_token(session, token_id,
                                        owner_id=None if actor.role.value == "admin" else actor.user_id)
    return Response(status_code=204)


__all__ = ["router", "problem"]
