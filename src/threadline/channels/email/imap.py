"""A small IMAP mailbox client over aioimaplib: log in, open a folder, list UIDs above a mark, fetch a
mail without marking it seen (BODY.PEEK[]), then mark it \\Seen or move it, and wait with IDLE.

It knows nothing of storage: the poller (inbound.py) decides when a mail is safe to mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

import aioimaplib

from threadline.channels.email.config import EmailChannelConfig

# RFC 2177 allows up to 29 minutes; a shorter cycle also notices a silently dropped connection (NAT
# timeouts) sooner, since a dead socket never delivers the server's push
IDLE_MAX_SECONDS = 9 * 60


class ImapError(Exception):
    """The server refused or could not be reached; the message says which, for an admin."""


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Mailbox:
    def __init__(self, client: aioimaplib.IMAP4, config: EmailChannelConfig) -> None:
        self.client = client
        self.config = config
        self.uidvalidity = 0
        self.idle_supported = client.has_capability("IDLE")
        self.move_supported = client.has_capability("MOVE")

    def _where(self) -> str:
        return f"IMAP {self.config.imap_host}:{self.config.imap_port}"

    async def select(self) -> int:
        resp = await self.client.select(_quote(self.config.imap_folder))
        if resp.result != "OK":
            raise ImapError(f"{self._where()}: cannot open folder {self.config.imap_folder!r}: "
                            f"{_text(resp.lines)}")
        for line in resp.lines:
            found = re.search(rb"UIDVALIDITY (\d+)", bytes(line))
            if found:
                self.uidvalidity = int(found.group(1))
        return self.uidvalidity

    async def uids_after(self, last_uid: int) -> list[int]:
        resp = await self.client.uid_search(f"UID {last_uid + 1}:*", charset=None)
        if resp.result != "OK":
            raise ImapError(f"{self._where()}: UID SEARCH failed: {_text(resp.lines)}")
        uids: list[int] = []
        for line in resp.lines:
            text = bytes(line).decode("ascii", "replace")
            if text.startswith("SEARCH") or text.startswith("* SEARCH"):
                uids += [int(x) for x in text.split()[1:] if x.isdigit()]
            elif text and all(x.isdigit() for x in text.split()):
                uids += [int(x) for x in text.split()]
        return sorted(u for u in set(uids) if u > last_uid)  # "n:*" always returns the highest UID

    async def fetch(self, uid: int) -> bytes | None:
        resp = await self.client.uid("fetch", str(uid), "(BODY.PEEK[])")
        if resp.result != "OK":
            raise ImapError(f"{self._where()}: UID FETCH {uid} failed: {_text(resp.lines)}")
        for line in resp.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None  # expunged meanwhile

    async def done(self, uid: int) -> None:
        """The mail is stored: mark it seen, or move it out of the folder."""
        if self.config.imap_after == "move":
            resp = await self._move(uid)
            if resp.result != "OK":  # the target folder may not exist yet: create it once, then retry
                await self.client.create(_quote(self.config.imap_move_to))
                resp = await self._move(uid)
            if resp.result == "OK":
                return
        await self.client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)")

    async def _move(self, uid: int) -> aioimaplib.Response:
        if self.move_supported:
            return await self.client.uid("move", str(uid), _quote(self.config.imap_move_to))
        resp = await self.client.uid("copy", str(uid), _quote(self.config.imap_move_to))
        if resp.result == "OK":  # UID EXPUNGE (UIDPLUS) removes only this mail
            await self.client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
            if self.client.has_capability("UIDPLUS"):
                await self.client.uid("expunge", str(uid))
        return resp

    async def wait(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait for new mail: IDLE until the server says EXISTS (or ``seconds``), else sleep."""
        if not self.idle_supported:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            return
        idle = await self.client.idle_start(timeout=min(seconds, IDLE_MAX_SECONDS))
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                push = asyncio.create_task(self.client.wait_server_push(timeout=min(seconds, IDLE_MAX_SECONDS) + 5))
                done, _ = await asyncio.wait({push, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    push.cancel()
                    break
                try:
                    lines = push.result()
                except TimeoutError:
                    break
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH or any(
                        b"EXISTS" in bytes(x) for x in (lines if isinstance(lines, list) else [])):
                    break
        finally:
            stopper.cancel()
            self.client.idle_done()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(idle, 10)

    async def close(self) -> None:
        """Log out politely if the server answers within two seconds; close the socket in any case."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.logout(), 2)
        transport = getattr(self.client.protocol, "transport", None)
        if transport is not None:
            transport.close()


def _text(lines: list[bytes | bytearray]) -> str:
    return " ".join(bytes(x).decode("utf-8", "replace") for x in lines if not isinstance(x, bytearray))[:300]


async def open_mailbox(config: EmailChannelConfig, *, timeout: float = 30.0) -> Mailbox:
    """Connect, log in and select the folder; raise ImapError with the server's own words."""
    where = f"IMAP {config.imap_host}:{config.imap_port}"
    if not config.imap_host:
        raise ImapError("this email channel has no IMAP server configured (imap_host)")
    try:
        if config.imap_security == "tls":
            ctx = ssl.create_default_context()
            if not config.imap_verify_tls:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(config.imap_host, config.imap_port, timeout=timeout,
                                                             ssl_context=ctx)
        else:
            client = aioimaplib.IMAP4(config.imap_host, config.imap_port, timeout=timeout)
        await client.wait_hello_from_server()
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise ImapError(f"{where}: cannot connect ({exc.__class__.__name__}: {exc})") from None
    try:
        resp = await client.login(config.imap_username,
                                  config.imap_password.get_secret_value() if config.imap_password else "")
    except (OSError, TimeoutError, aioimaplib.Abort) as exc:
        raise ImapError(f"{where}: login failed ({exc.__class__.__name__}: {exc})") from None
    if resp.result != "OK":
        with contextlib.suppress(Exception):
            await client.logout()
        raise ImapError(f"{where}: login refused: {_text(resp.lines)}")
    with contextlib.suppress(Exception):  # capabilities grow after login (MOVE, UIDPLUS…)
        await asyncio.wait_for(client.protocol.capability(), timeout)
    box = Mailbox(client, config)
    try:
        await box.select()
    except (OSError, TimeoutError, aioimaplib.Abort) as exc:
        await box.close()
        raise ImapError(f"{where}: cannot open folder {config.imap_folder!r} ({exc})") from None
    except ImapError:
        await box.close()
        raise
    return box
