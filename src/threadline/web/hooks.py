"""``POST /hooks/{key}``: the one inbound route for every channel.

find the channel (cached) → verify the signature (401, nothing stored) → parse (400 with the reason)
→ store the raw request in the inbox, deduplicated by the provider's id → commit (requests arriving
together share one commit) → acknowledge. Processing happens after the
acknowledgement (workers/inbox.py), so a crash at any point loses nothing.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, Response

from threadline.channels.base import BadPayload, InvalidSignature, RawRequest
from threadline.metrics import INBOUND_DUPLICATES, INBOUND_REJECTED, INBOUND_STORED
from threadline.web.deps import ServicesDep
from threadline.web.errors import problem

router = APIRouter(tags=["channel hooks"])
log = structlog.get_logger(__name__)


@router.post("/hooks/{key}", summary="Inbound requests from a channel provider", include_in_schema=True)
async def inbound(key: str, request: Request, services: ServicesDep) -> Response:
    channel = await services.channels.by_key(key)
    if channel is None or not channel.enabled:
        return problem(404, "no enabled channel has this hook URL")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    req = RawRequest(request.method, str(request.url), headers, body)
    adapter = services.factory.for_row(channel)
    try:
        adapter.verify(req)
    except InvalidSignature as exc:
        INBOUND_REJECTED.labels(channel.kind, "signature").inc()
        log.info("hook_rejected", channel_id=channel.id, reason=str(exc))
        return problem(401, f"signature check failed: {exc}", code="invalid_signature")
    try:
        items = adapter.parse(req)
    except BadPayload as exc:
        INBOUND_REJECTED.labels(channel.kind, "payload").inc()
        return problem(400, f"cannot understand the request: {exc}", code="bad_payload")
    ack = adapter.ack(req)
    if not items:  # e.g. an event type we do not handle: acknowledged and logged, never an error
        log.info("hook_ignored", channel_id=channel.id)
        return Response(ack.body, status_code=ack.status, media_type=ack.content_type)
    dedupe = adapter.dedupe_key(items, req)
    item_id = await services.inbox.store(req, channel, dedupe)
    if item_id is None:
        INBOUND_DUPLICATES.labels(channel.kind).inc()
    else:
        INBOUND_STORED.labels(channel.kind).inc()
    return Response(ack.body, status_code=ack.status, media_type=ack.content_type)
