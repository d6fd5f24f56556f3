"""The agent desk: inbox views with filters and search, the Queue view (routing tasks waiting in the
agent's queues, taken by hand), the conversation (timeline, composer, actions), the customer sidebar,
presence and wrap-up. Pages are server-rendered; HTMX swaps partials (the list, the
conversation pane, new messages) and static/live.js fetches them when the event stream says something
changed. Writes take the session cookie plus the CSRF token (``X-CSRF-Token``, sent by HTMX on every
request, or the ``csrf_token`` form field) through ``web.deps.current_actor``."""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from threadline.actions import attachments as attachment_actions
from threadline.actions import auth as auth_actions
from threadline.actions import contacts as contact_actions
from threadline.actions import continuity as continuity_actions
from threadline.actions import conversations as conv_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions import routing as routing_actions
from threadline.actions import users as user_actions
from threadline.actions.views import conversation_view, conversation_views, message_view
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import desk as desk_repo
from threadline.db.repos import queue_view
from threadline.db.session import Session
from threadline.domain import events as domain_events
from threadline.domain.access import Actor
from threadline.domain.conversations import ConversationStatus, Priority
from threadline.domain.errors import DomainError, NotFound, ValidationFailed
from threadline.domain.ids import MAX_ID, Id, IdOrZero, parse_id
from threadline.queries import auth as auth_queries
from threadline.queries import desk as desk_queries
from threadline.queries.kept import kept, viewer
from threadline.services import Services
from threadline.web.deps import SESSION_COOKIE, ServicesDep, client_ip, current_actor, set_session_cookie
from threadline.web.desk.common import HERE, actor_or_none, is_htmx, render
from threadline.web.limits import DESK_FILE_BYTES, DESK_FILES, DESK_REPLY_FILES_BYTES

router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=str(HERE / "static"))
PAGE_KEPT_SECONDS = 10  # a kept desk page older than this is produced again (its relative times)
PAGE_SIZE = 60  # rows per page of the conversation list ("Load more" / scrolling appends the next)
MAX_REFRESH_ROWS = 300  # a live refresh redraws at most this many rows from the top (see _list_ctx)
ActorDep = Depends(current_actor)

VIEWS = {"mine": "Mine", "unassigned": "Unassigned", "all": "All"}
QUEUE_VIEW = desk_queries.QUEUE_VIEW  # the Queue view: routing tasks waiting in my queues, taken by hand
STATUS_FILTERS = {"open": "Open", "pending": "Pending", "snoozed": "Snoozed", "resolved": "Resolved", "any": "Any"}


@router.get("/static/desk/{path:path}")
async def desk_static(path: str, request: Request) -> Response:
    return await static.get_response(path, request.scope)


# --- log in / out -----------------------------------------------------------------------------------------

def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True
    return urlparse(origin).netloc == request.headers.get("host")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    return render(request, "login.html", {"error": None, "email": ""})


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, services: ServicesDep, email: str = Form(max_length=320),
                       password: str = Form(max_length=1024)) -> Response:
    if not _same_origin(request):
        return render(request, "login.html", {"error": "Cross-site login refused.", "email": email}, 403)
    try:
        _, token, _ = await auth_queries.login(services, email, password, client_ip(request),
                                               request.headers.get("user-agent", ""))
    except DomainError as exc:
        return render(request, "login.html", {"error": exc.message, "email": email}, exc.status)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, services, token)
    return response


@router.post("/logout")
async def logout(request: Request, services: ServicesDep, csrf_token: str = Form("", max_length=200)) -> Response:
    """End this browser session: the session is deleted on the server, then the cookie. A valid session
    needs its CSRF token (another site cannot log the agent out); without it nothing changes (403). A
    request with no valid session only clears what it sent."""
    actor, csrf = await actor_or_none(request, services)
    if actor is not None:
        if not csrf or not hmac.compare_digest(csrf.encode(), csrf_token.encode()):
            return render(request, "error.html", {"title": "Log out refused", "message":
                          "The log-out form's security token did not match: use the button in Threadline.",
                          "back": "/", "csrf": ""}, 403)
        async with services.db.transaction(write=True) as session:
            await auth_actions.logout(session, request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/login", status_code=303)
    if SESSION_COOKIE in request.cookies:  # a request that sent no cookie changes none
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=services.settings.secure_cookies)
    return response


# --- what the desk shows ----------------------------------------------------------------------------------

@dataclass
class ListParams:
    view: str = "mine"
    queue: int | None = None
    status: str = "open"
    channel: int | None = None
    label: str = ""
    priority: str = ""
    q: str = ""

    @classmethod
    def from_request(cls, request: Request) -> ListParams:
        qp = request.query_params

        def num(key: str) -> int | None:
            v = qp.get(key, "")
            return parse_id(v)

        view = qp.get("view", "mine")
        status = qp.get("status", "open")
        priority = qp.get("priority", "")
        return cls(view=view if view in (*VIEWS, "queue", QUEUE_VIEW) else "mine", queue=num("queue"),
                   status=status if status in STATUS_FILTERS else "open", channel=num("channel"),
                   label=qp.get("label", "").strip().lower()[:63],
                   priority=priority if priority in {p.value for p in Priority} else "",
                   q=qp.get("q", "").strip()[:200])

    def query(self, **override: Any) -> str:
        values = {"view": self.view, "queue": self.queue, "status": self.status, "channel": self.channel,
                  "label": self.label, "priority": self.priority, "q": self.q, **override}
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})

    def filter(self, actor: Actor) -> conv_repo.ConversationFilter:
        statuses = {"open": list(desk_repo.OPEN_STATUSES), "any": []}.get(self.status, [self.status])
        flt = conv_repo.ConversationFilter(
            status=statuses, priority=[self.priority] if self.priority else [], label=self.label or None,
            channel_instance_id=self.channel,
            visible_to=actor.visibility)
        if self.view == "mine":
            flt.assignee_id = actor.user_id
        elif self.view == "unassigned":
            flt.unassigned = True
        elif self.view == "queue" and self.queue is not None:
            flt.queue_id = self.queue
        return flt


async def _base_ctx(session: Session, actor: Actor, csrf: str | None, *, counts: bool = True) -> dict[str, Any]:
    return {
        "actor": actor, "csrf": csrf or "", **await desk_queries.directory(session, actor),
        "counts": await desk_queries.view_counts(session, actor) if counts else {},
        "now": datetime.now(UTC),
        "typing_enabled": hasattr(domain_events, "ConversationTyping"),
    }


def _refresh_limit(request: Request) -> int:
    """How many rows a redraw of the list brings back. live.js refreshes the list on events; it sends
    ``shown`` (the rows the agent has loaded) so the rows appended by "Load more" stay in place rather
    than vanishing under the agent. Rounded up to whole pages and capped at MAX_REFRESH_ROWS: past that
    the redraw is the first MAX_REFRESH_ROWS rows again with a "Load more" after them (a refresh never
    leaves the list without a way to the rest)."""
    shown = request.query_params.get("shown", "")
    n = int(shown) if shown.isdigit() and len(shown) < 6 else 0
    pages = max(1, -(-n // PAGE_SIZE))
    return min(pages * PAGE_SIZE, MAX_REFRESH_ROWS)


async def _list_ctx(session: Session, actor: Actor, params: ListParams, *, cursor: str | None = None,
                    limit: int | None = None) -> dict[str, Any]:
    """One page of the list: the first (``cursor`` None) or the one after ``cursor`` (an appended page:
    rows and the next "Load more" only). ``next_cursor`` is None on the last page."""
    rows, next_cursor = await desk_repo.search_conversations(session, params.filter(actor), params.q,
                                                             limit or PAGE_SIZE, cursor)
    last = await desk_repo.last_messages(session, [r.id for r in rows])
    return {"conversations": await conversation_views(session, rows), "previews": last, "params": params,
            "next_cursor": next_cursor, "appending": cursor is not None,
            "labels": [] if cursor else await desk_repo.all_labels(session)}


async def _queue_ctx(session: Session, actor: Actor, params: ListParams) -> dict[str, Any]:
    """The Queue view's rows: what waits in the actor's queues (a queue filter only narrows it)."""
    queue = params.queue if actor.visibility.serves(params.queue) else None
    return {"items": await queue_view.queue_items(session, actor.visibility, queue), "params": params,
            "now_ts": time.time()}


@router.get("/", response_class=HTMLResponse)
@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
async def desk(request: Request, services: ServicesDep, conversation_id: Id | None = None) -> Response:
    actor, csrf = await actor_or_none(request, services)
    if actor is None:
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)
    # The page is kept while the database is unchanged (db/cache.py), per viewer and session (the page
    # carries its CSRF token), URL, htmx target and language; it says "3 min ago", so a copy older than
    # PAGE_KEPT_SECONDS is produced again in the background while it still answers.
    h = request.headers
    key = ("desk", viewer(actor), csrf, request.url.path, request.url.query, h.get("hx-request"),
           h.get("hx-target"), h.get("hx-history-restore-request"), h.get("accept-language"))

    async def page() -> bytes:
        response = await _desk_page(request, services, actor, csrf, conversation_id)
        if response.status_code != 200 or not isinstance(response, HTMLResponse):
            raise _NotKept(response)
        return bytes(response.body)

    try:
        return HTMLResponse(await kept(services.db, key, page, refresh_after=PAGE_KEPT_SECONDS))
    except _NotKept as answer:
        return answer.response


class _NotKept(Exception):
    """A page that is not kept (not found, an error): its response, as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


async def _desk_page(request: Request, services: Services, actor: Actor, csrf: str | None,
                     conversation_id: Id | None) -> Response:
    params = ListParams.from_request(request)
    waiting = params.view == QUEUE_VIEW
    async with services.db.transaction(write=False) as session:
        if is_htmx(request, "list-more") and not waiting:  # "Load more": the next page, appended
            listed = await _list_ctx(session, actor, params, cursor=request.query_params.get("after") or None)
            ctx = {**await _base_ctx(session, actor, csrf, counts=False), **listed,
                   "current": None, "current_id": conversation_id}
            return render(request, "partials/list.html", ctx)
        if is_htmx(request, "list"):
            listed = await (_queue_ctx(session, actor, params) if waiting
                            else _list_ctx(session, actor, params, limit=_refresh_limit(request)))
            ctx = {**await _base_ctx(session, actor, csrf, counts=False), **listed,
                   "current": None, "current_id": conversation_id}
            return render(request, "partials/queue.html" if waiting else "partials/list.html", ctx)
        ctx = await _base_ctx(session, actor, csrf, counts=not is_htmx(request, "pane"))
        ctx.update(current=None, current_id=conversation_id, error=None)
        status = 200
        if conversation_id is not None:
            try:
                ctx.update(await desk_queries.conversation_page(session, actor, conversation_id))
            except NotFound:
                ctx["error"], status = "That conversation does not exist, or it is not yours to see.", 404
        if is_htmx(request, "pane"):
            return render(request, "partials/pane.html", ctx, status)
        ctx.update(await (_queue_ctx if waiting else _list_ctx)(session, actor, params))
        ctx.update(await desk_queries.running_wrap_ups(session, actor))
    return render(request, "desk.html", ctx, status)


async def _page_actor(request: Request, services: ServicesDep) -> tuple[Actor, str | None]:
    actor, csrf = await actor_or_none(request, services)
    if actor is None:
        from threadline.web.deps import NotAuthenticated

        raise NotAuthenticated("log in again")
    return actor, csrf


@router.get("/desk/p/counts", response_class=HTMLResponse)
async def counts_partial(request: Request, services: ServicesDep) -> Response:
    actor, csrf = await _page_actor(request, services)
    params = ListParams.from_request(request)
    async with services.db.transaction(write=False) as session:
        ctx = {**await _base_ctx(session, actor, csrf), "params": params}
    return render(request, "partials/nav.html", ctx)


@router.get("/desk/p/wrapups", response_class=HTMLResponse)
async def wrapups_partial(request: Request, services: ServicesDep) -> Response:
    """The wrap-up indicator next to the presence control (live.js refetches it on routing.wrap_up)."""
    actor, csrf = await _page_actor(request, services)
    async with services.db.transaction(write=False) as session:
        ctx = {"csrf": csrf or "", **await desk_queries.running_wrap_ups(session, actor)}
    return render(request, "partials/wrapups.html", ctx)


@router.get("/desk/p/conversations/{conversation_id}/{part}", response_class=HTMLResponse)
async def conversation_part(conversation_id: Id, part: str, request: Request, services: ServicesDep,
                            after: IdOrZero = 0) -> Response:
    """Pieces of the open conversation that live.js refreshes: header, sidebar, or new messages."""
    if part not in ("header", "sidebar", "messages"):
        raise NotFound("no such part")
    actor, csrf = await _page_actor(request, services)
    async with services.db.transaction(write=False) as session:
        ctx = await _base_ctx(session, actor, csrf, counts=False)
        if part == "messages":
            conv = actor.check_can_see(await conv_repo.get_conversation(session, conversation_id), conversation_id)
            ctx["current"] = await conversation_view(session, conv)
            ctx["messages"] = [message_view(m) for m in await desk_repo.messages_after(session, conv.id, after)]
            ctx["prev_channel_id"] = await desk_repo.last_channel_before(session, conv.id, after) if after else None
            ctx["ident_by_id"] = {i.id: i for i in
                                  (await contacts_repo.identities_of(session, [conv.contact_id]))[conv.contact_id]}
            ctx["channel_titles"] = {c.id: desk_queries.channel_title(c.kind) for c in ctx["channels"].values()}
            return render(request, "partials/messages.html", ctx)
        ctx.update(await desk_queries.conversation_page(session, actor, conversation_id))
    return render(request, f"partials/{part}.html", ctx)


@router.get("/desk/p/messages/{message_id}", response_class=HTMLResponse)
async def message_partial(message_id: Id, request: Request, services: ServicesDep) -> Response:
    actor, csrf = await _page_actor(request, services)
    async with services.db.transaction(write=False) as session:
        msg = await conv_repo.get_message(session, message_id)
        if msg is None:
            raise NotFound(f"message {message_id} does not exist")
        conv = actor.check_can_see(await conv_repo.get_conversation(session, msg.conversation_id), msg.conversation_id)
        ctx = await _base_ctx(session, actor, csrf, counts=False)
        ctx.update(current=await conversation_view(session, conv), messages=[message_view(msg)],
                   ident_by_id={i.id: i for i in
                                (await contacts_repo.identities_of(session, [conv.contact_id]))[conv.contact_id]},
                   channel_titles={c.id: desk_queries.channel_title(c.kind) for c in ctx["channels"].values()})
    return render(request, "partials/messages.html", ctx)


# --- actions (HTMX posts; errors are problem documents that live.js shows as a toast) --------------------

def _changed(conversation_id: int | None = None, message: str = "", contact_id: int | None = None) -> Response:
    """204 plus an HX-Trigger telling live.js to refresh what the change touched."""
    detail: dict[str, Any] = {"conversation_id": conversation_id, "contact_id": contact_id}
    if message:
        detail["toast"] = message
    return Response(status_code=204, headers={"HX-Trigger": json.dumps({"desk:changed": detail})})


def _opt_int(value: object, field: str) -> int | None:
    text = str(value or "").strip()
    if text in ("", "none"):
        return None
    value = parse_id(text)
    if value is None:
        raise ValidationFailed(f"{field} must be an id (a number from 1 to {MAX_ID})", field=field)
    return value


@router.post("/desk/conversations/{conversation_id}/reply")
async def desk_reply(conversation_id: Id, request: Request, services: ServicesDep,
                     actor: Actor = ActorDep) -> Response:
    form = await request.form()
    text = str(form.get("text", ""))
    kind = str(form.get("kind", "reply"))
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    target = str(form.get("target", "") or "")
    channel_id = identity_id = None
    if target:
        chan, _, ident = target.partition(":")
        channel_id, identity_id = _opt_int(chan, "target"), _opt_int(ident, "target")
    async with services.db.transaction(write=True) as session:
        if kind == "note":
            if files:
                raise ValidationFailed("notes cannot carry attachments; send them as a reply", field="files")
            await conv_actions.add_note(session, actor, conversation_id, text)
        else:
            actor.check_can_see(await conv_repo.get_conversation(session, conversation_id), conversation_id)
            if len(files) > DESK_FILES:
                raise ValidationFailed(f"a reply carries at most {DESK_FILES} files", field="files")
            stored, total = [], 0
            for upload in files:
                data = await upload.read(DESK_FILE_BYTES + 1)
                if len(data) > DESK_FILE_BYTES:
                    raise ValidationFailed(f"{upload.filename or 'a file'} is larger than {DESK_FILE_BYTES // 1_000_000} "
                                           "MB, the limit for one file", field="files")
                total += len(data)
                if total > DESK_REPLY_FILES_BYTES:
                    raise ValidationFailed(f"the files add up to more than {DESK_REPLY_FILES_BYTES // 1_000_000} MB, "
                                           "the limit for one reply", field="files")
                row = await attachment_actions.store_attachment(
                    session, services.files, data, name=upload.filename or "file",
                    content_type=upload.content_type or "application/octet-stream",
                    conversation_id=conversation_id, max_bytes=DESK_FILE_BYTES)
                stored.append(attachment_actions.describe(row))
            await outbound_actions.send_reply(session, actor, conversation_id, text, attachments=stored,
                                              channel_instance_id=channel_id, identity_id=identity_id)
    return _changed(conversation_id)


def _snooze_until(choice: str, custom: str, now: datetime, tz_offset: str = "") -> datetime:
    if choice == "1h":
        return now + timedelta(hours=1)
    if choice == "4h":
        return now + timedelta(hours=4)
    if choice == "tomorrow":
        return (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    if choice == "week":
        return (now + timedelta(days=7 - now.weekday())).replace(hour=9, minute=0, second=0, microsecond=0)
    try:
        value = datetime.fromisoformat(custom)
    except ValueError:
        raise ValidationFailed("pick when the conversation wakes up", field="snooze_until") from None
    if value.tzinfo:
        return value
    # a datetime-local input is in the agent's zone; the browser sends its offset (minutes behind UTC)
    offset = int(tz_offset) if tz_offset.lstrip("-").isdigit() and abs(int(tz_offset)) <= 24 * 60 else 0
    return value.replace(tzinfo=UTC) + timedelta(minutes=offset)


@router.post("/desk/conversations/{conversation_id}/update")
async def desk_update(conversation_id: Id, request: Request, services: ServicesDep,
                      actor: Actor = ActorDep) -> Response:
    form = await request.form()
    changes: dict[str, Any] = {}
    if form.get("status"):
        status = str(form["status"])
        if status not in {s.value for s in ConversationStatus}:
            raise ValidationFailed("unknown status", field="status")
        changes["status"] = status
        if status == "snoozed":
            changes["snoozed_until"] = _snooze_until(str(form.get("snooze", "")), str(form.get("snooze_until", "")),
                                                     datetime.now(UTC), str(form.get("tz_offset", "")))
    if "assign" in form:
        value = str(form["assign"])
        changes["assignee_id"] = actor.user_id if value == "me" else _opt_int(value, "assign")
    if form.get("priority"):
        changes["priority"] = str(form["priority"])
    if "labels" in form:
        changes["labels"] = [lb for lb in (s.strip() for s in str(form["labels"]).split(",")) if lb]
    if "add_label" in form and str(form["add_label"]).strip():
        async with services.db.transaction(write=False) as session:
            current = (await conv_repo.labels_of(session, [conversation_id])).get(conversation_id, [])
        changes["labels"] = [*current, str(form["add_label"]).strip()]
    if "remove_label" in form:
        async with services.db.transaction(write=False) as session:
            current = (await conv_repo.labels_of(session, [conversation_id])).get(conversation_id, [])
        changes["labels"] = [lb for lb in current if lb != str(form["remove_label"])]
    async with services.db.transaction(write=True) as session:
        await conv_actions.update_conversation(session, actor, conversation_id, **changes)
    return _changed(conversation_id)


@router.post("/desk/conversations/{conversation_id}/transfer")
async def desk_transfer(conversation_id: Id, request: Request, services: ServicesDep,
                        actor: Actor = ActorDep) -> Response:
    form = await request.form()
    kind, _, raw = str(form.get("target", "")).partition(":")
    target_id = _opt_int(raw, "target")
    if kind not in ("user", "team", "queue") or target_id is None:
        raise ValidationFailed("pick an agent, a team or a queue to transfer to", field="target")
    key = {"user": "assignee_id", "team": "team_id", "queue": "queue_id"}[kind]
    async with services.db.transaction(write=True) as session:
        await conv_actions.transfer_conversation(session, actor, conversation_id, note=str(form.get("note", "")),
                                                 **{key: target_id})
    return _changed(conversation_id, "Conversation transferred")


@router.post("/desk/contacts/{contact_id}")
async def desk_contact(contact_id: Id, request: Request, services: ServicesDep, actor: Actor = ActorDep) -> Response:
    """Edit a customer's name and attributes (whoever may see the contact: ``permissions.visible_contact``,
    checked by ``update_contact``)."""
    form = await request.form()
    async with services.db.transaction(write=True) as session:
        attrs: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key.startswith("attr:"):
                attrs[key[5:]] = str(value).strip() or None
        new_key, new_value = str(form.get("new_key", "")).strip(), str(form.get("new_value", "")).strip()
        if new_key:
            attrs[new_key] = new_value or None
        name = form.get("name")
        await contact_actions.update_contact(session, contact_id, name=str(name) if name is not None else None,
                                             attributes=attrs or None, actor=actor)
    return _changed(None, "Contact saved", contact_id=contact_id)


@router.post("/desk/contacts/{contact_id}/merge")
async def desk_merge_contact(contact_id: Id, request: Request, services: ServicesDep,
                             actor: Actor = ActorDep) -> Response:
    """Accept a merge suggestion: the other contact is merged into this one (undo through the API)."""
    form = await request.form()
    source_id = _opt_int(form.get("source_id"), "source_id")
    if source_id is None:
        raise ValidationFailed("say which contact to merge into this one", field="source_id")
    async with services.db.transaction(write=True) as session:
        merge = await continuity_actions.merge_contacts(session, actor, source_id, contact_id)
    return _changed(None, f"Contacts merged (merge #{merge.id}; it can be undone)", contact_id=contact_id)


@router.post("/desk/merge-suggestions/{suggestion_id}/dismiss")
async def desk_dismiss_suggestion(suggestion_id: Id, request: Request, services: ServicesDep,
                                  actor: Actor = ActorDep) -> Response:
    form = await request.form()
    async with services.db.transaction(write=True) as session:
        await continuity_actions.dismiss_suggestion(session, actor, suggestion_id)
    return _changed(None, "Suggestion dismissed", contact_id=_opt_int(form.get("contact_id"), "contact_id"))


@router.post("/desk/presence")
async def desk_presence(request: Request, services: ServicesDep, actor: Actor = ActorDep) -> Response:
    form = await request.form()
    status = str(form.get("presence", ""))
    reason = str(form.get("reason", "")).strip()[:100]
    if ":" in status:
        status, _, reason = status.partition(":")
    async with services.db.transaction(write=True) as session:
        await user_actions.set_presence(session, actor.user_id, status, reason if status == "break" else "")
    return _changed(None)


# --- routing: take a waiting conversation by hand, end a wrap-up -----------------------------------------

def _back_to_queue(request: Request) -> str:
    """The Queue view's filters the agent was on (from htmx's HX-Current-URL), to open the taken
    conversation next to the same list."""
    current = urlparse(request.headers.get("hx-current-url", ""))
    if current.netloc and current.netloc != request.headers.get("host"):
        return f"view={QUEUE_VIEW}"
    queue = (parse_qs(current.query).get("queue") or [""])[0]
    return urlencode({"view": QUEUE_VIEW, **({"queue": queue} if parse_id(queue) else {})})


@router.post("/desk/queue/{conversation_id}/take")
async def desk_take(conversation_id: Id, request: Request, services: ServicesDep,
                    actor: Actor = ActorDep) -> Response:
    """Take a conversation waiting in a queue I serve (supervisors: any queue), then open it. Refusals
    (no free slot, already taken, not my queue) are problem documents that live.js shows as a toast."""
    async with services.db.transaction(write=True) as session:
        await routing_actions.pick_task(session, actor, conversation_id)
    path = f"/conversations/{conversation_id}?{_back_to_queue(request)}"
    return Response(status_code=204, headers={
        "HX-Trigger": json.dumps({"desk:changed": {"conversation_id": conversation_id,
                                                   "toast": f"Conversation #{conversation_id} is yours"}}),
        "HX-Location": json.dumps({"path": path, "target": "#pane"})})


@router.post("/desk/wrap-ups/{conversation_id}/ready")
async def desk_wrapup_ready(conversation_id: Id, request: Request, services: ServicesDep,
                            actor: Actor = ActorDep) -> Response:
    """The agent is done with after-contact work before the timer: the router frees the slot."""
    async with services.db.transaction(write=True) as session:
        await routing_actions.end_wrap_up(session, actor, conversation_id)
    return Response(status_code=204, headers={"HX-Trigger": json.dumps({
        "desk:changed": {"conversation_id": None, "toast": "Ready for the next conversation"},
        "desk:wrapup-ended": {"conversation_id": conversation_id}})})
