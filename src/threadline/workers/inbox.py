"""Store provider requests and turn them into messages, in batches, one transaction per batch. An item
that fails is kept with its error and retried, never lost; at start-up every unprocessed item is picked
up again, so a crash at any point loses nothing.

Each request is parsed once: a caller that already parsed it (the hook parses to validate and to answer
the provider) hands the parsed items to ``store`` with the raw request, and the same transaction turns
them into messages. The raw request is stored all the same: the sweep parses it again only when it was
not processed with the request (a failed attempt, a crash, a restart) or when it is replayed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import inbound as inbound_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions.events import savepoint
from threadline.actions.inbound.redaction import REMOVED, redact_body, redact_message
from threadline.adapters import AdapterFactory
from threadline.channels.base import ChannelError, Parsed, RawRequest, storable_headers
from threadline.channels.registry import get_adapter_class
from threadline.db.models import ChannelInstanceRow, InboxItemRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import plumbing as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.messages import InboundMessage, StatusUpdate
from threadline.enrichment.redaction import PCI, RedactionPolicy
from threadline.files.store import FileStore
from threadline.loop import BackgroundLoop
from threadline.plugins.host import InboxFull  # part of the store contract: callers answer 503 / SMTP 451

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 5
BATCH = 200
# A request to process: the raw request, its channel, and its parsed items when the caller has them.
Work = tuple[RawRequest, ChannelInstanceRow, Sequence[Parsed] | None]


class InboxWorker(BackgroundLoop):
    """``store`` persists a provider's request and processes it in the same transaction, shared with
    the requests that arrived meanwhile (group commit): while one batch commits the next gathers, so a
    busy channel costs a few transactions per second rather than two per request. The loop sweeps what
    is left unprocessed (a crash, a failed attempt, another process's leftovers) every few seconds."""

    name = "inbox-worker"

    def __init__(self, db: Database, factory: AdapterFactory, *, sweep_seconds: float = 5.0,
                 batch_size: int = BATCH, reopen_within: timedelta | None = None,
                 max_waiting: int = 5_000, redaction: RedactionPolicy = PCI) -> None:
        super().__init__(interval=sweep_seconds)
        self.reopen_within = reopen_within
        self.redaction = redaction  # masked before anything is stored (actions/inbound/redaction.py)
        self.db = db
        self.factory = factory
        self.batch_size = batch_size
        self.files: FileStore | None = None  # set by Services: where attachment bytes from parse() go
        self.max_waiting = max_waiting  # beyond this, refuse (503) rather than queue without bound
        self._to_store: list[tuple[RawRequest, ChannelInstanceRow, str, Sequence[Parsed] | None,
                                   asyncio.Future[int | None]]] = []
        self.parses = 0  # requests parsed here (tests: a request handed over parsed is not parsed again)
        self._storer: asyncio.Task[None] | None = None

    async def store(self, req: RawRequest, channel: ChannelInstanceRow, dedupe_key: str,
                    items: Sequence[Parsed] | None = None) -> int | None:
        """Persist a provider's request; return its id, or None when the same dedupe key was stored
        before. Returns once the request is committed (normally processed too), so the caller may
        then acknowledge it. ``items``: what the caller's ``adapter.parse(req)`` gave, so the request
        is not parsed again (None: it is parsed here)."""
        if len(self._to_store) >= self.max_waiting:
            raise InboxFull(f"{len(self._to_store)} requests are waiting to be stored; retry in a moment")
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._to_store.append((req, channel, dedupe_key, None if items is None else list(items), future))
        if self._storer is None or self._storer.done():
            self._storer = asyncio.create_task(self._store_pending(), name="inbox-store")
        # shielded: a client that hangs up does not cancel a write that other requests share
        return await asyncio.shield(future)

    async def _store_pending(self) -> None:
        while self._to_store:
            batch = self._to_store[:self.batch_size]
            del self._to_store[:len(batch)]
            rows = [_row(req, channel, key) for req, channel, key, _, _ in batch]
            results: list[int | None | BaseException]
            try:
                async with self.db.transaction(write=True) as session:
                    fresh = await repo.new_inbox_keys(session, rows)
                    outcomes = await self._process(session, [batch[i][:2] + (batch[i][3],) for i in fresh],
                                                   fail_fast=True)
                    now = utcnow()
                    for i, (done, error, masked) in zip(fresh, outcomes, strict=True):
                        rows[i].update(attempts=1, error=error, processed_at=now if done else None)
                        if done:
                            rows[i]["body"] = self._kept_body(rows[i]["body"], masked)
                    ids = await repo.insert_new_inbox_items(session, [rows[i] for i in fresh])
                results = [None] * len(batch)
                for i, new_id in zip(fresh, ids, strict=True):
                    results[i] = new_id
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - store without processing; the sweep processes later
                log.exception("inbox_store_and_process_failed", items=len(batch))
                results = await self._store_only(rows)
                self.wake()
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _store_only(self, rows: list[dict[str, Any]]) -> list[int | None | BaseException]:
        for row in rows:
            row.update(attempts=0, error=None, processed_at=None)
        try:
            async with self.db.transaction(write=True) as session:
                fresh = await repo.new_inbox_keys(session, rows)
                ids = await repo.insert_new_inbox_items(session, [rows[i] for i in fresh])
            out: list[int | None | BaseException] = [None] * len(rows)
            for i, new_id in zip(fresh, ids, strict=True):
                out[i] = new_id
            return out
        except IntegrityError:  # another process stored one of these keys just now: one by one
            pass
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            return [exc] * len(rows)
        results: list[int | None | BaseException] = []
        for row in rows:
            try:
                async with self.db.transaction(write=True) as session:
                    results.append(await repo.insert_inbox_item(session, row))
            except Exception as exc:  # noqa: BLE001 - reported to the waiting request
                results.append(exc)
        return results

    async def sweep(self) -> int:
        """Process every stored item that is not done yet (at start-up, and now and then)."""
        async with self.db.transaction(write=False) as session:
            ids = await repo.pending_inbox_ids(session, 1000, MAX_ATTEMPTS)
        for i in range(0, len(ids), self.batch_size):
            await self.process_batch(ids[i:i + self.batch_size])
        return len(ids)

    async def tick(self) -> float | None:
        await self.sweep()
        return None

    async def process(self, item_id: int) -> None:
        await self.process_batch([item_id])

    async def process_batch(self, item_ids: list[int]) -> None:
        """Process stored items in one transaction."""
        if not item_ids:
            return
        try:
            async with self.db.transaction(write=True) as session:
                items = await repo.lock_unprocessed_inbox_items(session, item_ids)
                channels = await channels_repo.get_channels(session, {i.channel_instance_id for i in items})
                work: list[tuple[InboxItemRow, ChannelInstanceRow]] = []
                now = utcnow()
                for item in items:
                    item.attempts += 1
                    channel = channels.get(item.channel_instance_id)
                    if channel is None:  # nothing can ever process it: done, with the reason
                        item.processed_at, item.error = now, "channel deleted"
                    else:
                        work.append((item, channel))
                outcomes = await self._process(session, [  # stored raw: parsed from it
                    (RawRequest(i.method, i.url, i.headers, i.body), channel, None) for i, channel in work])
                for (item, _), (done, error, masked) in zip(work, outcomes, strict=True):
                    item.error = error
                    item.processed_at = now if done else None
                    if done:
                        body = self._kept_body(item.body, masked)
                        if body is not item.body:
                            item.body = body
        except asyncio.CancelledError:
            raise
        except Exception:  # the batch itself failed (e.g. the database): retry the items one by one
            log.exception("inbox_batch_failed", items=len(item_ids))
            if len(item_ids) > 1:
                for item_id in item_ids:
                    await self.process_batch([item_id])
            else:
                await self._record_failure(item_ids[0], "the batch could not be committed")

    async def _process(self, session: AsyncSession, work: list[Work], *,
                       fail_fast: bool = False) -> list[tuple[bool, str | None, int]]:
        """Turn requests into messages inside the caller's transaction; per request (done, error): not done
        with why it failed (retried later), or done, with what could not be read of it (an ``Unreadable``
        item of a batch: kept as the request's error, never retried since it would read the same). The
        whole batch is tried at once (a fixed number of queries however many requests); if that fails,
        each request is retried in its own savepoint, so one that fails is rolled back alone while the
        others commit."""
        if not work:
            return []
        if fail_fast and len(work) == 1:  # no savepoint: if it fails, the caller stores it for the sweep
            return [(True, note, masked) for note, masked in await self._apply(session, work)]
        try:
            async with savepoint(session):
                notes = await self._apply(session, work)
            return [(True, note, masked) for note, masked in notes]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(work) == 1:
                return [(False, self._describe(exc), 0)]
        outcomes: list[tuple[bool, str | None, int]] = []
        for one in work:
            try:
                async with savepoint(session):
                    [(note, masked)] = await self._apply(session, [one])
                outcomes.append((True, note, masked))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcomes.append((False, self._describe(exc), 0))
        return outcomes

    async def _apply(self, session: AsyncSession, work: list[Work]) -> list[tuple[str | None, int]]:
        """Turn requests into messages (all of them in one batch) and delivery updates; per request, the
        items it had that could not be read (None when every item was read). A request comes with its
        parsed items when the caller parsed it already; otherwise it is parsed here."""
        inbound: list[tuple[ChannelInstanceRow, InboundMessage]] = []
        statuses: list[tuple[ChannelInstanceRow, StatusUpdate]] = []
        notes: list[tuple[str | None, int]] = []
        for req, channel, items in work:
            unreadable: list[str] = []
            masked = 0
            if items is None:
                self.parses += 1
                items = self.factory.for_row(channel).parse(req)
            for parsed in items:
                if isinstance(parsed, InboundMessage):
                    parsed, found = redact_message(parsed, self.redaction)
                    masked += found
                    inbound.append((channel, parsed))
                elif isinstance(parsed, StatusUpdate):
                    statuses.append((channel, parsed))
                else:
                    unreadable.append(f"{parsed.provider_id}: {parsed.reason}" if parsed.provider_id
                                      else parsed.reason)
            if unreadable:
                log.warning("inbox_items_unreadable", channel_id=channel.id, reasons=unreadable[:10])
            notes.append((f"{len(unreadable)} item(s) of this request could not be read and were skipped: "
                          + "; ".join(unreadable)[:3800] if unreadable else None, masked))
        await inbound_actions.receive_with_files(session, self.files, inbound, reopen_within=self.reopen_within)
        for channel, update in statuses:
            await outbound_actions.apply_status(session, channel, update)
        return notes

    def _kept_body(self, body: bytes, masked: int) -> bytes:
        """The raw request as kept once processed: masked by the redaction policy; not kept at all when its
        messages had something masked that its bytes do not show in plain text (encoded MIME, escaped JSON)."""
        if not self.redaction.enabled:
            return body
        kept, found = redact_body(body, self.redaction)
        return REMOVED if found < masked else kept

    @staticmethod
    def _describe(exc: Exception) -> str:
        if not isinstance(exc, ChannelError | IntegrityError | LookupError | ValueError):
            log.error("inbox_item_failed", exc_info=exc)  # a bug: the raw request is kept for a retry
        error = f"{exc.__class__.__name__}: {exc}"[:4000]
        log.warning("inbox_item_error", error=error)
        return error

    async def _record_failure(self, item_id: int, error: str) -> None:
        async with self.db.transaction(write=True) as session:
            item = await repo.get_inbox_item(session, item_id)
            if item is not None:
                item.attempts += 1
                item.error = error[:4000]
        log.warning("inbox_item_error", item_id=item_id, error=error)


def _row(req: RawRequest, channel: ChannelInstanceRow, dedupe_key: str) -> dict[str, Any]:
    """The inbox row of a provider's request; its credentials (basic auth, the provider's secret token…)
    are never stored, only what parsing it again needs."""
    adapter = get_adapter_class(channel.kind)
    headers = storable_headers(req.headers, adapter.secret_headers if adapter is not None else frozenset())
    return {"channel_instance_id": channel.id, "dedupe_key": dedupe_key, "method": req.method, "url": req.url,
            "headers": headers, "body": req.body, "received_at": utcnow()}
