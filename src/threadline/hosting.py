"""The ``Host`` of plugins/host.py, implemented on the running pieces of one process, and ``plug_in``, which
runs every integration's setup hook with a host of its own.

A host collects what its package contributes: routes (mounted by the web app), loops (run by ``Services``
with the other workers) and typed event subscriptions (on the process's bus). A package reaches storage
only through ``read``/``write`` (one transaction around its own function) and the inbox only through
``store_inbound``, so it depends on none of the workers, ``Services`` or the web layer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import httpx
import structlog
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.scheduler import cancel_job, schedule_job
from threadline.adapters import AdapterFactory, ChannelDirectory
from threadline.bus.typed import TypedSubscriptions
from threadline.channels.base import ChannelAdapter, Parsed, RawRequest
from threadline.config import Settings
from threadline.db.leader import LeaderLock
from threadline.db.models import ChannelInstanceRow
from threadline.db.repos import channels as channels_repo
from threadline.db.session import Database
from threadline.domain.events import ChannelChanged
from threadline.domain.stream import Published
from threadline.files.store import FileStore
from threadline.livestream import LiveStream
from threadline.loop import Lifecycle
from threadline.plugins.base import Integration, PluginError
from threadline.plugins.host import Channel, JobHandler
from threadline.plugins.registry import Registered
from threadline.workers.inbox import InboxWorker
from threadline.workers.scheduler import TimerWorker

if TYPE_CHECKING:
    from threadline.domain.access import Actor

log = structlog.get_logger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=BaseModel)


async def no_web_layer() -> Actor:
    """The authentication dependency of a process built without the web app (its routes are never served)."""
    raise RuntimeError("this process has no web layer to authenticate users")


@dataclass(frozen=True)
class RouteSet:
    router: APIRouter
    body_limits: Mapping[str, int]


@dataclass
class Runtime:
    """What one process shares with every integration's host."""

    settings: Settings
    db: Database
    inbox: InboxWorker
    factory: AdapterFactory
    directory: ChannelDirectory
    events: TypedSubscriptions
    live: LiveStream
    files: FileStore
    http: httpx.AsyncClient
    current_actor: Callable[..., Awaitable[Actor]] = no_web_layer
    timers: TimerWorker | None = None  # runs the scheduled jobs the packages register (workers/scheduler.py)


class IntegrationHost:
    """The host of one integration package (plugins.host.Host)."""

    def __init__(self, name: str, runtime: Runtime) -> None:
        self.name = name
        self._rt = runtime
        self.settings = runtime.settings
        self.files = runtime.files
        self.http = runtime.http
        self.live = runtime.live
        self.current_actor = runtime.current_actor
        self.routes: list[RouteSet] = []
        self.loops: list[Lifecycle] = []

    async def store_inbound(self, req: RawRequest, channel: Channel, dedupe_key: str,
                            items: Sequence[Parsed] | None = None) -> int | None:
        return await self._rt.inbox.store(req, channel.row, dedupe_key, items)

    async def channels_of_kind(self, kind: str) -> list[Channel]:
        found = []
        for row in await self.read(channels_repo.list_channels):
            if row.kind != kind or not row.enabled:
                continue
            try:
                found.append(Channel(row, self._rt.factory.for_row(row)))
            except Exception:  # noqa: BLE001 - a broken channel must not stop the others
                log.exception("channel_config_unreadable", channel_id=row.id, integration=self.name)
        return found

    async def channel_by_key(self, key: str) -> Channel | None:
        row = await self._rt.directory.by_key(key)
        if row is None or not row.enabled:
            return None
        try:
            return Channel(row, self._rt.factory.for_row(row))
        except Exception:  # noqa: BLE001 - an uninstalled kind or a config that cannot be read: no channel
            log.exception("channel_config_unreadable", channel_id=row.id, integration=self.name)
            return None

    def adapter(self, row: ChannelInstanceRow) -> ChannelAdapter:
        return self._rt.factory.for_row(row)

    async def read(self, fn: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
                   *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._rt.db.transaction(write=False) as session:
            return await fn(session, *args, **kwargs)

    async def write(self, fn: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
                    *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._rt.db.transaction(write=True) as session:
            return await fn(session, *args, **kwargs)

    def subscribe(self, event: type[E], handler: Callable[[Published[E]], None]) -> Callable[[], None]:
        return self._rt.events.subscribe(event, handler)

    def on_channels_changed(self, fn: Callable[[], None]) -> None:
        self._rt.events.subscribe(ChannelChanged, lambda _: fn())

    def add_routes(self, router: APIRouter, *, body_limits: Mapping[str, int] | None = None) -> None:
        self.routes.append(RouteSet(router, dict(body_limits or {})))

    def add_loop(self, loop: Lifecycle) -> None:
        self.loops.append(loop)

    def leader(self, name: str) -> LeaderLock:
        return LeaderLock(self._rt.db, name)

    def _own(self, kind: str) -> str:
        if not kind.startswith(f"{self.name}."):
            raise PluginError(f"integration {self.name!r}: job kind {kind!r} must start with '{self.name}.' (a "
                              "package names only its own jobs)")
        return kind

    def on_job(self, kind: str, handler: JobHandler) -> None:
        if self._rt.timers is None:
            raise PluginError(f"integration {self.name!r}: this process runs no scheduler")
        self._rt.timers.register(self._own(kind), handler)

    async def schedule(self, kind: str, key: str | int, due_at: datetime,
                       payload: dict[str, Any] | None = None) -> None:
        await self.write(schedule_job, self._own(kind), key, due_at, payload)

    async def cancel(self, kind: str, key: str | int) -> bool:
        return await self.write(cancel_job, self._own(kind), key)


@dataclass
class PluggedIn:
    integration: Integration
    origin: str
    host: IntegrationHost
    runtime: Any = field(default=None)  # what the setup hook returned


def plug_in(entries: tuple[Registered, ...], runtime: Runtime) -> dict[str, PluggedIn]:
    """Run each integration's setup hook with its own host, in registry order. A hook that raises refuses
    the start with a message naming the package."""
    plugged: dict[str, PluggedIn] = {}
    for entry in entries:
        integration = entry.integration
        host = IntegrationHost(integration.name, runtime)
        result = None
        if integration.setup is not None:
            try:
                result = integration.setup(host)
            except Exception as exc:
                raise PluginError(f"integration {integration.name!r} ({entry.origin}): its setup failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        plugged[integration.name] = PluggedIn(integration, entry.origin, host, result)
    return plugged
