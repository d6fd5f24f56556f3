"""Turn stored provider requests into messages. Each inbox item is processed in its own transaction;
an item that fails is kept with its error and retried, never lost. At start-up every unprocessed item
is picked up again, so a crash between acknowledging and processing loses nothing."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.exc import IntegrityError

from threadline.actions import messages as message_actions
from threadline.channels.base import ChannelError, RawRequest
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import plumbing as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.messages import InboundMessage
from threadline.workers.channels import AdapterFactory
from threadline.workers.loop import BackgroundLoop

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 5


class InboxWorker(BackgroundLoop):
    name = "inbox-worker"

    def __init__(self, db: Database, factory: AdapterFactory, *, sweep_seconds: float = 5.0) -> None:
        super().__init__(interval=sweep_seconds)
        self.db = db
        self.factory = factory
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self._swept = False

    def submit(self, item_id: int) -> None:
        self.queue.put_nowait(item_id)
        self.wake()

    async def sweep(self) -> int:
        """Process every stored item that is not done yet (at start-up, and now and then)."""
        async with self.db.transaction(write=False) as session:
            ids = await repo.pending_inbox_ids(session, 1000, MAX_ATTEMPTS)
        for item_id in ids:
            await self.process(item_id)
        return len(ids)

    async def tick(self) -> float | None:
        if not self._swept:
            self._swept = True
            await self.sweep()
        if self.queue.empty():
            await self.sweep()  # woken by the interval: pick up anything stored by another process
            return None
        while not self.queue.empty() and not self._stopping.is_set():
            await self.process(self.queue.get_nowait())
        return 0.0 if not self.queue.empty() else None

    async def process(self, item_id: int) -> None:
        try:
            async with self.db.transaction(write=True) as session:
                item = await repo.get_inbox_item(session, item_id)
                if item is None or item.processed_at is not None:
                    return
                channel = await channels_repo.get_channel(session, item.channel_instance_id)
                if channel is None:
                    item.processed_at, item.error = utcnow(), "channel deleted"
                    return
                adapter = self.factory.for_row(channel)
                req = RawRequest(item.method, item.url, item.headers, item.body)
                for parsed in adapter.parse(req):
                    if isinstance(parsed, InboundMessage):
                        await message_actions.receive_inbound(session, channel, parsed)
                    else:
                        await message_actions.apply_status(session, channel, parsed)
                item.processed_at = utcnow()
                item.attempts += 1
        except (ChannelError, IntegrityError, LookupError, ValueError) as exc:
            await self._record_failure(item_id, f"{exc.__class__.__name__}: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: keep the raw request, record why, retry on the next sweep
            log.exception("inbox_item_failed", item_id=item_id)
            await self._record_failure(item_id, f"{exc.__class__.__name__}: {exc}")

    async def _record_failure(self, item_id: int, error: str) -> None:
        async with self.db.transaction(write=True) as session:
            item = await repo.get_inbox_item(session, item_id)
            if item is not None:
                item.attempts += 1
                item.error = error[:4000]
        log.warning("inbox_item_error", item_id=item_id, error=error)
