"""SendGrid and Mailgun inbound-parse posts through the real ``/hooks/{key}`` route: verified, stored
once (a retried post is a duplicate by Message-ID), turned into messages with stored attachments."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
from sqlalchemy import select

from tests.channels.email.test_parse import FIXTURES, _multipart
from tests.conftest import seed_basics
from threadline.actions import channels as channel_actions
from threadline.db.models import InboxItemRow, MessageRow


async def _channel(svc, general: int, **config: object) -> str:  # type: ignore[no-untyped-def]
    async with svc.db.transaction() as s:
        row = await channel_actions.create_channel(s, svc.box, kind="email", name=f"Mail {config['inbound']}",
                                                   default_queue_id=general,
                                                   config={"address": "support@acme.test", **config})
    return f"/hooks/{row.key}"


async def test_mailgun_and_sendgrid_posts(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    svc = sqlite_server.services
    ids = await seed_basics(svc)
    mailgun = await _channel(svc, ids["general"], inbound="mailgun", mailgun_signing_key="key-example")
    sendgrid = await _channel(svc, ids["general"], inbound="sendgrid", sendgrid_basic_auth="sg:pw")
    ts, token = str(int(time.time())), "b" * 50
    sig = hmac.new(b"key-example", (ts + token).encode(), hashlib.sha256).hexdigest()
    mg_body, mg_type = _multipart({"timestamp": ts.encode(), "token": token.encode(), "signature": sig.encode(),
                                   "body-mime": (FIXTURES / "inline_image.eml").read_bytes()})
    sg_body, sg_type = _multipart({"email": (FIXTURES / "koi8r_base64.eml").read_bytes()})
    sg_auth = "Basic " + base64.b64encode(b"sg:pw").decode()
    async with httpx.AsyncClient(base_url=sqlite_server.url) as c:
        for _ in range(2):  # the provider retries: stored once
            r = await c.post(mailgun, content=mg_body, headers={"content-type": mg_type})
            assert r.status_code == 200, r.text
        r = await c.post(mailgun, content=mg_body.replace(sig.encode(), b"f" * 64), headers={"content-type": mg_type})
        assert r.status_code == 401
        r = await c.post(sendgrid, content=sg_body, headers={"content-type": sg_type})
        assert r.status_code == 401
        r = await c.post(sendgrid, content=sg_body, headers={"content-type": sg_type, "authorization": sg_auth})
        assert r.status_code == 200, r.text
    async with svc.db.transaction(write=False) as s:
        msgs = (await s.execute(select(MessageRow).order_by(MessageRow.id))).scalars().all()
        items = (await s.execute(select(InboxItemRow))).scalars().all()
    assert [(m.provider_id, m.text) for m in msgs] == [
        ("<inline-0001@cliente.example>", "The error is in the picture."),
        ("<koi8-0001@example.ru>", "Здравствуйте! Не работает интернет с утра.")]
    assert [a["name"] for a in msgs[0].attachments] == ["invoice.pdf"]  # the screenshot is part of the body
    assert [a["name"] for a in msgs[0].meta["email"]["inline"]] == ["image.png"]
    assert all(a["url"].startswith("/api/v1/attachments/") for a in
               [*msgs[0].attachments, *msgs[0].meta["email"]["inline"]])
    assert len(items) == 2
