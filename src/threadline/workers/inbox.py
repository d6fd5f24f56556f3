"""Turn stored provider requests into messages. Each inbox item is processed in its own transaction;
an item that fails is kept with its error and retried, never lost. At start-up every unprocessed item
is picked up again, so a crash between acknowledging and processing loses nothing."""

from __future__ import annotations

import asyncio
import contextlib

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

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 5


class InboxWorker:
    def __init__(self, db: Database, factory: AdapterFactory, *, sweep_seconds: float = 5.0) -> None:
        self.db = db
        self.factory = factory
        self.sweep_seconds = sweep_seconds
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, item_id: int) -> None:
        self._idle.clear()
        self.queue.put_nowait(item_id)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inbox-worker")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep(self) -> int:
        async with self.db.transaction(write=False) as session:
            ids = await repo.pending_inbox_ids(session, 1000, MAX_ATTEMPTS)
        for item_id in ids:
            await self.process(item_id)
        return len(ids)

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            await self.sweep()
        while True:
            try:
                item_id = await asyncio.wait_for(self.queue.get(), timeout=self.sweep_seconds)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    await self.sweep()
                continue
            await self.process(item_id)
            if self.queue.empty():
                self._idle.set()

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
