"""The outbound sender claims jobs with a lease in every process: two processes on one database never send
one reply twice, a backlog on one channel does not starve another, and an attempt whose lease ran out
(another process took the job over) is not recorded over the newer one. Retries, Retry-After and
permanent failures are tested through the channels (tests/web/test_hooks_and_stream.py, the Twilio,
Telegram and WhatsApp end-to-end tests). SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from tests.conftest import make_settings, seed_basics
from threadline.actions import channels as channel_actions
from threadline.actions import inbound as inbound_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions import sending
from threadline.actions.permissions import Actor
from threadline.db.models import MessageRow, OutboundJobRow
from threadline.db.repos import channels as channels_repo
from threadline.db.types import utcnow
from threadline.domain.contacts import normalise_identity
from threadline.domain.messages import InboundMessage, Sender
from threadline.domain.users import Role
from threadline.services import Services
from threadline.workers.sender import SenderWorker, SendResult


class Partner:
    """The generic API channel's webhook on the other side: records each reply it is sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        await asyncio.sleep(0.005)  # a network round trip: the other process runs meanwhile
        self.sent.append(body["id"])
        return httpx.Response(200, json={"id": f"partner-{body['id']}"})


def with_partner(svc: Services, partner: Partner) -> None:
    svc.factory.http = httpx.AsyncClient(transport=httpx.MockTransport(partner.handle))


async def replies(svc: Services, count: int, *, channels: int = 1) -> list[int]:
    """``count`` replies queued on each of ``channels`` API channels (one customer per channel)."""
    ids = await seed_basics(svc)
    admin = Actor(ids["admin"], Role.ADMIN, "Admin")
    out: list[int] = []
    async with svc.db.transaction() as s:
        chans = [await channels_repo.get_channel(s, ids["channel"])]
        for i in range(1, channels):
            chans.append(await channel_actions.create_channel(
                s, svc.box, kind="api", name=f"API {i}", default_queue_id=ids["general"],
                config={"secret": "s3cret-s3cret-s3cret", "webhook_url": None}))
        for chan in chans:
            await channel_actions.update_channel(s, svc.box, chan.id, config={"webhook_url": "https://partner.test/in"})
            msg = await inbound_actions.receive_inbound(s, chan, InboundMessage(
                f"in-{chan.id}", Sender(identities=(normalise_identity("handle", f"c-{chan.id}", f"api:{chan.id}"),)),
                "hello"))
            assert msg is not None
            for n in range(count):
                out.append((await outbound_actions.send_reply(s, admin, msg.conversation_id, f"reply {n}")).id)
    return out


async def test_two_processes_never_send_one_reply_twice(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, run_workers=False, sender_concurrency=4)
    a, b = Services.build(settings), Services.build(settings)
    partner = Partner()
    for svc in (a, b):
        with_partner(svc, partner)
    await a.start()
    await b.start()
    try:
        queued = await replies(a, 30)

        async def send_all(sender: SenderWorker) -> None:
            for _ in range(200):
                if not await sender.send_due():
                    return

        await asyncio.gather(send_all(a.sender), send_all(b.sender))
        counts = Counter(partner.sent)
        assert sorted(counts) == sorted(f"tl-{m}" for m in queued)
        assert set(counts.values()) == {1}  # each reply once
        async with a.db.transaction(write=False) as s:
            statuses = (await s.execute(select(MessageRow.delivery_status).where(MessageRow.id.in_(queued)))).scalars()
            assert set(statuses) == {"sent"}
            jobs = (await s.execute(select(OutboundJobRow.status, OutboundJobRow.attempts))).all()
            assert set(jobs) == {("done", 1)}
    finally:
        await b.stop()
        await a.stop()


async def test_claims_are_fair_across_channels_and_a_late_result_loses_to_the_newer_claim(
        db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    partner = Partner()
    with_partner(svc, partner)
    await svc.start()
    try:
        await replies(svc, 6, channels=2)
        now = utcnow()
        async with svc.db.transaction() as s:
            claimed = await sending.claim_jobs(s, now=now, lease_seconds=60, limit=4, per_channel=2)
            by_channel = Counter(c.channel_instance_id for c in claimed)
            assert sorted(by_channel.values()) == [2, 2]  # the first channel's backlog does not hide the second
            busy = dict(by_channel)
            assert await sending.claim_jobs(s, now=now, lease_seconds=60, limit=4, per_channel=2, busy=busy) == []
        # The first attempt stalls past its lease and another process claims the job: the stalled attempt's
        # late failure must not count over the newer claim (else that one's success would be dropped and the
        # reply sent again).
        stalled = claimed[0]
        other = Services.build(make_settings(svc.settings.resolved_database_url, tmp_path, run_workers=False))
        with_partner(other, partner)
        await other.start()
        try:
            async with other.db.transaction() as s:
                retaken = await sending.claim_jobs(s, now=now + timedelta(seconds=61), lease_seconds=60, limit=20,
                                                   per_channel=20)
            [again] = [c for c in retaken if c.id == stalled.id]
            await svc.sender.record([SendResult(stalled.id, stalled.attempts, stalled.lease_until, "api",
                                                error="webhook answered 503")])
            await other.sender.record([await other.sender._send_one(again)])
        finally:
            await other.stop()
        async with svc.db.transaction(write=False) as s:
            job = await s.get(OutboundJobRow, stalled.id)
            assert (job.status, job.attempts) == ("done", 1)
    finally:
        await svc.stop()
