"""The live event stream: ``/api/v1/stream`` (websocket).

Each connection receives only the events whose audience includes it (named user, a queue it serves,
a team it is in; supervisors and admins everything). ``?after=<seq>`` resumes after the last event the
client saw: the backlog is read from the outbox table, then live events follow, with no gap and no
duplicate (events are delivered in seq order and anything at or below the last sent seq is dropped).
A client too slow to keep up is disconnected with code 4008 and resumes with ``after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from threadline.actions.permissions import Actor
from threadline.bus.base import Bus, Envelope
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.session import Database
from threadline.domain.errors import DomainError
from threadline.metrics import STREAM_CLIENTS
from threadline.web.deps import SESSION_COOKIE, authenticate

router = APIRouter()
QUEUE_MAX = 5000


def audience_includes(actor: Actor, audience: dict[str, Any]) -> bool:
    return actor.visibility.allows(audience)  # the one access rule: domain/access.py


@dataclass(eq=False)
class Client:
    actor: Actor
    queue: asyncio.Queue[Envelope | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False


class Hub:
    """Fans bus events out to the connections of this process."""

    def __init__(self, bus: Bus) -> None:
        self.clients: set[Client] = set()
        bus.subscribe(self._on_event)

    def _on_event(self, env: Envelope) -> None:
        for client in list(self.clients):
            if client.overflowed or not audience_includes(client.actor, env.audience):
                continue
            try:
                client.queue.put_nowait(env)
            except asyncio.QueueFull:
                # Drop everything queued (not just the oldest): the client resumes after the last event
                # it really received, so nothing is skipped.
                client.overflowed = True
                while not client.queue.empty():
                    client.queue.get_nowait()
                client.queue.put_nowait(None)  # tells the sender loop to disconnect

    def register(self, actor: Actor) -> Client:
        client = Client(actor)
        self.clients.add(client)
        return client

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)


def frame(env: Envelope) -> str:
    return json.dumps({"seq": env.seq, "name": env.name, "data": env.payload,
                       "created_at": env.created_at.isoformat()}, separators=(",", ":"))


async def backlog(db: Database, actor: Actor, after: int) -> list[Envelope]:
    out: list[Envelope] = []
    cursor = after
    while True:
        async with db.transaction(write=False) as session:
            rows = await plumbing_repo.events_after(session, cursor, 1000)
        for r in rows:
            cursor = r.seq or cursor
            if audience_includes(actor, r.audience):
                out.append(Envelope(r.seq or 0, r.name, r.payload, r.audience, r.created_at))
        if len(rows) < 1000:
            return out


def _allowed_origin(ws: WebSocket, public_base_url: str) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser
    host = ws.headers.get("host", "")
    return origin.rstrip("/") in (public_base_url, f"http://{host}", f"https://{host}")


@router.websocket("/api/v1/stream")
async def stream(ws: WebSocket) -> None:
    services = ws.app.state.services
    hub: Hub = ws.app.state.hub
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
    client = hub.register(actor)
    try:
        if after_raw is None:
            async with services.db.transaction(write=False) as session:
                last = await plumbing_repo.max_seq(session)
            pending: list[Envelope] = []
        else:
            last = int(after_raw)
            pending = await backlog(services.db, actor, last)
        await ws.send_text(json.dumps({"name": "stream.ready", "seq": last, "backlog": len(pending)}))
        for env in pending:
            if env.seq > last:
                await ws.send_text(frame(env))
                last = env.seq
        receiver = asyncio.create_task(_drain_incoming(ws))
        try:
            while True:
                if client.queue.empty():
                    getter = asyncio.create_task(client.queue.get())
                    done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                    if receiver in done:
                        getter.cancel()
                        return
                    batch = [getter.result()]
                else:
                    batch = []
                # Send everything already queued in one go: waiting a loop turn per event would let a
                # busy process (a long database batch between turns) fall behind the event rate.
                while not client.queue.empty():
                    batch.append(client.queue.get_nowait())
                for env in batch:
                    if env is None:
                        await ws.close(code=4008, reason=f"too slow; reconnect with after={last}")
                        return
                    if env.seq <= last:
                        continue
                    await ws.send_text(frame(env))
                    last = env.seq
        finally:
            receiver.cancel()
    except WebSocketDisconnect:
        pass
    finally:
        hub.unregister(client)
        if ws.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    await ws.accept()
    await ws.close(code=code, reason=reason[:120])


async def _drain_incoming(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await ws.receive_text()
