"""Turn stored provider requests into messages. Items are processed in batches, one transaction per
batch and a savepoint per item; an item that fails is kept with its error and retried, never lost. At start-up every unprocessed item
is picked up again, so a crash between acknowledging and processing loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import messages as message_actions
from threadline.actions.events import savepoint
from threadline.channels.base import ChannelError, RawRequest
from threadline.db.models import ChannelInstanceRow, InboxItemRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import plumbing as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.messages import InboundMessage, StatusUpdate
from threadline.workers.channels import AdapterFactory
from threadline.workers.loop import BackgroundLoop

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 5
BATCH = 200


class InboxWorker(BackgroundLoop):
    name = "inbox-worker"

    def __init__(self, db: Database, factory: AdapterFactory, *, sweep_seconds: float = 5.0,
                 batch_size: int = BATCH) -> None:
        super().__init__(interval=sweep_seconds)
        self.db = db
        self.factory = factory
        self.batch_size = batch_size
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self._to_store: list[tuple[dict[str, Any], asyncio.Future[int | None]]] = []
        self._storer: asyncio.Task[None] | None = None
        self._swept = False

    def submit(self, item_id: int) -> None:
        self.queue.put_nowait(item_id)
        self.wake()

    async def store(self, values: dict[str, Any]) -> int | None:
        """Persist a provider's request and queue it for processing; return its id, or None when the same
        dedupe key was stored before. Returns once the request is committed, so the caller may then
        acknowledge it. Requests that arrive together share one transaction (group commit): while one
        batch commits the next gathers, so a busy channel costs a few transactions per second rather
        than one per request."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._to_store.append((values, future))
        if self._storer is None or self._storer.done():
            self._storer = asyncio.create_task(self._store_pending(), name="inbox-store")
        # shielded: a client that hangs up does not cancel a write that other requests share
        item_id = await asyncio.shield(future)
        if item_id is not None:
            self.submit(item_id)
        return item_id

    async def _store_pending(self) -> None:
        while self._to_store:
            batch, self._to_store = self._to_store, []
            try:
                async with self.db.transaction(write=True) as session:
                    ids = await repo.insert_inbox_items(session, [v for v, _ in batch])
            except IntegrityError:  # another process stored one of these keys just now: one by one
                ids = []
                for values, _ in batch:
                    try:
                        async with self.db.transaction(write=True) as session:
                            ids.append(await repo.insert_inbox_item(session, values))
                    except Exception as exc:  # noqa: BLE001 - reported to the waiting request
                        ids.append(exc)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                ids = [exc] * len(batch)  # type: ignore[list-item]
            for (_, future), result in zip(batch, ids, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def sweep(self) -> int:
        """Process every stored item that is not done yet (at start-up, and now and then)."""
        async with self.db.transaction(write=False) as session:
            ids = await repo.pending_inbox_ids(session, 1000, MAX_ATTEMPTS)
        for i in range(0, len(ids), self.batch_size):
            await self.process_batch(ids[i:i + self.batch_size])
        return len(ids)

    async def tick(self) -> float | None:
        if not self._swept or self.queue.empty():
            # at start-up, and when woken by the interval: pick up anything stored by another process
            # or left by a crash
            self._swept = True
            await self.sweep()
        while not self.queue.empty() and not self._stopping.is_set():
            batch: list[int] = []
            while not self.queue.empty() and len(batch) < self.batch_size:
                batch.append(self.queue.get_nowait())
            await self.process_batch(batch)
        return None

    async def process(self, item_id: int) -> None:
        await self.process_batch([item_id])

    async def process_batch(self, item_ids: list[int]) -> None:
        """Process items in one transaction. The whole batch is tried at once (a fixed number of queries
        however many items); if that fails, each item is retried in its own savepoint, so an item that
        fails is rolled back alone and keeps its error for a later retry while the others commit."""
        if not item_ids:
            return
        try:
            async with self.db.transaction(write=True) as session:
                items = await repo.lock_unprocessed_inbox_items(session, item_ids)
                channels = await channels_repo.get_channels(session, {i.channel_instance_id for i in items})
                work: list[tuple[InboxItemRow, ChannelInstanceRow]] = []
                for item in items:
                    item.attempts += 1
                    channel = channels.get(item.channel_instance_id)
                    if channel is None:  # nothing can ever process it: done, with the reason
                        item.processed_at, item.error = utcnow(), "channel deleted"
                    else:
                        work.append((item, channel))
                try:
                    async with savepoint(session):
                        await self._apply(session, work)
                    failed: dict[int, str] = {}
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if len(work) == 1:
                        failed = {work[0][0].id: self._describe(work[0][0].id, exc)}
                    else:
                        failed = {}
                        for item, channel in work:
                            error = await self._apply_one(session, item, channel)
                            if error is not None:
                                failed[item.id] = error
                for item, _ in work:
                    if item.id in failed:
                        item.error = failed[item.id][:4000]
                        log.warning("inbox_item_error", item_id=item.id, error=item.error)
                    else:
                        item.processed_at, item.error = utcnow(), None
        except asyncio.CancelledError:
            raise
        except Exception:  # the batch itself failed (e.g. the database): retry the items one by one
            log.exception("inbox_batch_failed", items=len(item_ids))
            if len(item_ids) > 1:
                for item_id in item_ids:
                    await self.process_batch([item_id])
            else:
                await self._record_failure(item_ids[0], "the batch could not be committed")

    async def _apply(self, session: AsyncSession, work: list[tuple[InboxItemRow, ChannelInstanceRow]]) -> None:
        """Turn stored requests into messages (all of them in one batch) and delivery updates."""
        inbound: list[tuple[ChannelInstanceRow, InboundMessage]] = []
        statuses: list[tuple[ChannelInstanceRow, StatusUpdate]] = []
        for item, channel in work:
            adapter = self.factory.for_row(channel)
            for parsed in adapter.parse(RawRequest(item.method, item.url, item.headers, item.body)):
                if isinstance(parsed, InboundMessage):
                    inbound.append((channel, parsed))
                else:
                    statuses.append((channel, parsed))
        await message_actions.receive_inbound_batch(session, inbound)
        for channel, update in statuses:
            await message_actions.apply_status(session, channel, update)

    async def _apply_one(self, session: AsyncSession, item: InboxItemRow, channel: ChannelInstanceRow
                         ) -> str | None:
        """One item in its own savepoint; return why it failed, or None."""
        try:
            async with savepoint(session):
                await self._apply(session, [(item, channel)])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._describe(item.id, exc)
        return None

    @staticmethod
    def _describe(item_id: int, exc: Exception) -> str:
        if not isinstance(exc, ChannelError | IntegrityError | LookupError | ValueError):
            log.exception("inbox_item_failed", item_id=item_id)  # a bug: the raw request is kept
        return f"{exc.__class__.__name__}: {exc}"

    async def _record_failure(self, item_id: int, error: str) -> None:
        async with self.db.transaction(write=True) as session:
            item = await repo.get_inbox_item(session, item_id)
            if item is not None:
                item.attempts += 1
                item.error = error[:4000]
        log.warning("inbox_item_error", item_id=item_id, error=error)
