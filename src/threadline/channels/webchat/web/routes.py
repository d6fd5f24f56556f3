"""The visitor-facing web chat endpoints (``/widget…``), the widget script and the demo shop page.

Every call names its channel (``?channel=<key>``); a browser's ``Origin`` must be one of the channel's
allowed origins (others get 403, and the widget stays hidden). Requests are CORS "simple requests"
(JSON sent as text/plain, the visitor token in the body or query, no custom headers), so no preflight
is needed; answers carry ``Access-Control-Allow-Origin`` for the allowed origin only.

A visitor message is stored like any provider request: the endpoint builds a ``RawRequest`` signed by
the channel adapter and hands it to the inbox (``Host.store_inbound``), which persists and processes
it in one group-committed transaction before we answer. Visitor text is only ever text: the widget
renders it with ``textContent``, never as HTML.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from threadline import jsonguard
from threadline.actions import attachments as attachment_actions
from threadline.actions import continuity as continuity_actions
from threadline.actions import csat as csat_actions
from threadline.channels.base import InvalidSignature
from threadline.channels.webchat import actions as webchat_actions
from threadline.channels.webchat import repo, verification
from threadline.channels.webchat.adapter import VisitorSession, WebChatChannel
from threadline.channels.webchat.web import live
from threadline.db.models import AttachmentRow, CsatResponseRow, MessageRow
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import csat as csat_repo
from threadline.db.repos import files as files_repo
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.types import utcnow
from threadline.domain.errors import DomainError
from threadline.domain.ids import Id
from threadline.domain.queues import QueueSettings
from threadline.domain.ratelimit import RateLimiter
from threadline.plugins.host import Channel, Host

router = APIRouter(tags=["web chat (visitors)"], include_in_schema=True)
STATIC = Path(__file__).parent / "static"
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}
MAX_TEXT = 10_000
SCOPE_KEY = "threadline.webchat"  # where a request finds its process's web chat runtime (``bound``)


@dataclass
class WebChat:
    """The web chat runtime of one process: its host, the visitors' live hub, the rate limiter (per
    process: with ``serve --workers N`` a visitor may get up to N times the limit)."""

    host: Host
    hub: live.VisitorHub
    limiter: RateLimiter


def bound(web: WebChat) -> APIRouter:
    """The visitor endpoints, bound to one process's runtime (each request carries it in its scope)."""
    async def bind(conn: HTTPConnection) -> None:
        conn.scope[SCOPE_KEY] = web

    api = APIRouter(dependencies=[Depends(bind)])
    api.include_router(router)
    return api


def runtime(conn: HTTPConnection) -> WebChat:
    return conn.scope[SCOPE_KEY]


class Refused(Exception):
    def __init__(self, status: int, detail: str, code: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


@dataclass
class Ctx:
    web: WebChat
    channel: Channel
    adapter: WebChatChannel
    origin: str | None
    limiter: RateLimiter

    def answer(self, body: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=cors(self.origin))


def cors(origin: str | None) -> dict[str, str]:
    headers = {"Vary": "Origin", "Cache-Control": "no-store"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def effective_origin(headers: Any, url_scheme: str) -> tuple[str | None, bool]:
    """(origin, is_browser). Browsers send Origin on cross-origin calls and on same-origin POSTs; a
    same-origin GET has none (``Sec-Fetch-Site: same-origin``): it counts as our own origin."""
    origin = headers.get("origin")
    if origin:
        return origin, True
    site = headers.get("sec-fetch-site")
    if site is None:
        return None, False  # not a browser: the origin check protects browsers' users only
    if site in ("same-origin", "none"):
        return f"{url_scheme}://{headers.get('host', '')}", True
    return None, True


async def _channel(host: Host, key: str | None) -> tuple[Channel, WebChatChannel]:
    channel = await host.channel_by_key(key) if key else None  # enabled channels only
    if channel is None or channel.kind != WebChatChannel.kind:
        raise Refused(404, "This chat is not available.", "unknown_channel")
    adapter = channel.adapter
    assert isinstance(adapter, WebChatChannel)
    return channel, adapter


async def context(request: Request) -> Ctx:
    web = runtime(request)
    origin, browser = effective_origin(request.headers, request.url.scheme)
    channel, adapter = await _channel(web.host, request.query_params.get("channel"))
    if browser and not adapter.origin_allowed(origin):
        raise Refused(403, f"This website ({origin or 'unknown origin'}) may not show this chat.", "origin_not_allowed")
    return Ctx(web, channel, adapter, origin, web.limiter)


async def guarded(request: Request, handler: Any) -> Response:
    origin = request.headers.get("origin")
    try:
        ctx = await context(request)
        return await handler(ctx, request)
    except Refused as exc:
        # readable by the refused site too, so its console says why the chat does not show
        return problem(exc.status, exc.detail, exc.code, origin)
    except DomainError as exc:
        return problem(exc.status, exc.message, exc.code, origin)


def problem(status: int, detail: str, code: str, origin: str | None) -> JSONResponse:
    """An RFC 9457 problem document, as the rest of the API answers, with the widget's ``code`` kept."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail, "code": code}
    return JSONResponse(body, status_code=status, headers=cors(origin), media_type="application/problem+json")


def _body(raw: bytes, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(jsonguard.loads(raw or b"{}"))  # depth-limited: never a RecursionError
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            raise Refused(422, f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", "invalid") from None
        raise Refused(422, "the body is not JSON", "invalid") from None


def _session(ctx: Ctx, token: str | None) -> VisitorSession:
    if not token:
        raise Refused(401, "Start a chat session first.", "no_session")
    try:
        return ctx.adapter.read_token(token)
    except InvalidSignature:
        raise Refused(401, "This chat session is not valid any more; reload the page.", "bad_session") from None


def _limit(ctx: Ctx, key: Any, limit: int, what: str) -> None:
    if not ctx.limiter.allow((ctx.channel.id, key), limit):
        raise Refused(429, f"You're {what} too fast; please wait a moment.", "rate_limited")


@dataclass
class VisitorState:
    contact_id: int | None
    identity_id: int | None
    conversation_id: int | None


async def _state(session: AsyncSession, ctx: Ctx, vs: VisitorSession) -> VisitorState:
    ident = await contacts_repo.find_identity(session, ctx.adapter.visitor_identity(vs))
    if ident is None:
        return VisitorState(None, None, None)
    conv_id = await repo.visitor_conversation_id(session, ctx.channel.id, ident.id)
    return VisitorState(ident.contact_id, ident.id, conv_id)


def _view(row: Any, visitor_id: str, names: dict[int, str]) -> dict[str, Any]:
    return live.visitor_message({"id": row.id, "conversation_id": row.conversation_id, "direction": row.direction,
                                 "text": row.text, "attachments": row.attachments, "author_id": row.author_id,
                                 "created_at": row.created_at.isoformat(), "delivery_status": row.delivery_status,
                                 "provider_id": row.provider_id}, visitor_id, names)


# ---------------------------------------------------------------------------------------------------
# The script and the demo page


@router.get("/widget.js", include_in_schema=False)
async def widget_js() -> Response:
    return FileResponse(STATIC / "widget.js", media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"})


@router.get("/demo", include_in_schema=False, response_class=HTMLResponse)
async def demo_page(request: Request) -> Response:
    chans = await runtime(request).host.channels_of_kind(WebChatChannel.kind)
    if not chans:
        return HTMLResponse("<p>No web chat channel yet: run <code>threadline demo</code>.</p>", status_code=404)
    base = str(request.base_url).rstrip("/")
    html = (STATIC / "demo.html").read_text().replace("{{BASE}}", base).replace("{{CHANNEL}}", chans[0].key)
    return HTMLResponse(html)


# ---------------------------------------------------------------------------------------------------
# Visitor endpoints


@router.get("/widget/config", summary="The widget's look and options (public)")
async def widget_config(request: Request) -> Response:
    return await guarded(request, _config)


async def _config(ctx: Ctx, request: Request) -> Response:
    cfg = ctx.adapter.config
    online = await _online(ctx)
    return ctx.answer({
        "title": cfg.title, "greeting": cfg.greeting, "colour": cfg.colour, "position": cfg.position,
        "prechat_fields": cfg.prechat_fields, "prechat_required": cfg.prechat_required,
        "topics": [t["label"] for t in cfg.topics], "languages": cfg.languages, "offline_form": cfg.offline_form,
        "attachments": {"types": cfg.allowed_attachment_types, "max_bytes": cfg.max_attachment_bytes},
        "online": online, "signed_identity": cfg.identity_secret is not None,
        "verify": await ctx.web.host.read(verification.available_kinds),  # confirm a typed address by code
        "calls": cfg.calls,  # voice / video calls in the browser (the voice package's /widget/calls)
    })


async def _online(ctx: Ctx) -> bool:
    """Open (the queues' business hours) and someone available in them (or anywhere, without queues)."""
    queue_ids = {q for q in [ctx.channel.default_queue_id, *(t["queue_id"] for t in ctx.adapter.config.topics)] if q}

    async def online(session: AsyncSession) -> bool:
        queues = await repo.queues(session, sorted(queue_ids))
        now = utcnow()
        if queues and not any(QueueSettings.model_validate(q.settings or {}).hours.is_open(now) for q in queues):
            return False
        return await repo.available_agents(session, [q.id for q in queues] if queues else None) > 0
    return await ctx.web.host.read(online)


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str | None = Field(default=None, max_length=1000)
    user_id: str | None = Field(default=None, max_length=200)
    user_hash: str | None = Field(default=None, max_length=200)


@router.post("/widget/session", summary="Start or resume a visitor session")
async def widget_session(request: Request) -> Response:
    return await guarded(request, _start_session)


async def _start_session(ctx: Ctx, request: Request) -> Response:
    body = _body(await request.body(), SessionIn)
    ip = request.client.host if request.client else "?"
    verified = ctx.adapter.verified_user(body.user_id, body.user_hash)
    current: VisitorSession | None = None
    if body.token:
        try:
            current = ctx.adapter.read_token(body.token)
        except InvalidSignature:
            current = None
    if current is not None and current.user_id == verified:
        token = body.token
        visitor_id = current.visitor_id
    else:  # new visitor, or the host site's user changed (logged in or out): never reuse a history
        _limit(ctx, ("session", ip), 30, "starting chats")
        visitor_id = secrets.token_urlsafe(12)
        token = ctx.adapter.issue_token(visitor_id, verified)
    return ctx.answer({"token": token, "visitor_id": visitor_id, "verified": verified is not None})


@router.get("/widget/history", summary="The visitor's conversation so far, with the stream position")
async def widget_history(request: Request) -> Response:
    return await guarded(request, _history)


async def _history(ctx: Ctx, request: Request) -> Response:
    vs = _session(ctx, request.query_params.get("token"))

    async def history(session: AsyncSession) -> dict[str, Any]:
        seq = await plumbing_repo.max_seq(session)
        st = await _state(session, ctx, vs)
        conversation = None
        rows: list[Any] = []
        if st.conversation_id is not None:
            conv = await conv_repo.get_conversation(session, st.conversation_id)
            rows = list(await repo.visitor_messages(session, st.conversation_id, ctx.channel.id))
            rated = await csat_repo.csat_for_conversation(session, st.conversation_id) is not None
            conversation = {"id": st.conversation_id, "status": conv.status if conv else "resolved", "rated": rated}
        names = await repo.user_names(session, sorted({r.author_id for r in rows if r.author_id}))
        return {"seq": seq, "conversation": conversation, "messages": [_view(r, vs.visitor_id, names) for r in rows]}
    return ctx.answer(await ctx.web.host.read(history))


class Profile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=320)
    phone: str = Field(default="", max_length=64)
    topic: str = Field(default="", max_length=80)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=1000)
    client_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    text: str = Field(default="", max_length=MAX_TEXT)
    attachments: list[str] = Field(default_factory=list, max_length=10)
    profile: Profile = Field(default_factory=Profile)
    offline: bool = False


@router.post("/widget/messages", summary="The visitor sends a message", status_code=201)
async def widget_message(request: Request) -> Response:
    return await guarded(request, _send)


async def _send(ctx: Ctx, request: Request) -> Response:
    body: MessageIn = _body(await request.body(), MessageIn)
    vs = _session(ctx, body.token)
    _limit(ctx, ("msg", vs.visitor_id), ctx.adapter.config.messages_per_minute, "sending messages")
    text = body.text.strip()
    if body.offline:
        if not ctx.adapter.config.offline_form:
            raise Refused(409, "Leaving a message is not enabled here.", "offline_disabled")
        if "@" not in body.profile.email:
            raise Refused(422, "Please give an e-mail address so we can answer you.", "email_required")
    async def state_and_files(session: AsyncSession) -> tuple[VisitorState, Sequence[AttachmentRow]]:
        return await _state(session, ctx, vs), await files_repo.attachments_by_ids(session, body.attachments)
    st, files = await ctx.web.host.read(state_and_files)
    if len(files) != len(set(body.attachments)) or any(
            f.conversation_id is not None and f.conversation_id != st.conversation_id for f in files):
        raise Refused(422, "An attachment was not found; please upload it again.", "unknown_attachment")
    if not text and not files:
        raise Refused(422, "Write a message or attach a file.", "empty")
    payload = {
        "type": "message", "visitor_id": vs.visitor_id, "user_id": vs.user_id, "client_id": body.client_id,
        "name": body.profile.name.strip(), "email": body.profile.email.strip() or None,
        "phone": body.profile.phone.strip() or None, "queue_id": ctx.adapter.queue_for_topic(body.profile.topic),
        "conversation_id": st.conversation_id, "text": text, "offline": body.offline,
        "attachments": [attachment_actions.describe(f) for f in files],
    }
    req = ctx.adapter.signed_request(str(request.url), payload)
    provider_id = f"{vs.visitor_id}:{body.client_id}"
    await ctx.web.host.store_inbound(req, ctx.channel, provider_id)

    async def stored(session: AsyncSession) -> MessageRow | None:
        row = await conv_repo.message_by_provider_id(session, ctx.channel.id, provider_id)
        if row is not None and files:
            await attachment_actions.attach(session, [f.id for f in files], row.conversation_id)
        return row
    host = ctx.web.host
    row = await (host.write(stored) if files else host.read(stored))
    if row is None:  # kept in the inbox and retried: the visitor sees it once processed
        return ctx.answer({"queued": True, "client_id": body.client_id}, 202)
    return ctx.answer(_view(row, vs.visitor_id, {}), 201)


@router.post("/widget/attachments", summary="The visitor uploads a file (multipart, field 'file')",
             status_code=201)
async def widget_upload(request: Request) -> Response:
    return await guarded(request, _upload)


async def _upload(ctx: Ctx, request: Request) -> Response:
    vs = _session(ctx, request.query_params.get("token"))
    _limit(ctx, ("upload", vs.visitor_id), 10, "uploading files")
    cfg = ctx.adapter.config
    form = await request.form(max_files=1)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise Refused(422, "Choose a file to send.", "no_file")
    content_type = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not ctx.adapter.attachment_allowed(content_type):
        raise Refused(415, f"Files of type {content_type} can't be sent here.", "type_not_allowed")
    data = await upload.read(cfg.max_attachment_bytes + 1)
    await upload.close()
    if len(data) > cfg.max_attachment_bytes:
        raise Refused(413, f"This file is too large (the limit is {_size(cfg.max_attachment_bytes)}).", "too_large")
    row = await ctx.web.host.write(attachment_actions.store_attachment, ctx.web.host.files, data,
                                   name=upload.filename or "file", content_type=content_type,
                                   max_bytes=cfg.max_attachment_bytes)
    return ctx.answer({"id": row.id, "name": row.name, "content_type": row.content_type, "size": row.size,
                       "url": f"/widget/attachments/{row.id}"}, 201)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


@router.get("/widget/attachments/{attachment_id}", summary="The visitor downloads a file of their conversation")
async def widget_download(attachment_id: str, request: Request) -> Response:
    async def handler(ctx: Ctx, request: Request) -> Response:
        vs = _session(ctx, request.query_params.get("token"))

        async def lookup(session: AsyncSession) -> tuple[Any, VisitorState, Any]:
            row = await files_repo.get_attachment(session, attachment_id)
            st = await _state(session, ctx, vs)
            conv = await conv_repo.get_conversation(session, row.conversation_id) if row and row.conversation_id \
                else None
            return row, st, conv
        row, st, conv = await ctx.web.host.read(lookup)
        files = ctx.web.host.files
        if row is None or conv is None or st.contact_id is None or conv.contact_id != st.contact_id \
                or not files.exists(row.sha256):
            raise Refused(404, "This file is not available.", "not_found")
        disposition = "inline" if row.content_type in INLINE_TYPES else "attachment"
        safe = row.name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        return Response(files.read(row.sha256), media_type=row.content_type, headers={
            **cors(ctx.origin), "Content-Disposition": f'{disposition}; filename="{safe}"',
            "Cache-Control": "private, max-age=3600"})
    return await guarded(request, handler)


class TypingIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=1000)
    typing: bool


@router.post("/widget/typing", summary="The visitor started or stopped typing")
async def widget_typing(request: Request) -> Response:
    return await guarded(request, _typing)


async def _typing(ctx: Ctx, request: Request) -> Response:
    body: TypingIn = _body(await request.body(), TypingIn)
    vs = _session(ctx, body.token)
    _limit(ctx, ("typing", vs.visitor_id), 30, "typing")
    st = await ctx.web.host.read(_state, ctx, vs)
    if st.conversation_id is None or st.contact_id is None:
        return ctx.answer({"ok": True, "sent": False})
    await ctx.web.host.write(webchat_actions.visitor_typing, st.conversation_id, st.contact_id, body.typing)
    return ctx.answer({"ok": True, "sent": True})


class PageViewIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=1000)
    url: str = Field(max_length=2000)
    title: str = Field(default="", max_length=300)


@router.post("/widget/pageview", summary="The visitor opened a page of the site (the customer's journey)")
async def widget_pageview(request: Request) -> Response:
    return await guarded(request, _pageview)


async def _pageview(ctx: Ctx, request: Request) -> Response:
    """Recorded in the customer's journey (the 360) once the visitor is a known contact."""
    body: PageViewIn = _body(await request.body(), PageViewIn)
    vs = _session(ctx, body.token)
    _limit(ctx, ("pageview", vs.visitor_id), 30, "browsing")
    if not body.url.startswith(("http://", "https://")):
        raise Refused(422, "url: must be an http(s) address", "invalid")
    st = await ctx.web.host.read(_state, ctx, vs)
    if st.contact_id is None:  # not a customer yet: nothing to attach the page to
        return ctx.answer({"ok": True, "recorded": False})
    await ctx.web.host.write(continuity_actions.record_activity, st.contact_id, kind="page_view", title=body.title,
                             url=body.url, data={"channel_id": ctx.channel.id})
    return ctx.answer({"ok": True, "recorded": True})


class ReceiptsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=1000)
    status: str = Field(pattern=r"^(delivered|read)$")
    message_ids: list[Id] = Field(min_length=1, max_length=200)


@router.post("/widget/receipts", summary="The visitor's widget received or showed agent messages")
async def widget_receipts(request: Request) -> Response:
    return await guarded(request, _receipts)


async def _receipts(ctx: Ctx, request: Request) -> Response:
    body: ReceiptsIn = _body(await request.body(), ReceiptsIn)
    vs = _session(ctx, body.token)
    _limit(ctx, ("receipts", vs.visitor_id), 60, "sending receipts")
    async def lookup(session: AsyncSession) -> tuple[VisitorState, Sequence[MessageRow], dict[int, Any]]:
        st = await _state(session, ctx, vs)
        rows = await repo.messages_by_ids(session, body.message_ids)
        return st, rows, await conv_repo.get_conversations(session, {r.conversation_id for r in rows})
    st, rows, convs = await ctx.web.host.read(lookup)
    mine = sorted(r.id for r in rows if r.direction == "out" and r.channel_instance_id == ctx.channel.id
                  and st.contact_id is not None and convs.get(r.conversation_id) is not None
                  and convs[r.conversation_id].contact_id == st.contact_id)
    if mine:
        req = ctx.adapter.signed_request(str(request.url), {"type": "receipts", "visitor_id": vs.visitor_id,
                                                             "status": body.status, "message_ids": mine})
        items = ctx.adapter.parse(req)
        await ctx.web.host.store_inbound(req, ctx.channel, ctx.adapter.dedupe_key(items, req), items)
    return ctx.answer({"ok": True, "applied": mine})


class CsatIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=1000)
    conversation_id: Id
    rating: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)


@router.post("/widget/csat", summary="The visitor rates a resolved conversation (1-5)", status_code=201)
async def widget_csat(request: Request) -> Response:
    return await guarded(request, _csat)


async def _csat(ctx: Ctx, request: Request) -> Response:
    body: CsatIn = _body(await request.body(), CsatIn)
    vs = _session(ctx, body.token)
    _limit(ctx, ("csat", vs.visitor_id), 10, "rating")
    async def rate(session: AsyncSession) -> CsatResponseRow:
        st = await _state(session, ctx, vs)
        if st.contact_id is None:
            raise Refused(404, "There is no conversation to rate.", "not_found")
        return await csat_actions.submit_csat(session, conversation_id=body.conversation_id,
                                              contact_id=st.contact_id, rating=body.rating, comment=body.comment,
                                              channel_instance_id=ctx.channel.id)
    row = await ctx.web.host.write(rate)
    return ctx.answer({"ok": True, "rating": row.rating}, 201)


class VerifyStartIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=1000)
    kind: str = Field(pattern=r"^(email|phone)$")
    value: str = Field(min_length=1, max_length=320)
    language: str = Field(default="en", max_length=8)


class VerifyCheckIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=1000)
    code: str = Field(pattern=r"^[0-9]{6}$")


@router.post("/widget/verify/start", summary="The visitor asks for a one-time code to confirm an e-mail address "
             "or phone number (sent there)", status_code=202)
async def widget_verify_start(request: Request) -> Response:
    return await guarded(request, _verify_start)


async def _verify_start(ctx: Ctx, request: Request) -> Response:
    body: VerifyStartIn = _body(await request.body(), VerifyStartIn)
    vs = _session(ctx, body.token)
    _limit(ctx, ("verify", vs.visitor_id), 3, "asking for codes")
    row = await ctx.web.host.write(verification.start, ctx.channel.id, vs.visitor_id, body.kind, body.value,
                                   body.language)
    return ctx.answer({"kind": row.kind, "value": row.value,
                       "expires_in": int(verification.CODE_TTL.total_seconds())}, 202)


@router.post("/widget/verify/check", summary="The visitor enters the code they received: the address is "
             "confirmed and joins their customer record")
async def widget_verify_check(request: Request) -> Response:
    return await guarded(request, _verify_check)


async def _verify_check(ctx: Ctx, request: Request) -> Response:
    body: VerifyCheckIn = _body(await request.body(), VerifyCheckIn)
    vs = _session(ctx, body.token)
    _limit(ctx, ("verify-check", vs.visitor_id), 10, "checking codes")
    result = await ctx.web.host.write(verification.check, ctx.channel.id, ctx.adapter.visitor_identity(vs),
                                      vs.visitor_id, body.code, ctx.web.host.settings.resolved_secret_key)
    if not result.ok:  # counted (committed) first
        more = f"{result.tries_left} tries left." if result.tries_left else "Ask for a new one."
        raise Refused(422, f"That code is not right. {more}", "wrong_code")
    return ctx.answer({"ok": True, "verified": result.value})


@router.websocket("/widget/ws")
async def widget_ws(ws: WebSocket) -> None:
    web = runtime(ws)
    await ws.accept()
    try:
        channel, adapter = await _channel(web.host, ws.query_params.get("channel"))
        if not adapter.origin_allowed(ws.headers.get("origin")) and ws.headers.get("origin") is not None:
            raise Refused(403, "origin not allowed", "origin_not_allowed")
        try:
            vs = adapter.read_token(ws.query_params.get("token", ""))
        except InvalidSignature:
            raise Refused(401, "bad visitor token", "bad_session") from None
        after_raw = ws.query_params.get("after")
        if after_raw is not None and not after_raw.isdigit():
            raise Refused(400, "after must be a non-negative event seq", "bad_after")
    except Refused as exc:
        await ws.close(code={401: 4001, 403: 4003, 404: 4004}.get(exc.status, 4002), reason=exc.detail[:120])
        return
    ctx = Ctx(web, channel, adapter, None, web.limiter)
    st = await web.host.read(_state, ctx, vs)
    ident = adapter.visitor_identity(vs)
    visitor = live.Visitor(channel.id, vs.visitor_id, (ident.kind.value, ident.value, ident.scope), st.contact_id,
                           {st.conversation_id} if st.conversation_id else set())
    await live.serve(ws, web.hub, visitor, int(after_raw) if after_raw is not None else None)
