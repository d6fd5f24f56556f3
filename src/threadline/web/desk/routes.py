"""Desk pages: log in, inbox, conversation with reply/note, presence. Forms post back and redirect;
a small script listens to the live stream and refreshes the page when something relevant changes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from threadline.actions import auth as auth_actions
from threadline.actions import conversations as conv_actions
from threadline.actions import messages as message_actions
from threadline.actions import users as user_actions
from threadline.actions.views import conversation_view, conversation_views, message_view
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import users as users_repo
from threadline.domain.errors import DomainError
from threadline.web.api.auth import do_login, set_session_cookie
from threadline.web.deps import SESSION_COOKIE, ServicesDep, authenticate

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=str(HERE / "static"))


@router.get("/static/desk/{path:path}")
async def desk_static(path: str, request: Request) -> Response:
    return await static.get_response(path, request.scope)


async def _actor_or_none(request: Request, services):  # type: ignore[no-untyped-def]
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None, None
    try:
        return await authenticate(services, cookie=cookie)
    except DomainError:
        return None, None


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True
    return urlparse(origin).netloc == request.headers.get("host")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": None, "email": ""})


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, services: ServicesDep, email: str = Form(max_length=320),
                       password: str = Form(max_length=1024)) -> Response:
    if not _same_origin(request):
        return templates.TemplateResponse(request, "login.html", {"error": "Cross-site login refused.",
                                                                  "email": email}, status_code=403)
    try:
        _, token, _ = await do_login(services, email, password, request)
    except DomainError as exc:
        return templates.TemplateResponse(request, "login.html", {"error": exc.message, "email": email},
                                          status_code=exc.status)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, services, token)
    return response


@router.post("/logout")
async def logout(request: Request, services: ServicesDep, csrf_token: str = Form("")) -> Response:
    actor, csrf = await _actor_or_none(request, services)
    if actor is not None and csrf == csrf_token:
        async with services.db.transaction(write=True) as session:
            await auth_actions.logout(session, request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
async def desk(request: Request, services: ServicesDep, conversation_id: int | None = None,
               view: str = "mine") -> Response:
    actor, csrf = await _actor_or_none(request, services)
    if actor is None:
        return RedirectResponse("/login", status_code=303)
    flt = conv_repo.ConversationFilter(
        status=["open", "pending", "snoozed"],
        visible_to=None if actor.sees_everything else (actor.user_id, actor.queue_ids, actor.team_ids))
    if view == "mine":
        flt.assignee_id = actor.user_id
    elif view == "unassigned":
        flt.unassigned = True
    elif view == "resolved":
        flt.status = ["resolved"]
    ctx: dict[str, object] = {"csrf": csrf, "view": view, "current": None, "messages": [], "contact": None}
    async with services.db.transaction(write=False) as session:
        me = await users_repo.get_user(session, actor.user_id)
        rows, _ = await conv_repo.list_conversations(session, flt, None, 50)
        ctx["conversations"] = await conversation_views(session, rows)
        ctx["users"] = {u.id: u for u in await users_repo.list_users(session)}
        ctx["queues"] = {q.id: q for q in await users_repo.list_queues(session)}
        ctx["channels"] = {c.id: c for c in await channels_repo.list_channels(session)}
        if conversation_id is not None:
            conv = await conv_repo.get_conversation(session, conversation_id)
            if conv is None or not actor.can_see(conv):
                return templates.TemplateResponse(request, "desk.html", {**ctx, "me": me, "actor": actor,
                                                  "error": "That conversation does not exist."}, status_code=404)
            ctx["current"] = await conversation_view(session, conv)
            msgs, _ = await conv_repo.list_messages(session, conv.id, None, 500)
            ctx["messages"] = [message_view(m) for m in msgs]
            contact = await contacts_repo.get_contact(session, conv.contact_id)
            ctx["contact"] = contact
            ctx["identities"] = (await contacts_repo.identities_of(session, [conv.contact_id]))[conv.contact_id]
    return templates.TemplateResponse(request, "desk.html", {**ctx, "me": me, "actor": actor, "error": None})


async def _form_action(request: Request, services, fn) -> Response:  # type: ignore[no-untyped-def]
    actor, csrf = await _actor_or_none(request, services)
    if actor is None:
        return RedirectResponse("/login", status_code=303)
    form = await request.form()
    if form.get("csrf_token") != csrf:
        return HTMLResponse("CSRF check failed: reload the page and try again.", status_code=403)
    back = str(form.get("back") or "/")
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    try:
        async with services.db.transaction(write=True) as session:
            await fn(session, actor, form)
    except DomainError as exc:
        return templates.TemplateResponse(request, "error.html", {"message": exc.message, "back": back},
                                          status_code=exc.status)
    except ValueError:
        return templates.TemplateResponse(request, "error.html", {"message": "That form value is not valid.",
                                                                  "back": back}, status_code=400)
    return RedirectResponse(back, status_code=303)


@router.post("/desk/conversations/{conversation_id}/reply")
async def desk_reply(conversation_id: int, request: Request, services: ServicesDep) -> Response:
    async def run(session, actor, form):  # type: ignore[no-untyped-def]
        text = str(form.get("text", ""))
        if form.get("kind") == "note":
            await message_actions.add_note(session, actor, conversation_id, text)
        else:
            await message_actions.send_reply(session, actor, conversation_id, text)
    return await _form_action(request, services, run)


@router.post("/desk/conversations/{conversation_id}/update")
async def desk_update(conversation_id: int, request: Request, services: ServicesDep) -> Response:
    async def run(session, actor, form):  # type: ignore[no-untyped-def]
        changes: dict[str, object] = {}
        if form.get("status"):
            changes["status"] = str(form["status"])
        if "assign" in form:
            value = str(form["assign"])
            changes["assignee_id"] = None if value in ("", "none") else int(value)
        await conv_actions.update_conversation(session, actor, conversation_id, **changes)
    return await _form_action(request, services, run)


@router.post("/desk/presence")
async def desk_presence(request: Request, services: ServicesDep) -> Response:
    async def run(session, actor, form):  # type: ignore[no-untyped-def]
        status, _, reason = str(form.get("presence", "")).partition(":")
        await user_actions.set_presence(session, actor.user_id, status, reason)
    return await _form_action(request, services, run)
