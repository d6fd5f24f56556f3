"""The host: the narrow interface an integration package's setup hook receives.

A package never imports the web layer, the workers or ``Services`` (import-linter checks it); everything it
needs from the running process comes through its ``Host``:

- inbound: ``store_inbound`` hands a provider request to the inbox, which commits it (and normally turns it
  into messages) before returning, so the caller may acknowledge it afterwards;
- channels: ``channels_of_kind`` (enabled instances with their adapters), ``channel_by_key`` (the hook key),
  ``adapter`` (for a channel row the package read itself), ``on_channels_changed``;
- storage: ``read(fn, ...)`` / ``write(fn, ...)`` run ``fn(session, ...)`` in one transaction and return its
  result: the package's own queries and actions, or the core's;
- events: ``subscribe(EventClass, handler)``: the handler gets a ``Published`` (the parsed model from
  ``domain/events.py``, its seq and when it was emitted), never a dict;
- contributions: ``add_routes`` (HTTP routes, mounted on the app), ``add_loop`` (background loops and
  servers, started with the process's workers in order and stopped in reverse), ``leader`` (a lock so a
  loop runs in one process only);
- live: ``live`` is the process's live stream core (livestream.py): ``connect(wants)`` a connection that
  receives the events ``wants`` accepts (a ``LiveEvent``: typed audience, the event decoded once), ``serve``
  an accepted websocket with it (ready frame, backlog on resume, live frames, back-pressure);
- ``settings``, ``files`` (the file store), ``http`` (the shared HTTP client), and ``current_actor``: the
  FastAPI dependency that authenticates a desk user or API token (``Annotated[Actor, Depends(...)]``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from threadline.channels.base import ChannelAdapter, Parsed, RawRequest
from threadline.config import Settings
from threadline.domain.stream import LiveEvent, Published
from threadline.files.store import FileStore
from threadline.loop import Lifecycle

if TYPE_CHECKING:  # types only: the plugins package sits below the storage and action layers
    from fastapi import APIRouter, WebSocket
    from sqlalchemy.ext.asyncio import AsyncSession

    from threadline.actions.scheduler import Claimed
    from threadline.db.models import ChannelInstanceRow
    from threadline.domain.access import Actor

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=BaseModel)
JobHandler = Callable[["AsyncSession", "Claimed", datetime], Awaitable[None]]


class InboxFull(RuntimeError):
    """Too many requests are waiting for the database: nothing was stored; answer "busy" (503, SMTP 451)
    so the provider retries."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel instance with its adapter (config decrypted, shared HTTP client, public hook URL)."""

    row: ChannelInstanceRow
    adapter: ChannelAdapter

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def key(self) -> str:
        return self.row.key

    @property
    def kind(self) -> str:
        return self.row.kind

    @property
    def default_queue_id(self) -> int | None:
        return self.row.default_queue_id


class Leadership(Protocol):
    """A lock one process at a time holds (PostgreSQL advisory lock or a file lock beside SQLite)."""

    @property
    def held(self) -> bool: ...
    async def try_acquire(self) -> bool: ...
    async def release(self) -> None: ...


class LiveConnection(Protocol):
    """One live connection (livestream.Connection)."""

    @property
    def overflowed(self) -> bool: ...

    def push(self, item: LiveEvent | dict[str, Any]) -> None:
        """Queue an event, or a ready-made state frame (sent as JSON, no seq)."""
        ...


class LiveFeed(Protocol):
    """The process's live stream core (livestream.LiveStream), as a package sees it."""

    def connect(self, wants: Callable[[LiveEvent], bool], *, queue_max: int = ...,
                after: Callable[[LiveEvent], None] | None = None) -> LiveConnection: ...

    def disconnect(self, conn: LiveConnection) -> None: ...

    async def serve(self, ws: WebSocket, conn: LiveConnection, after: int | None,
                    frame: Callable[[LiveEvent], Awaitable[str | None]], *, ready: Callable[[int, int], str],
                    answer: Callable[[str], str | None] | None = None) -> None: ...


class Host(Protocol):
    name: str  # the integration this host serves
    settings: Settings
    files: FileStore
    http: httpx.AsyncClient
    current_actor: Callable[..., Awaitable[Actor]]
    live: LiveFeed

    async def store_inbound(self, req: RawRequest, channel: Channel, dedupe_key: str,
                            items: Sequence[Parsed] | None = None) -> int | None:
        """Persist (and normally process) a provider request; its inbox id, or None when the dedupe key
        was stored before. Raises ``InboxFull`` when overloaded. ``items``: the request as the caller's
        ``adapter.parse`` gave it, so it is not parsed again (the raw request is stored all the same)."""
        ...

    async def channels_of_kind(self, kind: str) -> list[Channel]:
        """The enabled channel instances of ``kind`` (one whose config cannot be read is logged, skipped)."""
        ...

    async def channel_by_key(self, key: str) -> Channel | None:
        """The enabled channel instance with this hook key (cached; dropped when channels change)."""
        ...

    def adapter(self, row: ChannelInstanceRow) -> ChannelAdapter: ...

    async def read(self, fn: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
                   *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def write(self, fn: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
                    *args: P.args, **kwargs: P.kwargs) -> T: ...

    def subscribe(self, event: type[E], handler: Callable[[Published[E]], None]) -> Callable[[], None]: ...

    def on_channels_changed(self, fn: Callable[[], None]) -> None: ...

    def add_routes(self, router: APIRouter, *, body_limits: Mapping[str, int] | None = None) -> None:
        """Mount ``router`` on the web app; ``body_limits`` allows exact paths a larger request body
        (uploads) than ``THREADLINE_MAX_BODY_BYTES``."""
        ...

    def add_loop(self, loop: Lifecycle) -> None: ...

    def leader(self, name: str) -> Leadership: ...

    def on_job(self, kind: str, handler: JobHandler) -> None:
        """Run ``handler(session, job, now)`` for due scheduled jobs of ``kind`` (named ``<integration>.<what>``),
        in a write transaction that also ends the job: a handler that raises is retried with backoff and kept
        with its error, never lost (workers/scheduler.py)."""
        ...

    async def schedule(self, kind: str, key: str | int, due_at: datetime,
                       payload: dict[str, Any] | None = None) -> None:
        """Schedule (or move) the job (``kind``, ``key``) at ``due_at`` in a transaction of its own. Inside a
        ``write`` function, ``threadline.actions.scheduler.schedule_job(session, …)`` commits it with that
        function's changes instead."""
        ...

    async def cancel(self, kind: str, key: str | int) -> bool: ...


__all__ = ["Channel", "Host", "InboxFull", "JobHandler", "Leadership", "LiveConnection", "LiveEvent", "LiveFeed",
           "Published"]
