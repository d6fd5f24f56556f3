"""The IMAP poller against a real Dovecot on loopback, SQLite and PostgreSQL: mails are stored, then
marked \\Seen (or moved); after a restart nothing is read twice or skipped, including when the process
died between storing a mail and recording its UID, and when UIDVALIDITY changes; IDLE wakes the poller."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.channels.email import dovecot
from tests.conftest import _finish, make_settings, need, seed_basics
from threadline.actions import channels as channel_actions
from threadline.channels.email import actions as mail_actions
from threadline.channels.email.imap import open_mailbox
from threadline.channels.email.inbound import ImapPoller
from threadline.db.models import MessageRow
from threadline.plugins import Channel
from threadline.services import Services


def mail(n: int) -> bytes:
    m = EmailMessage()
    m["From"] = f"Customer {n} <customer{n}@example.org>"
    m["To"] = "support@acme.test"
    m["Subject"] = f"Question {n}"
    m["Message-ID"] = f"<imap-{n}@example.org>"
    m.set_content(f"Question number {n}.")
    return m.as_bytes().replace(b"\n", b"\r\n")


@pytest.fixture
async def imap_server():  # type: ignore[no-untyped-def]
    need(dovecot.available(), "Dovecot (apt-get install dovecot-imapd)")
    async with dovecot.running() as server:
        yield server


async def _channel(svc: Services, server: dovecot.Dovecot, general: int, **extra: object):  # type: ignore[no-untyped-def]
    async with svc.db.transaction() as s:
        return await channel_actions.create_channel(
            s, svc.box, kind="email", name="Support IMAP", default_queue_id=general,
            config={"address": "support@acme.test", "inbound": "imap", "imap_host": "127.0.0.1",
                    "imap_port": server.port, "imap_security": "none", "imap_username": dovecot.USER,
                    "imap_password": dovecot.PASSWORD, **extra})


def _poller(svc: Services) -> ImapPoller:
    """A poller of its own on the email package's host (the running one, if any, is not used)."""
    email = svc.integrations["email"]
    return ImapPoller(email.host, email.runtime.directory)


async def _count(svc: Services) -> int:
    async with svc.db.transaction(write=False) as s:
        return (await s.execute(select(func.count()).select_from(MessageRow).where(MessageRow.direction == "in"))
                ).scalar_one()


async def test_poller_stores_marks_and_survives_restarts(services: Services, imap_server: dovecot.Dovecot) -> None:
    ids = await seed_basics(services)
    row = await _channel(services, imap_server, ids["general"])
    channel = Channel(row, services.factory.for_row(row))
    cfg = channel.adapter.config
    for n in (1, 2):
        await asyncio.to_thread(imap_server.append, mail(n))

    poller = _poller(services)
    box = await open_mailbox(cfg)
    assert await poller.drain(channel, cfg, box) == 2
    await box.close()
    assert await _count(services) == 2
    assert all("\\Seen" in f for f in (await asyncio.to_thread(imap_server.flags)).values())
    async with services.db.transaction(write=False) as s:
        validity, last = await mail_actions.mailbox_state(s, channel.id, "INBOX")
    assert last == 2 and validity == box.uidvalidity

    # a restart (new poller, new connection): only the new mail is read
    await asyncio.to_thread(imap_server.append, mail(3))
    poller = _poller(services)
    box = await open_mailbox(cfg)
    assert await poller.drain(channel, cfg, box) == 1
    assert await _count(services) == 3

    # the process died after storing mails 2 and 3 but before recording their UIDs: read again, stored once
    async with services.db.transaction() as s:
        await mail_actions.save_mailbox_state(s, channel.id, "INBOX", box.uidvalidity, 1)
    assert await poller.drain(channel, cfg, box) == 2
    assert await _count(services) == 3

    # UIDVALIDITY changed (the mailbox was rebuilt): everything is read again, nothing doubled
    async with services.db.transaction() as s:
        await mail_actions.save_mailbox_state(s, channel.id, "INBOX", 12345, 3)
    assert await poller.drain(channel, cfg, box) == 3
    assert await _count(services) == 3
    async with services.db.transaction(write=False) as s:
        assert await mail_actions.mailbox_state(s, channel.id, "INBOX") == (box.uidvalidity, 3)
    await box.close()


async def test_move_mode_takes_the_mail_out_of_the_folder(services: Services, imap_server: dovecot.Dovecot) -> None:
    ids = await seed_basics(services)
    row = await _channel(services, imap_server, ids["general"], imap_after="move", imap_move_to="Done")
    channel = Channel(row, services.factory.for_row(row))
    cfg = channel.adapter.config
    await asyncio.to_thread(imap_server.append, mail(7))
    box = await open_mailbox(cfg)
    poller = _poller(services)
    assert await poller.drain(channel, cfg, box) == 1
    await box.close()
    assert await asyncio.to_thread(imap_server.flags) == {}
    assert len(await asyncio.to_thread(imap_server.flags, "Done")) == 1


async def test_idle_wakes_the_running_poller(db_url: str, tmp_path: Path, imap_server: dovecot.Dovecot) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=True))
    await svc.start()
    try:
        arrived: asyncio.Queue[str] = asyncio.Queue()
        svc.bus.subscribe(lambda env: arrived.put_nowait(env.payload["message"]["text"])
                          if env.name == "message.created" else None)
        ids = await seed_basics(svc)
        await asyncio.to_thread(imap_server.append, mail(1))
        await _channel(svc, imap_server, ids["general"], imap_poll_seconds=3600)  # only IDLE can bring mail 2
        assert await asyncio.wait_for(arrived.get(), 20) == "Question number 1."
        await asyncio.to_thread(imap_server.append, mail(2))
        assert await asyncio.wait_for(arrived.get(), 20) == "Question number 2."
    finally:
        await _finish(asyncio.ensure_future(svc.stop()), "services stop")
