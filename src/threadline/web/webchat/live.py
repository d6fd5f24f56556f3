"""The visitor's websocket (``/widget/ws``): the widget's live view of its own conversation.

A visitor connection follows the bus like the agents' stream (web/live.py) but sees only its own
conversation, translated into small visitor frames (never notes, activity lines, internal ids of
other people or raw event payloads):

- ``message``: a visitor message (confirmed) or an agent reply on this channel;
- ``status``: an agent reply's delivery state; ``conversation``: its status (resolved → CSAT prompt);
- ``typing``: an agent is typing.

Which conversation is "its own" is learnt from the events themselves: the visitor's messages carry the
visitor's identity (or a provider id prefixed with the visitor id), and a conversation that received
one is followed from then on, so a new conversation after a resolve is picked up without a reconnect.
``?after=<seq>`` resumes after the last frame the widget saw: the backlog comes from the outbox table,
then live frames, none twice (frames at or below the last sent seq are dropped), none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from threadline.bus.base import Bus, Envelope
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.repos import webchat as repo
from threadline.db.session import Database

QUEUE_MAX = 1000
API_ATTACHMENTS = "/api/v1/attachments/"


@dataclass(eq=False)
class Visitor:
    """One visitor connection and what it follows."""

    channel_id: int
    visitor_id: str
    identity_id: int | None
    conversations: set[int] = field(default_factory=set)
    queue: asyncio.Queue[Envelope | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False

    def relevant(self, env: Envelope) -> bool:
        """Whether the event concerns this visitor (learning its conversations as it goes)."""
        p = env.payload
        if env.name == "message.created":
            m = p.get("message", {})
            if m.get("channel_instance_id") != self.channel_id:
                return False
            if m.get("direction") == "in":
                mine = (self.identity_id is not None and m.get("identity_id") == self.identity_id) or \
                    str(m.get("provider_id") or "").startswith(self.visitor_id + ":")
                if mine:
                    self.conversations.add(m["conversation_id"])
                    if self.identity_id is None:
                        self.identity_id = m.get("identity_id")
                return mine
            return m.get("direction") == "out" and m.get("conversation_id") in self.conversations
        if env.name in ("conversation.created", "conversation.updated"):
            return p.get("conversation", {}).get("id") in self.conversations
        if env.name == "message.status_changed":
            return p.get("conversation_id") in self.conversations
        if env.name == "conversation.typing":
            return p.get("who") == "agent" and p.get("conversation_id") in self.conversations
        return False


class VisitorHub:
    """Fans bus events out to the visitor connections of this process."""

    def __init__(self, bus: Bus) -> None:
        self.visitors: set[Visitor] = set()
        bus.subscribe(self._on_event)

    def _on_event(self, env: Envelope) -> None:
        if env.name not in ("message.created", "message.status_changed", "conversation.created",
                            "conversation.updated", "conversation.typing"):
            return
        for v in list(self.visitors):
            if v.overflowed or not v.relevant(env):
                continue
            try:
                v.queue.put_nowait(env)
            except asyncio.QueueFull:
                v.overflowed = True
                with contextlib.suppress(asyncio.QueueEmpty):
                    v.queue.get_nowait()
                v.queue.put_nowait(None)


def visitor_attachments(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attachment entries as the widget downloads them (``/widget/attachments/{id}``, token appended)."""
    out = []
    for a in items or []:
        url = str(a.get("url", ""))
        if url.startswith(API_ATTACHMENTS):
            url = "/widget/attachments/" + url[len(API_ATTACHMENTS):]
        out.append({"url": url, "name": a.get("name") or "", "content_type": a.get("content_type") or "",
                    "size": a.get("size")})
    return out


def visitor_message(m: dict[str, Any], visitor_id: str, names: dict[int, str]) -> dict[str, Any]:
    provider_id = str(m.get("provider_id") or "")
    inbound = m.get("direction") == "in"
    return {
        "id": m["id"], "conversation_id": m["conversation_id"], "from": "visitor" if inbound else "agent",
        "text": m.get("text", ""), "attachments": visitor_attachments(m.get("attachments", [])),
        "author": "" if inbound else names.get(m.get("author_id") or 0, ""),
        "created_at": m.get("created_at"), "status": m.get("delivery_status"),
        "client_id": provider_id.split(":", 1)[1] if inbound and provider_id.startswith(visitor_id + ":") else None,
    }


class FrameMaker:
    """Envelope → visitor frame; looks up agents' display names (cached per connection)."""

    def __init__(self, db: Database, visitor_id: str) -> None:
        self.db = db
        self.visitor_id = visitor_id
        self.names: dict[int, str] = {}

    async def frame(self, env: Envelope) -> dict[str, Any] | None:
        p = env.payload
        if env.name == "message.created":
            m = p["message"]
            author = m.get("author_id")
            if author and author not in self.names:
                async with self.db.transaction(write=False) as session:
                    self.names.update(await repo.user_names(session, [author]))
            return {"seq": env.seq, "type": "message", "message": visitor_message(m, self.visitor_id, self.names)}
        if env.name == "message.status_changed":
            return {"seq": env.seq, "type": "status", "id": p["message_id"], "status": p["status"]}
        if env.name in ("conversation.created", "conversation.updated"):
            c = p["conversation"]
            return {"seq": env.seq, "type": "conversation", "id": c["id"], "status": c["status"]}
        if env.name == "conversation.typing":
            uid = p.get("user_id")
            if uid and uid not in self.names:
                async with self.db.transaction(write=False) as session:
                    self.names.update(await repo.user_names(session, [uid]))
            return {"seq": env.seq, "type": "typing", "conversation_id": p["conversation_id"],
                    "typing": bool(p.get("typing")), "author": self.names.get(uid or 0, ""),
                    "at": env.created_at.isoformat()}
        return None


async def backlog(db: Database, visitor: Visitor, after: int) -> list[Envelope]:
    out: list[Envelope] = []
    cursor = after
    while True:
        async with db.transaction(write=False) as session:
            rows = await plumbing_repo.events_after(session, cursor, 1000)
        for r in rows:
            cursor = r.seq or cursor
            env = Envelope(r.seq or 0, r.name, r.payload, r.audience, r.created_at)
            if visitor.relevant(env):
                out.append(env)
        if len(rows) < 1000:
            return out


async def serve(ws: WebSocket, hub: VisitorHub, db: Database, visitor: Visitor, after: int | None) -> None:
    """Run one accepted visitor connection until it closes."""
    maker = FrameMaker(db, visitor.visitor_id)
    lock = asyncio.Lock()  # the pong answers and the frames share the socket

    async def send(text: str) -> None:
        async with lock:
            await ws.send_text(text)

    hub.visitors.add(visitor)
    try:
        if after is None:
            async with db.transaction(write=False) as session:
                last = await plumbing_repo.max_seq(session)
            pending: list[Envelope] = []
        else:
            last = after
            pending = await backlog(db, visitor, last)
        await send(json.dumps({"type": "ready", "seq": last}))
        for env in pending:
            if env.seq > last:
                f = await maker.frame(env)
                if f is not None:
                    await send(json.dumps(f))
                last = env.seq
        receiver = asyncio.create_task(_answer_pings(ws, send))
        try:
            while True:
                getter = asyncio.create_task(visitor.queue.get())
                done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if receiver in done:
                    getter.cancel()
                    return
                env = getter.result()
                if env is None:
                    await ws.close(code=4008, reason=f"too slow; reconnect with after={last}")
                    return
                if env.seq <= last:
                    continue
                f = await maker.frame(env)
                if f is not None:
                    await send(json.dumps(f))
                last = env.seq
        finally:
            receiver.cancel()
    except WebSocketDisconnect:
        pass
    finally:
        hub.visitors.discard(visitor)
        if ws.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()


async def _answer_pings(ws: WebSocket, send: Callable[[str], Awaitable[None]]) -> None:
    """The widget pings now and then to notice a dead connection; anything else is ignored."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            if await ws.receive_text() == "ping":
                await send('{"type":"pong"}')
