"""The visitor's websocket (``/widget/ws``): the widget's live view of its own conversation.

A visitor connection follows the bus like the agents' stream (web/live.py) but sees only its own
conversation, translated into small visitor frames (never notes, activity lines, internal ids of
other people or raw event payloads):

- ``message``: a visitor message (confirmed) or an agent reply on this channel;
- ``status``: an agent reply's delivery state; ``conversation``: its status (resolved → CSAT prompt);
- ``typing``: an agent is typing;
- ``call`` and ``call_media``: a call in the browser (the voice package): its state, and the agent's
  session description when the call goes peer to peer; a call's own timeline entry is not a message;
- ``queue``: while the conversation waits for an agent, its place in the routing queue and estimated wait
  (``position``, ``ewt`` in seconds or null, ``closed`` outside the queue's business hours), or
  ``waiting: false`` once it no longer waits (or never: a conversation in which the visitor left a message
  with the offline form is answered by e-mail, so it shows no place in the queue). These frames carry no
  ``seq``: they are a state, not an event.

Each visitor connection is a connection of the process's live stream core, reached through the package's
host (``Host.live``): the core fans events out, decodes them through the event union (only the kinds a
visitor follows, and only while visitors are connected here), applies back-pressure and resumes; this
module decides what a visitor wants and how an event looks to the widget. The hub follows
``routing.state`` (``Host.subscribe``) only while visitors are connected to this process.

Whose events a visitor sees is decided by the action that emitted them: the event's audience names the
customer contacts it is for (never on notes, activity lines or alerts) and the conversations it belongs to.
A visitor is its contact (found from its identity when it connects; a new visitor learns it from the
``contact.created`` that its first message brings, which comes before that message, matched on the
identity, as after a merge from ``contact.merged``). It is shown its contact's messages on its own channel,
and follows the conversations they are in, so a new conversation after a resolve is picked up without a
reconnect; status, delivery and typing events are shown for the conversations it follows.
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
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import WebSocket
from pydantic import ValidationError

from threadline.channels.webchat import repo
from threadline.db.types import utcnow
from threadline.domain.events import (
    CallChanged,
    CallMedia,
    ContactCreated,
    ContactMerged,
    ContactUpdated,
    ConversationCreated,
    ConversationTyping,
    ConversationUpdated,
    MessageCreated,
    MessageStatusChanged,
    RoutingState,
)
from threadline.domain.queues import QueueSettings
from threadline.plugins.host import Host, LiveConnection, LiveEvent, Published

log = structlog.get_logger(__name__)

QUEUE_MAX = 1000
API_ATTACHMENTS = "/api/v1/attachments/"
REFRESH_SECONDS = 0.5  # at most one positions query per this interval and process
NOT_WAITING: dict[str, Any] = {"type": "queue", "waiting": False}
FOLLOWED = (MessageCreated, MessageStatusChanged, ConversationCreated, ConversationUpdated, ConversationTyping,
            CallChanged, CallMedia)
FOLLOWED_NAMES = frozenset(cls.model_fields["name"].default for cls in FOLLOWED)
# the events that say which contact owns an identity: a new visitor's contact, a merge
CONTACT_NAMES = frozenset(cls.model_fields["name"].default for cls in (ContactCreated, ContactUpdated, ContactMerged))
IdentityKey = tuple[str, str, str]  # (kind, value, scope) of the visitor's identity


@dataclass(eq=False)
class Visitor:
    """One visitor connection and what it follows."""

    channel_id: int
    visitor_id: str
    identity: IdentityKey
    contact_id: int | None  # None until its first message made it a contact
    conversations: set[int] = field(default_factory=set)
    conn: LiveConnection | None = None  # its connection of the live stream core, once added to the hub
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

    @property
    def overflowed(self) -> bool:
        return self.conn is not None and self.conn.overflowed

    def push(self, item: LiveEvent | dict[str, Any]) -> None:
        if self.conn is not None:
            self.conn.push(item)

    def wants(self, ev: LiveEvent) -> bool:
        """Whether the event is for this visitor: its audience names the visitor's contact (learning the
        contact and the conversations as it goes)."""
        if ev.name in CONTACT_NAMES:
            self._learn_contact(ev)
            return False
        if ev.name not in FOLLOWED_NAMES or self.contact_id is None or self.contact_id not in ev.audience.contacts:
            return False  # not for this customer, or for agents only (notes, activity lines, alerts)
        event = ev.event
        if isinstance(event, MessageCreated):
            m = event.message
            if m.channel_instance_id != self.channel_id:  # the contact's conversation on another channel
                if m.direction == "out" and m.conversation_id in self.conversations:
                    self._may_wait(m.conversation_id, False)  # answered there
                return False
            self.conversations.add(m.conversation_id)
            if m.direction == "in" and m.meta.get("offline"):  # left with the offline form: answered by e-mail
                self.left_offline.add(m.conversation_id)
            self._may_wait(m.conversation_id, m.direction == "in" and m.conversation_id not in self.left_offline)
            return True
        if not self.conversations.intersection(ev.audience.conversations):
            return False
        if isinstance(event, ConversationCreated | ConversationUpdated):
            c = event.conversation
            self._may_wait(c.id, c.status == "open" and c.assignee_id is None and c.id not in self.left_offline)
        return event is not None

    def _learn_contact(self, ev: LiveEvent) -> None:
        """The contact that owns this visitor's identity: a new visitor's (its first message created it), or
        the one it was merged into."""
        if self.contact_id is not None and ev.name != ContactMerged.model_fields["name"].default:
            return  # known, and only a merge moves an identity to another contact (never decoded)
        event = ev.event
        contact = getattr(event, "contact", None)
        if contact is not None and any((i.kind, i.value, i.scope) == self.identity for i in contact.identities):
            self.contact_id = contact.id


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
        """Follow the routing state while visitors are connected here; drop it when none is."""
        if on and not self._unsubscribe:
            self._unsubscribe = [self.host.subscribe(RoutingState, self.on_routing_state)]
        elif not on:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe = []

    def on_routing_state(self, published: Published[RoutingState]) -> None:
        if any(v.maybe_waiting for v in self.visitors):
            self.schedule()

    def _followed_up(self, v: Visitor) -> Callable[[LiveEvent], None]:
        def after(ev: LiveEvent) -> None:  # the core offered the visitor an event (and queued it if wanted)
            if v.notice is not None and v.notice[0] not in v.maybe_waiting:  # assigned, answered, resolved
                self._show(v, None)
        return after

    # ------------------------------------------------------------------ queue notices

    def add(self, visitor: Visitor) -> None:
        """A new connection: it gets its current notice with the next refresh."""
        visitor.conn = self.host.live.connect(visitor.wants, queue_max=QUEUE_MAX, after=self._followed_up(visitor))
        self.visitors.add(visitor)
        self._follow(True)
        self.schedule()

    def remove(self, visitor: Visitor) -> None:
        self.visitors.discard(visitor)
        if visitor.conn is not None:
            self.host.live.disconnect(visitor.conn)
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
            v.push(NOT_WAITING)
            return
        cid, position, ewt, closed = notice
        v.push({"type": "queue", "waiting": True, "conversation_id": cid, "closed": closed,
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

    async def text(self, ev: LiveEvent) -> str | None:
        published = ev.published()
        f = None if published is None else await self.frame(published)
        return None if f is None else json.dumps(f)

    async def frame(self, published: Published[Any]) -> dict[str, Any] | None:
        event, seq = published.event, published.seq
        if isinstance(event, MessageCreated) and "call" in (event.message.meta or {}):
            return None  # a call's timeline entry: the widget follows the call itself (``call`` frames)
        if isinstance(event, CallChanged):
            return {"seq": seq, "type": "call", "id": event.call_id, "conversation_id": event.conversation_id,
                    "state": event.state, "end_cause": event.end_cause, "video": event.video}
        if isinstance(event, CallMedia):
            if event.to != "visitor":
                return None
            return {"seq": seq, "type": "call_media", "id": event.call_id, "sdp_type": event.sdp_type,
                    "sdp": event.sdp}
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


def _pong(text: str) -> str | None:
    """The widget pings now and then to notice a dead connection; anything else is ignored."""
    return '{"type":"pong"}' if text == "ping" else None


def _ready(seq: int, backlog: int) -> str:
    return json.dumps({"type": "ready", "seq": seq})


async def serve(ws: WebSocket, hub: VisitorHub, visitor: Visitor, after: int | None) -> None:
    """Run one accepted visitor connection until it closes."""
    maker = FrameMaker(hub.host, visitor.visitor_id)
    hub.add(visitor)
    try:
        assert visitor.conn is not None
        await hub.host.live.serve(ws, visitor.conn, after, maker.text, ready=_ready, answer=_pong)
    finally:
        hub.remove(visitor)
