"""The visitor's websocket (``/widget/ws``): the widget's live view of its own conversation.

A visitor connection follows the bus like the agents' stream (web/live.py) but sees only its own
conversation, translated into small visitor frames (never notes, activity lines, internal ids of
other people or raw event payloads):

- ``message``: a visitor message (confirmed) or an agent reply on this channel;
- ``status``: an agent reply's delivery state; ``conversation``: its status (resolved → CSAT prompt);
- ``typing``: an agent is typing;
- ``queue``: while the conversation waits for an agent, its place in the routing queue and estimated wait
  (``position``, ``ewt`` in seconds or null, ``closed`` outside the queue's business hours), or
  ``waiting: false`` once it no longer waits. These frames carry no ``seq``: they are a state, not an event.

Which conversation is "its own" is learnt from the events themselves: the visitor's messages carry the
visitor's identity (or a provider id prefixed with the visitor id), and a conversation that received
one is followed from then on, so a new conversation after a resolve is picked up without a reconnect.
``?after=<seq>`` resumes after the last frame the widget saw: the backlog comes from the outbox table,
then live frames, none twice (frames at or below the last sent seq are dropped), none lost.

Queue positions are written by the routing worker into ``routing_tasks`` about every two seconds, each
round followed by a ``routing.state`` event. That event (and a new connection) makes the hub re-read the
positions of every conversation that may be waiting and has a visitor connected to this process, in one
query, at most once per ``refresh_seconds`` and not at all when no connected visitor may be waiting;
only visitors whose notice changed get a frame. "May be waiting" is learnt from the events: a
conversation is dropped from that set when it is resolved, assigned or answered by an agent (the widget
is told at once) and added back when it is open and unassigned again or the visitor writes; the query
then decides (an agent's reply counts until the conversation is given back, moved or reopened).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.websockets import WebSocketState

from threadline.bus.base import Bus, Envelope
from threadline.channels.webchat import repo
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.queues import QueueSettings

log = structlog.get_logger(__name__)

QUEUE_MAX = 1000
API_ATTACHMENTS = "/api/v1/attachments/"
REFRESH_SECONDS = 0.5  # at most one positions query per this interval and process
NOT_WAITING: dict[str, Any] = {"type": "queue", "waiting": False}
Item = Envelope | dict[str, Any] | None  # an event, a ready-made frame, or None: "too slow, reconnect"


@dataclass(eq=False)
class Visitor:
    """One visitor connection and what it follows."""

    channel_id: int
    visitor_id: str
    identity_id: int | None
    conversations: set[int] = field(default_factory=set)
    queue: asyncio.Queue[Item] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    overflowed: bool = False
    # conversations that may be waiting for an agent (open, unassigned, not answered): the pre-filter
    # of the positions query; the query decides
    maybe_waiting: set[int] = field(default_factory=set)
    epoch: int = 0  # bumped whenever maybe_waiting changes (a query result older than that is dropped)
    notice: tuple[Any, ...] | None = None  # what the widget shows now: (conversation, position, minutes, closed)
    notice_sent: bool = False  # nothing sent yet: the first refresh always sends (a reconnect may show stale)

    def __post_init__(self) -> None:
        self.maybe_waiting = set(self.conversations)

    def _may_wait(self, conversation_id: int, yes: bool) -> None:
        (self.maybe_waiting.add if yes else self.maybe_waiting.discard)(conversation_id)
        self.epoch += 1  # even without a change: a query running now may have read an older state

    def relevant(self, env: Envelope) -> bool:
        """Whether the event concerns this visitor (learning its conversations as it goes)."""
        p = env.payload
        if env.name == "message.created":
            m = p.get("message", {})
            if m.get("channel_instance_id") != self.channel_id:
                if m.get("direction") == "out" and m.get("conversation_id") in self.conversations:
                    self._may_wait(m["conversation_id"], False)  # answered on another channel
                return False
            if m.get("direction") == "in":
                mine = (self.identity_id is not None and m.get("identity_id") == self.identity_id) or \
                    str(m.get("provider_id") or "").startswith(self.visitor_id + ":")
                if mine:
                    self.conversations.add(m["conversation_id"])
                    self._may_wait(m["conversation_id"], True)
                    if self.identity_id is None:
                        self.identity_id = m.get("identity_id")
                return mine
            if m.get("direction") == "out" and m.get("conversation_id") in self.conversations:
                self._may_wait(m["conversation_id"], False)
                return True
            return False
        if env.name in ("conversation.created", "conversation.updated"):
            c = p.get("conversation", {})
            if c.get("id") not in self.conversations:
                return False
            self._may_wait(c["id"], c.get("status") == "open" and c.get("assignee_id") is None)
            return True
        if env.name == "message.status_changed":
            return p.get("conversation_id") in self.conversations
        if env.name == "conversation.typing":
            return p.get("who") == "agent" and p.get("conversation_id") in self.conversations
        return False


def _put(v: Visitor, item: Item) -> None:
    try:
        v.queue.put_nowait(item)
    except asyncio.QueueFull:
        v.overflowed = True
        with contextlib.suppress(asyncio.QueueEmpty):
            v.queue.get_nowait()
        v.queue.put_nowait(None)


def wait_minutes(ewt: float | None) -> int | None:
    """The estimated wait as the widget shows it (whole minutes, at least one)."""
    return None if ewt is None else max(1, round(ewt / 60))


class VisitorHub:
    """Fans bus events out to the visitor connections of this process, and keeps their queue notices
    (place in the queue, estimated wait) current."""

    def __init__(self, bus: Bus, db: Database | None = None, *, refresh_seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.visitors: set[Visitor] = set()
        self.db = db  # given by the first connection when the app does not pass it
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self.queries = 0  # positions queries run (tests and metrics)
        self._pending = False
        self._refresher: asyncio.Task[None] | None = None
        self._last_refresh = float("-inf")
        self._hours: dict[int, tuple[Any, Any]] = {}  # queue id -> (settings as stored, parsed hours)
        bus.subscribe(self._on_event)

    def _on_event(self, env: Envelope) -> None:
        if env.name == "routing.state":
            if any(v.maybe_waiting for v in self.visitors):
                self.schedule()
            return
        if env.name not in ("message.created", "message.status_changed", "conversation.created",
                            "conversation.updated", "conversation.typing"):
            return
        for v in list(self.visitors):
            if v.overflowed:
                continue
            if v.relevant(env):
                _put(v, env)
            if v.notice is not None and v.notice[0] not in v.maybe_waiting:  # assigned, answered, resolved
                self._show(v, None)

    # ------------------------------------------------------------------ queue notices

    def add(self, visitor: Visitor, db: Database) -> None:
        """A new connection: it gets its current notice with the next refresh."""
        if self.db is None:
            self.db = db
        self.visitors.add(visitor)
        self.schedule()

    def remove(self, visitor: Visitor) -> None:
        self.visitors.discard(visitor)
        if not self.visitors and self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    def schedule(self) -> None:
        """Refresh the notices soon: now, or ``refresh_seconds`` after the last refresh (debounce)."""
        self._pending = True
        if self._refresher is None:
            try:
                self._refresher = asyncio.get_running_loop().create_task(self._refresh_soon())
            except RuntimeError:  # no running loop (a synchronous test publishing by hand)
                self._pending = False

    async def _refresh_soon(self) -> None:
        try:
            while self._pending:
                wait = self._last_refresh + self.refresh_seconds - self.clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._pending = False
                self._last_refresh = self.clock()
                try:
                    await self.refresh()
                except Exception:  # a failed read: the next routing.state tries again
                    log.exception("webchat_queue_refresh_failed")
        finally:
            if self._refresher is asyncio.current_task():
                self._refresher = None

    async def refresh(self) -> None:
        """One query for every conversation that may be waiting and has a visitor here; a frame to each
        visitor whose notice changed."""
        visitors = [v for v in self.visitors if not v.overflowed]
        epochs = {v: v.epoch for v in visitors}
        ids: set[int] = set().union(*(v.maybe_waiting for v in visitors))
        waits: dict[int, repo.QueueWait] = {}
        if ids and self.db is not None:
            async with self.db.transaction(write=False) as session:
                waits = {w.conversation_id: w for w in await repo.queue_waits(session, sorted(ids))}
            self.queries += 1
        else:
            ids = set()
        now = utcnow()
        for v in visitors:
            if v not in self.visitors or v.overflowed:
                continue
            if v.epoch != epochs[v]:  # learnt something while we read: read again
                self.schedule()
                continue
            notice = None
            for cid in sorted(v.maybe_waiting & waits.keys(), reverse=True):  # the newest conversation first
                w = waits[cid]
                if w.status != "open" or w.assignee_id is not None or w.conversation_queue_id is None or w.answered:
                    v.maybe_waiting.discard(cid)  # not waiting, until an event says otherwise
                    continue
                if w.task_status not in ("waiting", "offered"):
                    continue  # not routed yet (the router's next round) or no longer
                closed = not self._open(w, now)
                if closed or w.position is not None:
                    notice = (cid, w.position, w.ewt_seconds, closed)
                    break
            v.maybe_waiting -= ids - waits.keys()  # conversations deleted since
            self._show(v, notice)

    def _open(self, w: repo.QueueWait, now: Any) -> bool:
        if w.queue_id is None or w.queue_settings is None:
            return True
        cached = self._hours.get(w.queue_id)
        if cached is None or cached[0] != w.queue_settings:
            try:
                hours = QueueSettings.model_validate(w.queue_settings).hours
            except ValidationError:
                hours = None
            cached = self._hours[w.queue_id] = (w.queue_settings, hours)
        return cached[1] is None or bool(cached[1].is_open(now))

    def _show(self, v: Visitor, notice: tuple[int, int | None, float | None, bool] | None) -> None:
        key = None if notice is None else (notice[0], notice[1], wait_minutes(notice[2]), notice[3])
        if v.notice_sent and key == v.notice:
            return
        v.notice, v.notice_sent = key, True
        if notice is None:
            _put(v, NOT_WAITING)
            return
        cid, position, ewt, closed = notice
        _put(v, {"type": "queue", "waiting": True, "conversation_id": cid, "closed": closed,
                 "position": position, "ewt": None if ewt is None else round(ewt)})


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

    hub.add(visitor, db)
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
                if isinstance(env, dict):  # a queue notice: a state, no seq
                    await send(json.dumps(env))
                    continue
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
        hub.remove(visitor)
        if ws.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()


async def _answer_pings(ws: WebSocket, send: Callable[[str], Awaitable[None]]) -> None:
    """The widget pings now and then to notice a dead connection; anything else is ignored."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            if await ws.receive_text() == "ping":
                await send('{"type":"pong"}')
