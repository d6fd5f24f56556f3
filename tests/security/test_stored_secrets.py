"""Issue 12, item 2: raw provider requests are stored without the credentials their headers carry
(Telegram's secret token, SendGrid's basic auth), yet can still be processed again; rows stored by
earlier versions are scrubbed by the migration."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy import select

from tests.channels.email.test_parse import FIXTURES, _multipart
from tests.channels.harness import TELEGRAM_SECRET, telegram_config
from tests.conftest import seed_basics
from threadline.actions import channels as channel_actions
from threadline.db.models import InboxItemRow, MessageRow

HERE = Path(__file__).parent.parent / "channels" / "telegram" / "fixtures"


async def test_inbox_rows_keep_no_credentials_and_still_parse(server) -> None:
    svc = server.services
    ids = await seed_basics(svc)
    async with svc.db.transaction() as s:
        tg = await channel_actions.create_channel(s, svc.box, kind="telegram", name="Telegram",
                                                  default_queue_id=ids["general"], config=telegram_config())
        sg = await channel_actions.create_channel(s, svc.box, kind="email", name="Mail", default_queue_id=ids["general"],
                                                  config={"address": "support@acme.test", "inbound": "sendgrid",
                                                          "sendgrid_basic_auth": "sg-user:sg-password-123"})
    sg_body, sg_type = _multipart({"email": (FIXTURES / "koi8r_base64.eml").read_bytes()})
    basic = "Basic " + base64.b64encode(b"sg-user:sg-password-123").decode()
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post(f"/hooks/{tg.key}", content=(HERE / "message.json").read_bytes(), headers={
            "content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET,
            "cookie": "session=abc123"})
        assert r.status_code == 200, r.text
        r = await c.post(f"/hooks/{sg.key}", content=sg_body, headers={"content-type": sg_type, "authorization": basic})
        assert r.status_code == 200, r.text
    async with svc.db.transaction() as s:
        items = (await s.execute(select(InboxItemRow).order_by(InboxItemRow.id))).scalars().all()
        assert len(items) == 2 and all(i.processed_at is not None and i.error is None for i in items)
        stored = json.dumps([i.headers for i in items])
        for secret in (TELEGRAM_SECRET, "sg-password-123", base64.b64encode(b"sg-user:sg-password-123").decode(),
                       "abc123"):
            assert secret not in stored
        assert items[0].headers["x-telegram-bot-api-secret-token"] == "[redacted]"
        assert items[1].headers["authorization"] == "[redacted]"
        assert items[1].headers["content-type"] == sg_type  # what parsing needs is kept
        for item in items:  # processed again (the sweep after a failure) from what was stored
            item.processed_at = None
            item.attempts = 0
        await s.execute(sa.delete(MessageRow))
    await svc.inbox.sweep()
    async with svc.db.transaction(write=False) as s:
        assert len((await s.execute(select(MessageRow))).scalars().all()) == 2


def test_the_migration_scrubs_requests_stored_before(tmp_path: Path) -> None:
    from threadline.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}", "0010_one_head")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO channel_instances (kind, name, key, config_encrypted, enabled, created_at, "
                             "updated_at) VALUES ('telegram', 'T', 'k', 'x', 1, '2026-01-01', '2026-01-01')"))
        for i, headers in enumerate([{"X-Telegram-Bot-Api-Secret-Token": "tg-secret", "content-type": "a/b"},
                                     {"authorization": "Basic c2c6cHc=", "x-hub-signature-256": "sha256=00"},
                                     {"content-type": "text/plain"}]):
            conn.execute(sa.text("INSERT INTO inbox_items (channel_instance_id, dedupe_key, method, url, headers, "
                                 "body, received_at, attempts) VALUES (1, :k, 'POST', '/', :h, x'00', '2026-01-01', 0)"),
                         {"k": f"k{i}", "h": json.dumps(headers)})
    engine.dispose()
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [json.loads(h) for (h,) in conn.execute(sa.text("SELECT headers FROM inbox_items ORDER BY id"))]
    engine.dispose()
    assert rows == [{"X-Telegram-Bot-Api-Secret-Token": "[redacted]", "content-type": "a/b"},
                    {"authorization": "[redacted]", "x-hub-signature-256": "sha256=00"},  # an HMAC: not a secret
                    {"content-type": "text/plain"}]
