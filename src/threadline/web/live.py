"""The live event stream: ``/api/v1/stream`` (websocket).

Each connection receives only the events whose audience includes it (named user, a queue it serves,
a team it is in; supervisors and admins everything): ``visible`` is that check, the one place the desk
decides per event. ``?after=<seq>`` resumes after the last event the client saw: the backlog is read from
the outbox table, then live events follow, with no gap and no duplicate. A client too slow to keep up is
disconnected with code 4008 and resumes with ``after``. The fan-out, back-pressure and resume are the
live stream core's (livestream.py), shared with the web chat widget's socket.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, WebSocket

from threadline.domain.access import Actor
from threadline.domain.errors import DomainError
from threadline.domain.events import Audience
from threadline.domain.stream import LiveEvent
from threadline.livestream import LiveStream
from threadline.metrics import STREAM_CLIENTS
from threadline.web.deps import SESSION_COOKIE, authenticate

router = APIRouter()


def audience_includes(actor: Actor, audience: Audience) -> bool:
    return actor.visibility.allows(audience)  # the one access rule: domain/access.py


def visible(actor: Actor, ev: LiveEvent) -> bool:
    """Whether a desk user may receive this event: the desk's one per-event visibility check."""
    return audience_includes(actor, ev.audience)


async def frame(ev: LiveEvent) -> str:
    return json.dumps({"seq": ev.seq, "name": ev.name, "data": ev.payload,
                       "created_at": ev.created_at.isoformat()}, separators=(",", ":"))


def ready(seq: int, backlog: int) -> str:
    return json.dumps({"name": "stream.ready", "seq": seq, "backlog": backlog})


def _allowed_origin(ws: WebSocket, public_base_url: str) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser
    host = ws.headers.get("host", "")
    return origin.rstrip("/") in (public_base_url, f"http://{host}", f"https://{host}")


@router.websocket("/api/v1/stream")
async def stream(ws: WebSocket) -> None:
    services = ws.app.state.services
    live: LiveStream = ws.app.state.live
    token = ws.query_params.get("token")
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    cookie = None if token else ws.cookies.get(SESSION_COOKIE)
    # Refusals accept first and then close with a 4xxx code and a reason, which a browser can read
    # (a refused handshake only shows up as a generic error there).
    if cookie and not _allowed_origin(ws, services.settings.public_base_url):
        await _refuse(ws, 4003, "origin not allowed")
        return
    try:
        actor, _ = await authenticate(services, token=token, cookie=cookie)
    except DomainError as exc:
        await _refuse(ws, 4001, exc.message)
        return
    after_raw = ws.query_params.get("after")
    if after_raw is not None and not after_raw.isdigit():
        await _refuse(ws, 4002, "after must be a non-negative event seq")
        return
    await ws.accept()
    STREAM_CLIENTS.inc()
    conn = live.connect(lambda ev: visible(actor, ev))
    await live.serve(ws, conn, int(after_raw) if after_raw is not None else None, frame, ready=ready)


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    await ws.accept()
    await ws.close(code=code, reason=reason[:120])
