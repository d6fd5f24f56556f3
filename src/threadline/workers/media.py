"""Download inbound media that providers only link (Twilio MediaUrl, WhatsApp media ids, Telegram file ids,
Messenger CDN links) into the file store, after the message is committed.

``parse`` stays pure and the inbox transaction never waits on the network: the message is stored at once
with the provider's link and a ``media_downloads`` row per file. This worker (one leader) fetches each
file with the channel adapter's authenticated client *outside* any transaction, then in one short write
stores it (``actions/attachments.store_attachment``: FileStore under data_dir/files, permission-checked
downloads at /api/v1/attachments/{id}), points the message's attachment at it and emits
``message.updated``. Failures are retried with backoff, then the link is kept with the reason.
"""

from __future__ import annotations

import structlog

from threadline.actions import inbound as inbound_actions
from threadline.adapters import AdapterFactory
from threadline.channels.base import PermanentSendError, RetryableSendError
from threadline.db.leader import LeaderLock
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import messaging as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.files.store import FileStore
from threadline.loop import BackgroundLoop

log = structlog.get_logger(__name__)


class MediaWorker(BackgroundLoop):
    name = "media"
    wakes_on = frozenset({"media"})

    def __init__(self, db: Database, factory: AdapterFactory, files: FileStore, *, poll_seconds: float = 5.0,
                 batch: int = 20) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.factory = factory
        self.files = files
        self.batch = batch
        self.leader = LeaderLock(db, "media")

    async def on_stop(self) -> None:
        await self.leader.release()

    async def tick(self) -> float | None:
        if not await self.leader.try_acquire():
            return None
        while not self._stopping.is_set() and await self.run_due() > 0:
            pass
        async with self.db.transaction(write=False) as session:
            nxt = await repo.next_media_due(session)
        if nxt is None:
            return None
        return max(0.05, min(self.interval, (nxt - utcnow()).total_seconds()))

    async def run_due(self) -> int:
        async with self.db.transaction(write=False) as session:
            due = await repo.due_media(session, utcnow(), self.batch)
            channels = await channels_repo.get_channels(session, {d.channel_instance_id for d in due})
            work = [(d.id, d.url, channels.get(d.channel_instance_id)) for d in due]
        for download_id, url, channel in work:
            await self._one(download_id, url, channel)
        return len(work)

    async def _one(self, download_id: int, url: str, channel) -> None:  # type: ignore[no-untyped-def]
        data: bytes | None = None
        error, permanent, ctype = "", False, ""
        if channel is None:
            error, permanent = "the channel no longer exists", True
        else:
            adapter = self.factory.for_row(channel)
            limit = adapter.capabilities.max_attachment_bytes
            try:
                data, ctype = await adapter.download(url, limit)
            except PermanentSendError as exc:
                error, permanent = str(exc), True
            except RetryableSendError as exc:
                error = str(exc)
            except Exception as exc:  # an adapter bug: retried, the reason recorded
                log.exception("media_download_crashed", download_id=download_id)
                error = f"{exc.__class__.__name__}: {exc}"
        async with self.db.transaction(write=True) as session:
            if data is not None and channel is not None:
                try:
                    await inbound_actions.attach_media(session, self.files, download_id, data, ctype,
                                               self.factory.for_row(channel).capabilities.max_attachment_bytes)
                    return
                except Exception as exc:  # noqa: BLE001 - e.g. over the size limit: recorded on the row
                    error, permanent = f"{exc.__class__.__name__}: {exc}", True
            await inbound_actions.media_failed(session, download_id, error, permanent=permanent)
        log.warning("media_download_failed", download_id=download_id, error=error, permanent=permanent)
