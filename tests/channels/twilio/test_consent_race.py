"""A reply queued before the customer's STOP arrives is not sent: the sender checks consent again right
before calling Twilio (workers run by hand here, so the order is exact)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import make_settings, seed_basics
from threadline.actions import channels as channel_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions.permissions import Actor
from threadline.channels.base import RawRequest
from threadline.db.models import MessageRow
from threadline.domain.users import Role
from threadline.services import Services

from ..harness import twilio_config, twilio_headers
from .test_twilio_e2e import CUSTOMER, inbound


@pytest.mark.parametrize("kind", ["twilio", "twilio_whatsapp"])
async def test_stop_after_queuing_blocks_the_send(kind: str, sqlite_url: str, tmp_path: Path) -> None:
    """On SMS and on WhatsApp (each its own consent scope): the sender checks the scope of its channel."""
    calls: list[httpx.Request] = []
    svc = Services.build(make_settings(sqlite_url, tmp_path, run_workers=False))
    svc.factory.http = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda r: calls.append(r) or httpx.Response(201, json={"sid": "SM" + "f" * 32, "status": "queued"})))
    await svc.start()
    try:
        ids = await seed_basics(svc)
        async with svc.db.transaction() as s:
            row = await channel_actions.create_channel(s, svc.box, kind=kind, name=kind, config=twilio_config(),
                                                       default_queue_id=ids["general"])
        adapter = svc.factory.for_row(row)

        async def receive(sid: str, text: str) -> None:
            body = inbound(sid, text, **({"From": f"whatsapp:{CUSTOMER}", "To": "whatsapp:+15005550006"}
                                         if kind == "twilio_whatsapp" else {}))
            req = RawRequest("POST", adapter.hook_url, twilio_headers(body, adapter.hook_url), body)
            adapter.verify(req)
            assert await svc.inbox.store(req, row, adapter.dedupe_key(adapter.parse(req), req)) is not None

        await receive("SM" + "1" * 32, "is my order late?")
        async with svc.db.transaction() as s:
            conv_id = (await s.execute(select(MessageRow.conversation_id))).scalars().first()
            reply = await outbound_actions.send_reply(s, Actor(ids["admin"], Role.ADMIN, "Admin"), conv_id, "Yes")
        await receive("SM" + "2" * 32, "STOP")
        await svc.sender.send_due()
        assert calls == []
        async with svc.db.transaction(write=False) as s:
            msg = await s.get(MessageRow, reply.id)
            assert msg is not None and msg.delivery_status == "failed"
            assert "opted out" in (msg.error or "") and "'STOP'" in (msg.error or "")
    finally:
        await svc.stop()
