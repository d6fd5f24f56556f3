"""Mail in: the embedded SMTP receiver and the IMAP poller, loops the email package contributes through its
host, and the directory of email channels by address they share. Both hand raw RFC 5322 bytes to the inbox
(``Host.store_inbound``), which commits them (and normally processes them) before returning, and only then
acknowledge: the receiver answers 250 to DATA, the poller records the UID and marks the mail \\Seen (or
moves it). A crash at any point loses nothing; a mail stored twice is dropped by its Message-ID.

SMTP: aiosmtpd on the server's own event loop (``THREADLINE_SMTP_PORT``, off by default); unknown
recipients are refused at RCPT (550), too-large mails at DATA (552); STARTTLS when a certificate is
configured; a storage failure answers 451 so the sending server retries.

IMAP: one task per email channel with ``inbound = "imap"``, on the leader process only. Per folder the
(UIDVALIDITY, last UID) pair is kept in ``email_mailbox_state``: after a restart the poller asks for
UIDs above the last one stored; a changed UIDVALIDITY resets it (dedupe by Message-ID keeps that safe).
It waits with IDLE when the server has it (re-issued every 9 minutes), else polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import defaultdict
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from threadline.channels.base import RawRequest
from threadline.channels.email import actions
from threadline.channels.email.adapter import EmailChannel
from threadline.channels.email.config import EmailChannelConfig
from threadline.channels.email.imap import ImapError, Mailbox, open_mailbox
from threadline.loop import BackgroundLoop
from threadline.plugins.host import Channel, Host

log = structlog.get_logger(__name__)


class EmailDirectory:
    """Enabled email channels by address (cached; emptied on ``channel.changed`` and after ``ttl``)."""

    def __init__(self, host: Host, *, ttl: float = 30.0) -> None:
        self.host = host
        self.ttl = ttl
        self._loaded = 0.0
        self._by_address: dict[str, tuple[Channel, EmailChannelConfig]] = {}

    def invalidate(self) -> None:
        self._loaded = 0.0

    async def channels(self) -> list[tuple[Channel, EmailChannelConfig]]:
        if time.monotonic() - self._loaded > self.ttl:
            found: dict[str, tuple[Channel, EmailChannelConfig]] = {}
            for channel in await self.host.channels_of_kind(EmailChannel.kind):  # unreadable ones are skipped
                cfg = channel.adapter.config
                assert isinstance(cfg, EmailChannelConfig)
                found[cfg.address] = (channel, cfg)
            self._by_address, self._loaded = found, time.monotonic()
        return list(self._by_address.values())

    async def for_recipient(self, address: str, inbound: str = "smtp") -> Channel | None:
        """The channel receiving mail for ``address`` (``support+anything@`` counts as ``support@``).
        ``postmaster`` (any case, RFC 5321 §4.5.1) of a domain a channel serves, or alone, goes to that
        domain's channel (the first created, when several share it)."""
        await self.channels()
        addr = address.strip().strip("<>").casefold()
        local, _, domain = addr.partition("@")
        hit = self._by_address.get(addr) or self._by_address.get(f"{local.split('+', 1)[0]}@{domain}")
        if hit is None and local == "postmaster":
            served = sorted((row.id, row, cfg) for row, cfg in self._by_address.values()
                            if cfg.inbound == inbound and (not domain or cfg.domain == domain))
            hit = (served[0][1], served[0][2]) if served else None
        if hit is None or hit[1].inbound != inbound:
            return None
        return hit[0]


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.r = receiver

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        try:
            channel = await self.r.directory.for_recipient(address)
        except Exception:  # noqa: BLE001 - the database is down: let the sender retry
            log.exception("smtp_rcpt_lookup_failed")
            return "451 4.3.0 temporary failure, please try again later"
        if channel is None:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw).encode("utf-8", "surrogateescape")
        by_channel: dict[int, tuple[Channel, list[str]]] = {}
        for rcpt in envelope.rcpt_tos:
            channel = await self.r.directory.for_recipient(rcpt)
            if channel is not None:
                by_channel.setdefault(channel.id, (channel, []))[1].append(rcpt)
        if not by_channel:
            return "554 5.5.1 no valid recipients"
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        try:
            for channel, rcpts in by_channel.values():
                req = RawRequest("SMTP", f"smtp://{rcpts[0]}", {
                    "x-envelope-from": envelope.mail_from or "", "x-envelope-to": ",".join(rcpts),
                    "x-peer": peer, "x-helo": str(session.host_name or "")[:200]}, raw)
                key = channel.adapter.dedupe_key([], req)
                await self.r.host.store_inbound(req, channel, key)
        except Exception:  # noqa: BLE001 - nothing durable: the sender keeps the mail and retries
            log.exception("smtp_store_failed", peer=peer)
            return "451 4.3.0 cannot store the message now, please try again later"
        return "250 2.0.0 OK: message stored"


class SmtpReceiver:
    """The embedded SMTP server on the running event loop."""

    name = "smtp-receiver"

    def __init__(self, host: Host, directory: EmailDirectory) -> None:
        self.host = host
        self.settings = host.settings
        self.directory = directory
        self.server: asyncio.AbstractServer | None = None
        self.port: int | None = None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.settings.smtp_tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.settings.smtp_tls_cert),
                            str(self.settings.smtp_tls_key) if self.settings.smtp_tls_key else None)
        return ctx

    async def start(self, port: int | None = None) -> int:
        tls = self._tls()
        hostname = self.settings.smtp_hostname or socket.getfqdn()
        handler = _Handler(self)
        s = self.settings

        def factory() -> SMTP:
            return SMTP(handler, data_size_limit=s.smtp_max_message_bytes, enable_SMTPUTF8=True,
                        hostname=hostname, ident="Threadline ESMTP", tls_context=tls,
                        require_starttls=bool(tls) and s.smtp_require_starttls, timeout=300)

        loop = asyncio.get_running_loop()
        # several processes on this host (serve --workers) each listen on the port; the kernel spreads the
        # connections (SO_REUSEPORT), and each process stores what it receives before its 250
        self.server = await loop.create_server(factory, host=s.smtp_host,
                                               port=port if port is not None else s.smtp_port,
                                               reuse_port=s.processes > 1 or None)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("smtp_receiver_listening", host=s.smtp_host, port=self.port, starttls=bool(tls))
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 5)
            self.server = None


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
