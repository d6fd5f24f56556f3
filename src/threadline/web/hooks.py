"""``POST /hooks/{key}``: the one inbound route for every channel.

find the channel (cached) → verify the signature (401, nothing stored) → parse (400 with the reason)
→ store the raw request in the inbox, deduplicated by the provider's id, and process the parsed items
(handed over with it, so the request is parsed once; requests arriving together share one transaction,
workers/inbox.py) → commit → acknowledge. A failure after the
commit leaves the stored item for the inbox sweep, so a crash at any point loses nothing.

Provider traffic is the busiest path, so ``HookFastPath`` answers it as a bare ASGI app in front of the
framework (routing, dependency injection and the middleware stack cost more than the work itself); the
FastAPI route below documents it in the OpenAPI schema and serves it if the fast path is not installed.
"""

from __future__ import annotations

import json
import time

import structlog
from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from threadline.actions import replay as replay_actions
from threadline.channels.base import BadPayload, InvalidSignature, RawRequest
from threadline.db.repos import files as files_repo
from threadline.domain.messages import Unreadable
from threadline.files.links import link_key, link_valid
from threadline.files.names import content_disposition
from threadline.metrics import (
    HTTP_LATENCY,
    HTTP_REQUESTS,
    INBOUND_DUPLICATES,
    INBOUND_REJECTED,
    INBOUND_STORED,
)
from threadline.plugins.host import InboxFull
from threadline.services import Services
from threadline.web.deps import ServicesDep
from threadline.web.errors import PROBLEM, TITLES

router = APIRouter(tags=["channel hooks"])
log = structlog.get_logger(__name__)
ROUTE = "/hooks/{key}"
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def _problem(status: int, detail: str, code: str | None = None) -> tuple[int, bytes, str]:
    body = {"type": f"/problems/{code or status}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail}
    return status, json.dumps(body).encode(), PROBLEM


async def handle(services: Services, key: str, req: RawRequest) -> tuple[int, bytes, str]:
    """Verify, store and acknowledge one provider request: (status, body, content type)."""
    channel = await services.channels.by_key(key)
    if channel is None or not channel.enabled:
        return _problem(404, "no enabled channel has this hook URL")
    adapter = services.factory.for_row(channel)
    try:
        adapter.verify(req)
    except InvalidSignature as exc:
        INBOUND_REJECTED.labels(channel.kind, "signature").inc()
        log.info("hook_rejected", channel_id=channel.id, reason=str(exc))
        return _problem(401, f"signature check failed: {exc}", "invalid_signature")
    try:
        items = adapter.parse(req)
    except BadPayload as exc:
        INBOUND_REJECTED.labels(channel.kind, "payload").inc()
        return _problem(400, f"cannot understand the request: {exc}", "bad_payload")
    except RecursionError:  # JSON (or XML) nested beyond what a parser recurses into: bad input, not a crash
        INBOUND_REJECTED.labels(channel.kind, "payload").inc()
        return _problem(400, "cannot understand the request: it is nested too deeply", "bad_payload")
    ack = adapter.ack(req)
    unreadable = sum(isinstance(i, Unreadable) for i in items)
    if unreadable:  # stored and acknowledged with the rest of the batch; the reason stays on the inbox item
        INBOUND_REJECTED.labels(channel.kind, "item").inc(unreadable)
        log.info("hook_items_unreadable", channel_id=channel.id, count=unreadable)
    if not items:  # e.g. an event type we do not handle: acknowledged and logged, never an error
        log.info("hook_ignored", channel_id=channel.id)
        return ack.status, ack.body, ack.content_type
    dedupe_key = adapter.dedupe_key(items, req)
    nonce = adapter.replay_nonce(req)
    if nonce is not None:  # a one-time token (Mailgun): the same signature never carries another request
        async with services.db.transaction(write=True) as session:
            fresh = await replay_actions.accept_nonce(session, channel.id, nonce.value, dedupe_key, nonce.ttl_seconds)
        if not fresh:
            INBOUND_REJECTED.labels(channel.kind, "replay").inc()
            log.info("hook_replay_refused", channel_id=channel.id)
            return _problem(401, "signature check failed: this signed token was already used for another "
                            "request", "replayed_token")
    try:
        item_id = await services.inbox.store(req, channel, dedupe_key, items)  # parsed once: handed over
    except InboxFull as exc:  # overloaded (or the database is down): nothing acknowledged, the provider retries
        INBOUND_REJECTED.labels(channel.kind, "busy").inc()
        return _problem(503, str(exc), "busy")
    if item_id is None:
        INBOUND_DUPLICATES.labels(channel.kind).inc()
    else:
        INBOUND_STORED.labels(channel.kind).inc()
    return ack.status, ack.body, ack.content_type


@router.post(ROUTE, summary="Inbound requests from a channel provider", include_in_schema=True)
async def inbound(key: str, request: Request, services: ServicesDep) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}
    req = RawRequest(request.method, str(request.url), headers, await request.body())
    status, body, content_type = await handle(services, key, req)
    return Response(body, status_code=status, media_type=content_type)


@router.get(ROUTE, summary="A provider's subscription handshake on the hook URL (Meta's hub.challenge)")
async def handshake(key: str, request: Request, services: ServicesDep) -> Response:
    """Meta checks a webhook URL with ``GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`` and
    expects the challenge back when the token is the channel's; other channels take no GET (405)."""
    channel = await services.channels.by_key(key)
    if channel is None or not channel.enabled:
        status, body, ctype = _problem(404, "no enabled channel has this hook URL")
        return Response(body, status_code=status, media_type=ctype)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        ack = services.factory.for_row(channel).challenge(RawRequest("GET", str(request.url), headers, b""))
    except InvalidSignature as exc:
        log.info("hook_handshake_refused", channel_id=channel.id, reason=str(exc))
        status, body, ctype = _problem(403, f"verification failed: {exc}", "invalid_verify_token")
        return Response(body, status_code=status, media_type=ctype)
    if ack is None:
        status, body, ctype = _problem(405, "this channel takes POST requests only")
        return Response(body, status_code=status, media_type=ctype)
    log.info("hook_handshake_ok", channel_id=channel.id)
    return Response(ack.body, status_code=ack.status, media_type=ack.content_type)


@router.get(ROUTE + "/media/{attachment_id}", summary="A stored file, through an expiring signed link that a "
            "provider fetches for outbound media (Twilio MMS)", response_class=Response)
async def signed_media(key: str, attachment_id: str, request: Request, services: ServicesDep) -> Response:
    channel = await services.channels.by_key(key)
    query = request.query_params
    if channel is None or not channel.enabled or not link_valid(
            link_key(services.settings.resolved_secret_key), key, attachment_id, query.get("expires", ""),
            query.get("signature", ""), time.time()):
        status, body, ctype = _problem(403, "this link is invalid or has expired")
        return Response(body, status_code=status, media_type=ctype)
    async with services.db.transaction(write=False) as session:
        row = await files_repo.get_attachment(session, attachment_id)
    if row is None or not services.files.exists(row.sha256):
        status, body, ctype = _problem(404, "the file no longer exists")
        return Response(body, status_code=status, media_type=ctype)
    return Response(services.files.read(row.sha256), media_type=row.content_type,
                    headers={"Content-Disposition": content_disposition("attachment", row.name),
                             "Cache-Control": "private, max-age=300",
                             "X-Content-Type-Options": "nosniff"})


class HookFastPath:
    """Answers ``POST /hooks/{key}`` before the framework sees it; everything else passes through."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        key = path[7:] if path.startswith("/hooks/") else ""
        if scope["type"] != "http" or scope["method"] != "POST" or not key or "/" in key:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, body, content_type = await self._serve(scope, receive)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type.encode()),
                                (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})
        HTTP_REQUESTS.labels("POST", ROUTE, str(status)).inc()
        HTTP_LATENCY.labels("POST", ROUTE).observe(time.perf_counter() - start)

    async def _serve(self, scope: Scope, receive: Receive) -> tuple[int, bytes, str]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return _problem(413, f"the body is larger than {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return _problem(400, "the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return _problem(413, f"the body is larger than {self.max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        services: Services = scope["app"].state.services  # Starlette sets scope["app"] before middleware
        req = RawRequest("POST", _url(scope, headers), headers, b"".join(chunks))
        try:
            return await handle(services, scope["path"][7:], req)
        except Exception:  # a bug: say so plainly; the provider retries and nothing was acknowledged
            log.exception("hook_failed")
            return _problem(500, "the request could not be stored; please retry")


def _url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host") or "{}:{}".format(*scope.get("server", ("localhost", 80)))
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{scope['path']}" + (f"?{query}" if query else "")
