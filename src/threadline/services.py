"""The running pieces of one Threadline process, wired once at start-up (web app lifespan, CLI, tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from threadline.bus.base import Bus
from threadline.bus.memory import MemoryBus
from threadline.bus.outbox import Relay
from threadline.config import Settings
from threadline.db.session import Database
from threadline.files.store import FileStore
from threadline.security import SecretBox
from threadline.workers.channels import AdapterFactory, ChannelDirectory
from threadline.workers.inbox import InboxWorker
from threadline.workers.sender import SenderWorker


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

    @classmethod
    def build(cls, settings: Settings) -> Services:
        db = Database(settings.resolved_database_url)
        bus: Bus
        if settings.redis_url:
            from threadline.bus.redis import RedisBus

            bus = RedisBus(settings.redis_url)
        else:
            bus = MemoryBus()
        box = SecretBox(settings.resolved_secret_key)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        factory = AdapterFactory(box, http)
        relay = Relay(db, bus, poll_seconds=settings.relay_poll_seconds)
        inbox = InboxWorker(db, factory)
        sender = SenderWorker(db, factory, max_attempts=settings.sender_max_attempts,
                              backoff_base=settings.sender_backoff_base, backoff_max=settings.sender_backoff_max)
        bus.on_wake(sender.wake)  # jobs written by another process
        channels = ChannelDirectory(db)
        bus.subscribe(lambda env: channels.invalidate() if env.name == "channel.changed" else None)
        files = FileStore(settings.data_dir / "files")
        services = cls(settings, db, bus, box, http, factory, channels, files, relay, inbox, sender)
        db.after_commit.append(services._committed)
        return services

    def _committed(self, written: frozenset[str]) -> None:
        """After a write that stored events or jobs: wake the relay and the sender (here, and the leader
        via Redis). Writes that store neither (the relay's own bookkeeping) wake nobody."""
        if "events" in written:
            self.relay.wake()
        if "jobs" in written:
            self.sender.wake()
        if self.settings.redis_url and not (self.relay.leader.held and self.sender.leader.held):
            task = asyncio.get_running_loop().create_task(self.bus.wake())
            self._background.append(task)
            task.add_done_callback(self._background.remove)

    async def start(self) -> None:
        await self.bus.start()
        if self.settings.run_workers:
            await self.relay.start()
            await self.inbox.start()
            await self.sender.start()

    async def stop(self) -> None:
        await self.sender.stop()
        await self.inbox.stop()
        await self.relay.stop()
        await self.bus.stop()
        await self.http.aclose()
        await self.db.dispose()
