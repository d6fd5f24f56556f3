"""The IMAP poller: one task per email channel with ``inbound = "imap"``, on the leader process only.

Each mail goes to the inbox (``Host.store_inbound``), which commits it (and normally processes it) before
returning; only then is its UID recorded and the mail marked \\Seen (or moved), so a crash at any point
loses nothing and a mail stored twice is dropped by its Message-ID. Per folder the (UIDVALIDITY, last UID)
pair is kept in ``email_mailbox_state``: after a restart the poller asks for UIDs above the last one
stored; a changed UIDVALIDITY resets it (dedupe by Message-ID keeps that safe). It waits with IDLE when
the server has it (re-issued every 9 minutes), else polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import structlog

from threadline.channels.base import RawRequest
from threadline.channels.email import actions
from threadline.channels.email.config import EmailChannelConfig
from threadline.channels.email.imap import ImapError, Mailbox, open_mailbox
from threadline.channels.email.receiver import EmailDirectory
from threadline.loop import BackgroundLoop
from threadline.plugins.host import Channel, Host

log = structlog.get_logger(__name__)


class ImapPoller(BackgroundLoop):
    """Runs one mailbox task per IMAP email channel while this process is the leader."""

    name = "imap-poller"

    def __init__(self, host: Host, directory: EmailDirectory, *, interval: float = 15.0,
                 retry_seconds: float = 30.0) -> None:
        super().__init__(interval=interval)
        self.host = host
        self.directory = directory
        self.retry_seconds = retry_seconds
        self.leader = host.leader("imap")
        self.tasks: dict[int, tuple[str, asyncio.Task[None]]] = {}
        self.errors: dict[int, str] = {}
        self.stored: defaultdict[int, int] = defaultdict(int)  # mails stored per channel (for tests, metrics)

    async def tick(self) -> float | None:
        if not await self.leader.try_acquire():
            await self._stop_tasks()
            return None
        wanted = {ch.id: (ch, cfg) for ch, cfg in await self.directory.channels() if cfg.inbound == "imap"}
        for channel_id, (config_key, task) in list(self.tasks.items()):
            row_cfg = wanted.get(channel_id)
            if task.done() or row_cfg is None or row_cfg[0].row.config_encrypted != config_key:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                del self.tasks[channel_id]
        for channel_id, (channel, cfg) in wanted.items():
            if channel_id not in self.tasks:
                task = asyncio.create_task(self._run_mailbox(channel, cfg), name=f"imap-{channel_id}")
                self.tasks[channel_id] = (channel.row.config_encrypted, task)
        return None

    async def _stop_tasks(self) -> None:
        for _, task in self.tasks.values():
            task.cancel()
        for _, task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()

    async def on_stop(self) -> None:
        # the mailbox tasks see the stop flag at their next step (IDLE ends at once): let them finish
        # their transaction rather than cancelling one half-way
        running = [task for _, task in self.tasks.values()]
        if running:
            await asyncio.wait(running, timeout=5)
        await self._stop_tasks()
        await self.leader.release()

    async def _run_mailbox(self, channel: Channel, cfg: EmailChannelConfig) -> None:
        while not self._stopping.is_set():
            box: Mailbox | None = None
            try:
                box = await open_mailbox(cfg)
                self.errors.pop(channel.id, None)
                while not self._stopping.is_set():
                    await self.drain(channel, cfg, box)
                    await box.wait(cfg.imap_poll_seconds, self._stopping)
            except asyncio.CancelledError:
                raise
            except (ImapError, OSError, TimeoutError, Exception) as exc:  # noqa: BLE001 - reconnect later
                self.errors[channel.id] = str(exc)
                log.warning("imap_mailbox_error", channel_id=channel.id, error=str(exc))
            finally:
                if box is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(box.close(), 5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.retry_seconds)

    async def drain(self, channel: Channel, cfg: EmailChannelConfig, box: Mailbox) -> int:
        """Store every mail above the last stored UID, oldest first; returns how many were stored."""
        folder = cfg.imap_folder
        uidvalidity, last = await self.host.read(actions.mailbox_state, channel.id, folder)
        if uidvalidity != box.uidvalidity:
            if uidvalidity:
                log.warning("imap_uidvalidity_changed", channel_id=channel.id, old=uidvalidity, new=box.uidvalidity)
            last = 0  # the UIDs we knew mean nothing now: read again; Message-IDs drop what we have
        count = 0
        adapter = channel.adapter
        for uid in await box.uids_after(last):
            if self._stopping.is_set():
                break
            raw = await box.fetch(uid)
            if raw is not None:
                headers: dict[str, Any] = {"x-imap-folder": folder, "x-imap-uid": str(uid),
                                           "x-imap-uidvalidity": str(box.uidvalidity)}
                req = RawRequest("IMAP", f"imap://{cfg.imap_host}/{folder};UIDVALIDITY={box.uidvalidity}/;UID={uid}",
                                 headers, raw)
                await self.host.store_inbound(req, channel, adapter.dedupe_key([], req))
                count += 1
                self.stored[channel.id] += 1
            await self.host.write(actions.save_mailbox_state, channel.id, folder, box.uidvalidity, uid)
            await box.done(uid)
        if not count and uidvalidity != box.uidvalidity:
            await self.host.write(actions.save_mailbox_state, channel.id, folder, box.uidvalidity, last)
        return count
