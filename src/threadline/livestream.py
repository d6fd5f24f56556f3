"""One live stream core for every websocket that follows the event log: the desk's ``/api/v1/stream``
(web/live.py) and the web chat widget's ``/widget/ws`` (reached through the package's ``Host.live``).

The process subscribes to the bus once. Each envelope becomes a ``LiveEvent`` (typed audience; the event
decoded through the event union when a connection first asks for it) and is offered to every connection of
this process whose ``wants`` accepts it; a process without connections decodes nothing. What a connection
wants is its owner's rule (the desk: the event's audience includes the user; the widget: the audience names
the visitor's contact), the same rule for the live events and for the backlog read on resume.

Back-pressure: each connection has a bounded queue. A connection that falls that far behind has everything
queued dropped and is closed with 4008 ("too slow; reconnect with after=<seq>"): it resumes after the last
event it really received, so nothing is skipped. ``serve`` runs one accepted socket: a ready frame, the
backlog after ``after`` (from the outbox table), then live events in seq order, none twice (anything at or
below the last sent seq is dropped), plus the ready-made state frames its owner pushes (no seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from threadline.bus.base import Bus, Envelope
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.session import Database
from threadline.domain.events import Audience
from threadline.domain.stream import LiveEvent

log = structlog.get_logger(__name__)

QUEUE_MAX = 5000
BACKLOG_PAGE = 1000
Item = LiveEvent | dict[str, Any] | None  # an event, a ready-made state frame, or None: "too slow, reconnect"
Wants = Callable[[LiveEvent], bool]
Frame = Callable[[LiveEvent], Awaitable[str | None]]  # the text to send for an event (None: nothing)


class Connection:
    """One live connection of this process: what it wants, and the bounded queue of what to send it."""

    def __init__(self, wants: Wants, queue_max: int = QUEUE_MAX,
                 after: Callable[[LiveEvent], None] | None = None) -> None:
        self.wants = wants
        self.after = after  # called after each event was offered (the owner's follow-up, e.g. a state frame)
        self.queue: asyncio.Queue[Item] = asyncio.Queue(queue_max)
        self.overflowed = False

    def push(self, item: LiveEvent | dict[str, Any]) -> None:
        """Queue an event or a state frame; a full queue drops everything queued and asks for a reconnect."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # tells the sender loop to disconnect


def live_event(env: Envelope) -> LiveEvent:
    return LiveEvent(env.seq, env.name, env.payload, Audience.model_validate(env.audience), env.created_at)


class LiveStream:
    """Fans the bus's events out to the live connections of this process."""

    def __init__(self, bus: Bus, db: Database) -> None:
        self.db = db
        self.connections: set[Connection] = set()
        bus.subscribe(self._on_envelope)

    def connect(self, wants: Wants, *, queue_max: int = QUEUE_MAX,
                after: Callable[[LiveEvent], None] | None = None) -> Connection:
        conn = Connection(wants, queue_max, after)
        self.connections.add(conn)
        return conn

    def disconnect(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def _on_envelope(self, env: Envelope) -> None:
        if not self.connections:
            return
        try:
            ev = live_event(env)
        except ValidationError:
            log.warning("live_event_audience_unreadable", seq=env.seq, name=env.name)
            return
        self.offer(ev)

    def offer(self, ev: LiveEvent) -> None:
        for conn in list(self.connections):
            if conn.overflowed:
                continue
            if conn.wants(ev):
                conn.push(ev)
            if conn.after is not None:
                conn.after(ev)

    async def last_seq(self) -> int:
        async with self.db.transaction(write=False) as session:
            return await plumbing_repo.max_seq(session)

    async def backlog(self, after: int, wants: Wants) -> list[LiveEvent]:
        """The stored events after ``after`` that ``wants`` accepts, in seq order."""
        out: list[LiveEvent] = []
        cursor = after
        while True:
            async with self.db.transaction(write=False) as session:
                rows = await plumbing_repo.events_after(session, cursor, BACKLOG_PAGE)
            for r in rows:
                cursor = r.seq or cursor
                try:
                    ev = LiveEvent(r.seq or 0, r.name, r.payload, Audience.model_validate(r.audience), r.created_at)
                except ValidationError:
                    continue
                if wants(ev):
                    out.append(ev)
            if len(rows) < BACKLOG_PAGE:
                return out

    async def serve(self, ws: WebSocket, conn: Connection, after: int | None, frame: Frame, *,
                    ready: Callable[[int, int], str],
                    answer: Callable[[str], str | None] | None = None) -> None:
        """Run one accepted, connected socket until it closes: ``ready(seq, backlog size)``, the backlog after
        ``after`` (None: from now on), then live events and state frames. ``answer`` replies to what the
        client sends (e.g. a ping); anything else it sends is ignored. Disconnects ``conn`` at the end."""
        lock = asyncio.Lock()  # replies and frames share the socket

        async def send(text: str) -> None:
            async with lock:
                await ws.send_text(text)

        try:
            if after is None:
                last = await self.last_seq()
                pending: list[LiveEvent] = []
            else:
                last = after
                pending = await self.backlog(last, conn.wants)
            await send(ready(last, len(pending)))
            for ev in pending:
                if ev.seq > last:
                    text = await frame(ev)
                    if text is not None:
                        await send(text)
                    last = ev.seq
            receiver = asyncio.create_task(_receive(ws, send, answer))
            try:
                while True:
                    if conn.queue.empty():
                        getter = asyncio.create_task(conn.queue.get())
                        done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                        if receiver in done:
                            getter.cancel()
                            return
                        batch = [getter.result()]
                    else:
                        batch = []
                    # Send everything already queued in one go: waiting a loop turn per event would let a
                    # busy process (a long database batch between turns) fall behind the event rate.
                    while not conn.queue.empty():
                        batch.append(conn.queue.get_nowait())
                    for item in batch:
                        if item is None:
                            await ws.close(code=4008, reason=f"too slow; reconnect with after={last}")
                            return
                        if isinstance(item, dict):  # a state frame: no seq
                            await send(json.dumps(item))
                            continue
                        if item.seq <= last:
                            continue
                        text = await frame(item)
                        if text is not None:
                            await send(text)
                        last = item.seq
            finally:
                receiver.cancel()
        except WebSocketDisconnect:
            pass
        finally:
            self.disconnect(conn)
            if ws.client_state is WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close()


async def _receive(ws: WebSocket, send: Callable[[str], Awaitable[None]],
                   answer: Callable[[str], str | None] | None) -> None:
    """Read what the client sends (answering it when asked to), to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            text = await ws.receive_text()
            reply = answer(text) if answer is not None else None
            if reply is not None:
                await send(reply)
