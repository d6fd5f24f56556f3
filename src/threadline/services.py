"""The running pieces of one Threadline process, wired once at start-up (web app lifespan, CLI, tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from threadline.bus.base import Bus
from threadline.bus.memory import MemoryBus
from threadline.bus.outbox import Relay
from threadline.config import Settings
from threadline.db.session import Database
from threadline.domain.scheduler import JobRetry
from threadline.files.links import link_key
from threadline.files.store import FileStore
from threadline.security import SecretBox
from threadline.workers.channels import AdapterFactory, ChannelDirectory
from threadline.workers.crm import CrmLookupWorker
from threadline.workers.inbox import InboxWorker
from threadline.workers.jobs import register_core_jobs
from threadline.workers.mail_in import MailInbound
from threadline.workers.media import MediaWorker
from threadline.workers.router import Router
from threadline.workers.scheduler import TimerWorker
from threadline.workers.sender import SenderWorker
from threadline.workers.sla import SlaFollower
from threadline.workers.webhooks import Webhooks


@dataclass
class Services:
    settings: Settings
    db: Database
    bus: Bus
    box: SecretBox
    http: httpx.AsyncClient
    factory: AdapterFactory
    channels: ChannelDirectory
    files: FileStore
    relay: Relay
    inbox: InboxWorker
    sender: SenderWorker
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    router: Router | None = None  # the routing worker (ACD), leader-elected like the relay
    mail: MailInbound | None = None  # email in: SMTP receiver (if a port is set) and IMAP pollers
    media: MediaWorker | None = None  # downloads media that messaging providers only link (workers/media.py)
    crm: CrmLookupWorker | None = None  # enriches new contacts from the CRM (if a lookup URL is set)
    webhooks: Webhooks | None = None  # outgoing webhooks: dispatcher (leader) and sender (workers/webhooks.py)
    timers: TimerWorker | None = None  # durable timers: runs due scheduled jobs (workers/scheduler.py)
    sla: SlaFollower | None = None  # conversation SLA deadlines: an outbox follower (workers/sla.py)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.resolved_database_url)
        bus: Bus
        if settings.redis_url:
            from threadline.bus.redis import RedisBus

            bus = RedisBus(settings.redis_url, settings.resolved_redis_prefix)
        else:
            bus = MemoryBus()
        box = SecretBox(settings.resolved_secret_key)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        factory = AdapterFactory(box, http, settings.public_base_url, link_key(settings.resolved_secret_key))
        relay = Relay(db, bus, poll_seconds=settings.relay_poll_seconds)
        inbox = InboxWorker(db, factory, reopen_within=timedelta(minutes=settings.reopen_window_minutes)
                            if settings.reopen_window_minutes else None)
        sender = SenderWorker(db, factory, max_attempts=settings.sender_max_attempts,
                              backoff_base=settings.sender_backoff_base, backoff_max=settings.sender_backoff_max,
                              concurrency=settings.sender_concurrency)
        bus.on_wake(sender.wake)  # jobs written by another process
        channels = ChannelDirectory(db)
        bus.subscribe(lambda env: channels.invalidate() if env.name == "channel.changed" else None)
        files = FileStore(settings.data_dir / "files")
        inbox.files = sender.files = files
        services = cls(settings, db, bus, box, http, factory, channels, files, relay, inbox, sender)
        services.router = Router(db, bus)
        services.media = MediaWorker(db, factory, files)
        services.mail = mail = MailInbound(settings, db, inbox, factory)
        bus.subscribe(lambda env: mail.on_channel_changed() if env.name == "channel.changed" else None)
        if settings.crm_lookup_url:
            services.crm = CrmLookupWorker(db, bus, http, url=settings.crm_lookup_url,
                                           secret=settings.crm_lookup_secret or "", timeout=settings.crm_timeout_seconds)
        services.webhooks = webhooks = Webhooks(settings, db, bus, box)
        bus.on_wake(webhooks.wake)  # deliveries or endpoints written by another process
        services.timers = timers = TimerWorker(db, retry=JobRetry(
            max_attempts=settings.scheduler_max_attempts, base_seconds=settings.scheduler_backoff_base,
            max_seconds=settings.scheduler_backoff_max))
        register_core_jobs(timers, settings.retention)
        bus.on_wake(timers.wake)  # jobs scheduled by another process
        services.sla = sla = SlaFollower(db)
        bus.subscribe(sla.on_event)
        db.after_commit.append(services._committed)
        return services

    def _committed(self, written: frozenset[str]) -> None:
        """After a write that stored events or jobs: wake the relay, the sender and the timers (here, and
        the other processes via Redis). Writes that store neither (the relay's own bookkeeping) wake nobody."""
        if "events" in written:
            self.relay.wake()
        if "jobs" in written:
            self.sender.wake()
        if "media" in written and self.media is not None:
            self.media.wake()
        if "scheduled_jobs" in written and self.timers is not None:
            self.timers.wake()  # it may be due sooner than the timer's next wake
        if self.webhooks is not None:
            if "webhook_deliveries" in written:
                self.webhooks.sender.wake()
            if "webhook_endpoints" in written:
                self.webhooks.dispatcher.wake()
        # Another process must hear of it when this one does not run the relay or the workers (the CLI).
        if self.settings.redis_url and not (self.relay.leader.held and self.settings.run_workers):
            task = asyncio.get_running_loop().create_task(self.bus.wake())
            self._background.append(task)
            task.add_done_callback(self._background.remove)

    async def start(self) -> None:
        await self.bus.start()
        if self.settings.run_workers:
            await self.relay.start()
            await self.inbox.start()
            await self.sender.start()
            if self.router is not None:
                await self.router.start()
            if self.media is not None:
                await self.media.start()
            if self.mail is not None:
                await self.mail.start()
            if self.crm is not None:
                await self.crm.start()
            if self.webhooks is not None:
                await self.webhooks.start()
            if self.timers is not None:
                await self.timers.start()
            if self.sla is not None:
                await self.sla.start()

    async def stop(self) -> None:
        if self.sla is not None:
            await self.sla.stop()
        if self.timers is not None:
            await self.timers.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.crm is not None:
            await self.crm.stop()
        if self.mail is not None:
            await self.mail.stop()
        if self.router is not None:
            await self.router.stop()
        if self.media is not None:
            await self.media.stop()
        await self.sender.stop()
        await self.inbox.stop()
        await self.relay.stop()
        await self.bus.stop()
        await self.http.aclose()
        await self.db.dispose()
