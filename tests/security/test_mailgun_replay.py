"""Issue 12, item 4: a captured Mailgun timestamp/token/signature cannot carry another mail; the same
post again (Mailgun retrying) is still a harmless duplicate."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
from sqlalchemy import select

from tests.channels.email.test_parse import FIXTURES, _multipart
from tests.conftest import seed_basics
from threadline.actions import channels as channel_actions
from threadline.db.models import InboxItemRow, MessageRow

KEY = "key-mailgun-signing-0123"


async def test_a_mailgun_token_carries_one_mail_only(server) -> None:
    svc = server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        row = await channel_actions.create_channel(s, svc.box, kind="email", name="Mailgun",
                                                   default_queue_id=ids["general"],
                                                   config={"address": "support@acme.test", "inbound": "mailgun",
                                                           "mailgun_signing_key": KEY})
    ts, token = str(int(time.time())), "c" * 50
    signed = {"timestamp": ts.encode(), "token": token.encode(),
              "signature": hmac.new(KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest().encode()}
    genuine, genuine_type = _multipart({**signed, "body-mime": (FIXTURES / "inline_image.eml").read_bytes()})
    forged, forged_type = _multipart({**signed, "body-mime": (FIXTURES / "koi8r_base64.eml").read_bytes()})
    async with httpx.AsyncClient(base_url=server.url) as c:
        first = await c.post(f"/hooks/{row.key}", content=genuine, headers={"content-type": genuine_type})
        assert first.status_code == 200, first.text
        # Someone who captured the signed fields sends another mail with them: refused, nothing stored.
        replay = await c.post(f"/hooks/{row.key}", content=forged, headers={"content-type": forged_type})
        assert replay.status_code == 401, replay.text
        assert replay.headers["content-type"] == "application/problem+json"
        assert "already used" in replay.json()["detail"]
        # Mailgun retrying the very same delivery: accepted (200) and stored once.
        retry = await c.post(f"/hooks/{row.key}", content=genuine, headers={"content-type": genuine_type})
        assert retry.status_code == 200, retry.text
    async with svc.db.transaction(write=False) as s:
        texts = [m.text for m in (await s.execute(select(MessageRow))).scalars().all()]
        assert texts == ["The error is in the picture."]
        assert len((await s.execute(select(InboxItemRow))).scalars().all()) == 1
