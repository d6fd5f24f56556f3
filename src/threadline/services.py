"""The running pieces of one Threadline process, wired once at start-up (web app lifespan, CLI, tests).

``loops`` is the list of what runs in the background: the core workers, then the loops the integration
packages contribute through their hosts (hosting.py). They are started in that order and stopped in
reverse. Each loop names the write tags that wake it (``BackgroundLoop.wakes_on``); after a commit the
loops waiting for what it wrote are woken here, and, with a bus that crosses processes (Redis, the tail bus),
the other processes too when one of those loops does not run in this one (another process is its leader).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from threadline.actions.group_commit import GroupCommit
from threadline.adapters import AdapterFactory, ChannelDirectory
from threadline.bus.base import Bus
from threadline.bus.memory import MemoryBus
from threadline.bus.outbox import Relay
from threadline.bus.tail import TailBus
from threadline.bus.typed import TypedSubscriptions
from threadline.config import Settings
from threadline.db.session import Database
from threadline.domain.events import ChannelChanged
from threadline.domain.scheduler import JobRetry
from threadline.enrichment.redaction import RedactionPolicy
from threadline.files.links import link_key
from threadline.files.store import FileStore
from threadline.hosting import PluggedIn, RouteSet, Runtime, no_web_layer, plug_in
from threadline.livestream import LiveStream
from threadline.loop import BackgroundLoop, Lifecycle
from threadline.plugins import registry
from threadline.security import SecretBox
from threadline.siblings import run_dir
from threadline.voice.worker import Voice
from threadline.webhooks.worker import Webhooks
from threadline.workers.crm import CrmLookupWorker
from threadline.workers.inbox import InboxWorker
from threadline.workers.jobs import register_core_jobs
from threadline.workers.media import MediaWorker
from threadline.workers.router import RoutingWorker
from threadline.workers.scheduler import TimerWorker
from threadline.workers.sender import SenderWorker
from threadline.workers.sla import SlaFollower

if TYPE_CHECKING:
    from threadline.domain.access import Actor


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: Bus
    events: TypedSubscriptions  # typed subscriptions on the bus (bus/typed.py)
    live: LiveStream  # fans events out to this process's websockets (desk and widget; livestream.py)
    box: SecretBox
    http: httpx.AsyncClient
    factory: AdapterFactory
    channels: ChannelDirectory
    files: FileStore
    relay: Relay
    inbox: InboxWorker
    sender: SenderWorker
    router: RoutingWorker  # the routing worker (ACD), leader-elected like the relay
    media: MediaWorker  # downloads media that messaging providers only link (workers/media.py)
    voice: Voice  # calls, a feature package: the connector (voice/worker.py) and its job
    webhooks: Webhooks  # outgoing webhooks, a feature package: dispatcher (leader) and sender (webhooks/worker.py)
    timers: TimerWorker  # durable timers: runs due scheduled jobs (workers/scheduler.py)
    sla: SlaFollower  # conversation SLA deadlines: an outbox follower (workers/sla.py)
    crm: CrmLookupWorker | None = None  # enriches new contacts from the CRM (only if a lookup URL is set)
    writes: GroupCommit = field(init=False)  # agents' writes that arrive together share a transaction
    loops: list[Lifecycle] = field(default_factory=list)  # started in order, stopped in reverse
    integrations: dict[str, PluggedIn] = field(default_factory=dict)  # by name, with their hosts
    _wakers: dict[str, list[BackgroundLoop]] = field(default_factory=dict)  # write tag -> loops it wakes
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, *,
              current_actor: Callable[..., Awaitable[Actor]] = no_web_layer) -> Services:
        """Wire one process. ``current_actor`` is the web layer's authentication dependency, handed to the
        routes integrations contribute. Raises ``PluginError`` when an integration package is refused."""
        found = registry.load()
        db = Database(settings.resolved_database_url)
        bus: Bus
        if settings.redis_url:
            from threadline.bus.redis import RedisBus

            bus = RedisBus(settings.redis_url, settings.resolved_redis_prefix)
        elif settings.processes > 1:  # several processes on this host: each follows the outbox (bus/tail.py)
            bus = TailBus(db, run_dir(settings.data_dir), poll_seconds=settings.relay_poll_seconds)
        else:
            bus = MemoryBus()
        events = TypedSubscriptions(bus)
        box = SecretBox(settings.resolved_secret_key)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        factory = AdapterFactory(box, http, settings.public_base_url, link_key(settings.resolved_secret_key))
        files = FileStore(settings.data_dir / "files")
        inbox = InboxWorker(db, factory, reopen_within=timedelta(minutes=settings.reopen_window_minutes)
                            if settings.reopen_window_minutes else None,
                            redaction=RedactionPolicy.preset(settings.redaction, region=settings.redaction_region))
        sender = SenderWorker(db, factory, max_attempts=settings.sender_max_attempts,
                              backoff_base=settings.sender_backoff_base, backoff_max=settings.sender_backoff_max,
                              concurrency=settings.sender_concurrency)
        inbox.files = sender.files = files
        channels = ChannelDirectory(db)
        events.subscribe(ChannelChanged, lambda _: channels.invalidate())
        crm = CrmLookupWorker(db, events, http, url=settings.crm_lookup_url, secret=settings.crm_lookup_secret or "",
                              timeout=settings.crm_timeout_seconds) if settings.crm_lookup_url else None
        timers = TimerWorker(db, retry=JobRetry(max_attempts=settings.scheduler_max_attempts,
                                                base_seconds=settings.scheduler_backoff_base,
                                                max_seconds=settings.scheduler_backoff_max))
        register_core_jobs(timers, settings.retention, logs=Webhooks.retained)
        sla = SlaFollower(db)
        bus.subscribe(sla.on_event)
        voice = Voice(db, factory, timers, files=files, recording_days=settings.retention_call_recordings_days,
                      ice_servers=settings.webrtc_ice_servers, max_relayed_calls=settings.webrtc_max_relayed_calls,
                      stt_model_dir=settings.stt_model_dir, stt_language=settings.stt_language)
        bus.subscribe(voice.on_event)
        live = LiveStream(bus, db)
        services = cls(settings, db, bus, events, live, box, http, factory, channels, files,
                       relay=Relay(db, bus, poll_seconds=settings.relay_poll_seconds), inbox=inbox, sender=sender,
                       router=RoutingWorker(db, events), media=MediaWorker(db, factory, files),
                       webhooks=Webhooks(settings, db, bus, box), timers=timers, sla=sla, crm=crm, voice=voice)
        services.writes = GroupCommit(db)
        services.loops = [services.relay, inbox, sender, services.router, services.media,
                          *([crm] if crm is not None else []), services.webhooks, timers, sla, voice]
        services.integrations = plug_in(found.entries, Runtime(settings, db, inbox, factory, channels, events,
                                                               live, files, http, current_actor, timers))
        for plugged in services.integrations.values():
            services.loops.extend(plugged.host.loops)
        for loop in _wakeable(services.loops):
            for tag in loop.wakes_on:
                services._wakers.setdefault(tag, []).append(loop)
            bus.on_wake(loop.wake)  # what another process wrote (Redis, the tail bus)
        db.after_commit.append(services._committed)
        return services

    @property
    def routes(self) -> list[RouteSet]:
        """The HTTP routes integrations contribute (mounted by the web app)."""
        return [r for plugged in self.integrations.values() for r in plugged.host.routes]

    def loop(self, name: str) -> Lifecycle:
        """The loop called ``name`` (tests, diagnostics)."""
        for loop in self.loops:
            if loop.name == name:
                return loop
        raise KeyError(f"no loop {name!r} runs here; loops: {', '.join(loop.name for loop in self.loops)}")

    def _committed(self, written: frozenset[str]) -> None:
        """After a commit: wake the loops that wait for what it wrote (events → relay, jobs → sender…). Writes
        that wake nobody (the relay's own bookkeeping) cost nothing."""
        woken = {id(loop): loop for tag in written for loop in self._wakers.get(tag, ())}.values()
        for loop in woken:
            loop.wake()
        if getattr(self.bus, "crosses_processes", False) and not all(_runs_here(loop) for loop in woken):
            task = asyncio.get_running_loop().create_task(self.bus.wake())
            self._background.append(task)
            task.add_done_callback(self._background.remove)

    async def start(self) -> None:
        await self.bus.start()
        if self.settings.run_workers:
            for loop in self.loops:
                await loop.start()

    async def stop(self) -> None:
        for loop in reversed(self.loops):
            await loop.stop()
        await self.bus.stop()
        await self.http.aclose()
        await self.db.dispose()


def _wakeable(loops: list[Lifecycle]) -> Iterator[BackgroundLoop]:
    """The loops that wake on write tags, groups (``parts``) opened up."""
    for loop in loops:
        parts: Any = getattr(loop, "parts", (loop,))
        for part in parts:
            if isinstance(part, BackgroundLoop) and part.wakes_on:
                yield part


def _runs_here(loop: BackgroundLoop) -> bool:
    """Whether waking it in this process is enough: it runs here and, if leader-elected, leads here."""
    leader = getattr(loop, "leader", None)
    return loop.running and (leader is None or leader.held)
