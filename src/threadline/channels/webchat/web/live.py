"""The visitor's websocket (``/widget/ws``): the widget's live view of its own conversation.

A visitor connection follows the bus like the agents' stream (web/live.py) but sees only its own
conversation, translated into small visitor frames (never notes, activity lines, internal ids of
other people or raw event payloads):

- ``message``: a visitor message (confirmed) or an agent reply on this channel;
- ``status``: an agent reply's delivery state; ``conversation``: its status (resolved → CSAT prompt);
- ``typing``: an agent is typing;
- ``queue``: while the conversation waits for an agent, its place in the routing queue and estimated wait
  (``position``, ``ewt`` in seconds or null, ``closed`` outside the queue's business hours), or
  ``waiting: false`` once it no longer waits (or never: a conversation in which the visitor left a message
  with the offline form is answered by e-mail, so it shows no place in the queue). These frames carry no
  ``seq``: they are a state, not an event.

The hub follows the typed events it needs through the web chat package's host (``Host.subscribe``), and
only while visitors are connected to this process, so a process without visitors parses nothing.

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

from threadline.channels.webchat import repo
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.types import utcnow
from threadline.domain.events import (
    ConversationCreated,
    ConversationTyping,
    ConversationUpdated,
    MessageCreated,
    MessageStatusChanged,
    RoutingState,
    parse_event,
)
from threadline.domain.queues import QueueSettings
from threadline.plugins.host import Host, Published

log = structlog.get_logger(__name__)

QUEUE_MAX = 1000
API_ATTACHMENTS = "/api/v1/attachments/"
REFRESH_SECONDS = 0.5  # at most one positions query per this interval and process
NOT_WAITING: dict[str, Any] = {"type": "queue", "waiting": False}
Item = Published[Any] | dict[str, Any] | None  # an event, a ready-made frame, or None: "too slow, reconnect"
FOLLOWED = (MessageCreated, MessageStatusChanged, ConversationCreated, ConversationUpdated, ConversationTyping)
FOLLOWED_NAMES = frozenset(cls.model_fields["name"].default for cls in FOLLOWED)


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
    left_offline: set[int] = field(default_factory=set)  # conversations with an offline-form message
    epoch: int = 0  # bumped whenever maybe_waiting changes (a query result older than that is dropped)
    notice: tuple[Any, ...] | None = None  # what the widget shows now: (conversation, position, minutes, closed)
    notice_sent: bool = False  # nothing sent yet: the first refresh always sends (a reconnect may show stale)

    def __post_init__(self) -> None:
        self.maybe_waiting = set(self.conversations)

    def _may_wait(self, conversation_id: int, yes: bool) -> None:
        (self.maybe_waiting.add if yes else self.maybe_waiting.discard)(conversation_id)
        self.epoch += 1  # even without a change: a query running now may have read an older state

    def relevant(self, published: Published[Any]) -> bool:
        """Whether the event concerns this visitor (learning its conversations as it goes)."""
        event = published.event
        if isinstance(event, MessageCreated):
            m = event.message
            if m.channel_instance_id != self.channel_id:
                if m.direction == "out" and m.conversation_id in self.conversations:
                    self._may_wait(m.conversation_id, False)  # answered on another channel
                return False
            if m.direction == "in":
                mine = (self.identity_id is not None and m.identity_id == self.identity_id) or \
                    str(m.provider_id or "").startswith(self.visitor_id + ":")
                if mine:
                    self.conversations.add(m.conversation_id)
                    if m.meta.get("offline"):  # left with the offline form: answered by e-mail, no queue place
                        self.left_offline.add(m.conversation_id)
                    self._may_wait(m.conversation_id, m.conversation_id not in self.left_offline)
                    if self.identity_id is None:
                        self.identity_id = m.identity_id
                return mine
            if m.direction == "out" and m.conversation_id in self.conversations:
                self._may_wait(m.conversation_id, False)
                return True
            return False
        if isinstance(event, ConversationCreated | ConversationUpdated):
            c = event.conversation
            if c.id not in self.conversations:
                return False
            self._may_wait(c.id, c.status == "open" and c.assignee_id is None and c.id not in self.left_offline)
            return True
        if isinstance(event, MessageStatusChanged):
            return event.conversation_id in self.conversations
        if isinstance(event, ConversationTyping):
            return event.who == "agent" and event.conversation_id in self.conversations
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
    """Fans events out to the visitor connections of this process, and keeps their queue notices
    (place in the queue, estimated wait) current."""

    def __init__(self, host: Host, *, refresh_seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.visitors: set[Visitor] = set()
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self.queries = 0  # positions queries run (tests and metrics)
        self._pending = False
        self._refresher: asyncio.Task[None] | None = None
        self._last_refresh = float("-inf")
        self._hours: dict[int, tuple[Any, Any]] = {}  # queue id -> (settings as stored, parsed hours)
        self._unsubscribe: list[Callable[[], None]] = []

    def _follow(self, on: bool) -> None:
        """Subscribe to the events visitors need while some are connected here; drop them when none is."""
        if on and not self._unsubscribe:
            self._unsubscribe = [self.host.subscribe(cls, self.on_event) for cls in FOLLOWED]
            self._unsubscribe.append(self.host.subscribe(RoutingState, self.on_routing_state))
        elif not on:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe = []

    def on_routing_state(self, published: Published[RoutingState]) -> None:
        if any(v.maybe_waiting for v in self.visitors):
            self.schedule()

    def on_event(self, published: Published[Any]) -> None:
        for v in list(self.visitors):
            if v.overflowed:
                continue
            if v.relevant(published):
                _put(v, published)
            if v.notice is not None and v.notice[0] not in v.maybe_waiting:  # assigned, answered, resolved
                self._show(v, None)

    # ------------------------------------------------------------------ queue notices

    def add(self, visitor: Visitor) -> None:
        """A new connection: it gets its current notice with the next refresh."""
        self.visitors.add(visitor)
        self._follow(True)
        self.schedule()

    def remove(self, visitor: Visitor) -> None:
        self.visitors.discard(visitor)
        if not self.visitors:
            self._follow(False)
            if self._refresher is not None:
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
        if ids:
            waits = {w.conversation_id: w for w in await self.host.read(repo.queue_waits, sorted(ids))}
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
                if w.left_offline:
                    v.left_offline.add(cid)
                if w.status != "open" or w.assignee_id is not None or w.conversation_queue_id is None or w.answered \
                        or w.left_offline:
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
    """Event → visitor frame; looks up agents' display names (cached per connection)."""

    def __init__(self, host: Host, visitor_id: str) -> None:
        self.host = host
        self.visitor_id = visitor_id
        self.names: dict[int, str] = {}

    async def frame(self, published: Published[Any]) -> dict[str, Any] | None:
        event, seq = published.event, published.seq
        if isinstance(event, MessageCreated):
            author = event.message.author_id
            if author and author not in self.names:
                self.names.update(await self.host.read(repo.user_names, [author]))
            m = event.message.model_dump(mode="json")
            return {"seq": seq, "type": "message", "message": visitor_message(m, self.visitor_id, self.names)}
        if isinstance(event, MessageStatusChanged):
            return {"seq": seq, "type": "status", "id": event.message_id, "status": event.status}
        if isinstance(event, ConversationCreated | ConversationUpdated):
            return {"seq": seq, "type": "conversation", "id": event.conversation.id,
                    "status": event.conversation.status}
        if isinstance(event, ConversationTyping):
            uid = event.user_id
            if uid and uid not in self.names:
                self.names.update(await self.host.read(repo.user_names, [uid]))
            return {"seq": seq, "type": "typing", "conversation_id": event.conversation_id,
                    "typing": event.typing, "author": self.names.get(uid or 0, ""),
                    "at": published.created_at.isoformat()}
        return None


async def backlog(host: Host, visitor: Visitor, after: int) -> list[Published[Any]]:
    """The events after ``after`` that concern the visitor, from the outbox table (typed)."""
    out: list[Published[Any]] = []
    cursor = after
    while True:
        rows = await host.read(plumbing_repo.events_after, cursor, 1000)
        for r in rows:
            cursor = r.seq or cursor
            if r.name not in FOLLOWED_NAMES:
                continue
            try:
                published = Published(parse_event(r.payload), r.seq or 0, r.created_at)
            except ValidationError:  # an event stored by an older version in another shape: skipped
                log.warning("webchat_backlog_event_unreadable", seq=r.seq, name=r.name)
                continue
            if visitor.relevant(published):
                out.append(published)
        if len(rows) < 1000:
            return out


async def serve(ws: WebSocket, hub: VisitorHub, visitor: Visitor, after: int | None) -> None:
    """Run one accepted visitor connection until it closes."""
    maker = FrameMaker(hub.host, visitor.visitor_id)
    lock = asyncio.Lock()  # the pong answers and the frames share the socket

    async def send(text: str) -> None:
        async with lock:
            await ws.send_text(text)

    hub.add(visitor)
    try:
        if after is None:
            last = await hub.host.read(plumbing_repo.max_seq)
            pending: list[Published[Any]] = []
        else:
            last = after
            pending = await backlog(hub.host, visitor, last)
        await send(json.dumps({"type": "ready", "seq": last}))
        for published in pending:
            if published.seq > last:
                f = await maker.frame(published)
                if f is not None:
                    await send(json.dumps(f))
                last = published.seq
        receiver = asyncio.create_task(_answer_pings(ws, send))
        try:
            while True:
                getter = asyncio.create_task(visitor.queue.get())
                done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if receiver in done:
                    getter.cancel()
                    return
                item = getter.result()
                if item is None:
                    await ws.close(code=4008, reason=f"too slow; reconnect with after={last}")
                    return
                if isinstance(item, dict):  # a queue notice: a state, no seq
                    await send(json.dumps(item))
                    continue
                if item.seq <= last:
                    continue
                f = await maker.frame(item)
                if f is not None:
                    await send(json.dumps(f))
                last = item.seq
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
