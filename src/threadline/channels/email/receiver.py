"""Mail in by SMTP, and the directory of email channels by address that the receiver and the IMAP poller
(poller.py) share. Both hand raw RFC 5322 bytes to the inbox (``Host.store_inbound``), which commits them
(and normally processes them) before returning, and only then acknowledge: the receiver answers 250 to
DATA, the poller records the UID. A crash at any point loses nothing; a mail stored twice is dropped by its
Message-ID.

SMTP: aiosmtpd on the server's own event loop (``THREADLINE_SMTP_PORT``, off by default); unknown
recipients are refused at RCPT (550), too-large mails at DATA (552); STARTTLS when a certificate is
configured; a storage failure answers 451 so the sending server retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from threadline.channels.base import RawRequest
from threadline.channels.email.adapter import EmailChannel
from threadline.channels.email.config import EmailChannelConfig
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
        """The channel receiving mail for ``address`` (``support+anything@`` counts as ``support@``)."""
        await self.channels()
        addr = address.strip().strip("<>").casefold()
        local, _, domain = addr.partition("@")
        hit = self._by_address.get(addr) or self._by_address.get(f"{local.split('+', 1)[0]}@{domain}")
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
        self.server = await loop.create_server(factory, host=s.smtp_host,
                                               port=port if port is not None else s.smtp_port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("smtp_receiver_listening", host=s.smtp_host, port=self.port, starttls=bool(tls))
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 5)
            self.server = None
