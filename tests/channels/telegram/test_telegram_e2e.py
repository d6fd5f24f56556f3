"""Telegram end to end: the secret-token header, chat/message id pairs, an update retried by Telegram stored
once, a 429 with retry_after retried, a blocked bot failing the reply with Telegram's description."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

from tests.conftest import make_server, run_server, seed_basics

from ..e2e import FakeProvider, admin_client, hook_path, next_event, setup, stream
from ..harness import (
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    Reply,
    harnesses,
    telegram_config,
    telegram_headers,
    twilio_config,
)

FIXTURES = Path(__file__).parent / "fixtures"
H = harnesses()["telegram"]


async def post(c, channel: dict, body: bytes, secret: str | None = None):  # type: ignore[no-untyped-def]
    return await c.post(hook_path(channel), content=body, headers=telegram_headers(body, "", secret))


async def test_updates_in_replies_out_with_retry_and_block(sqlite_server) -> None:
    fake = FakeProvider(H.ok, [H.throttled])
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "telegram", telegram_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            body = (FIXTURES / "message.json").read_bytes()
            assert (await post(c, channel, body, secret="wrong-secret-0000000")).status_code == 401
            answers = await asyncio.gather(*(post(c, channel, body) for _ in range(10)))  # Telegram retrying
            assert {a.status_code for a in answers} == {200}
            msg = (await next_event(ws, "message.created"))["data"]["message"]
            assert msg["text"] == "/start" and msg["provider_id"] == "1111111:1365"
            conv_id = msg["conversation_id"]
            # a bot being removed from a chat is not a customer message: acknowledged
            assert (await post(c, channel, (FIXTURES / "ignored_my_chat_member.json").read_bytes())).status_code == 200
            reply = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Hello! How can we help?"})
            done = await next_event(ws, "message.status_changed", message_id=reply.json()["id"])
            assert done["data"]["status"] == "sent"
            calls = await fake.wait_calls(2)
            assert calls[-1].path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
            assert calls[-1].json["chat_id"] == "1111111" and calls[-1].json["text"] == "Hello! How can we help?"
            assert calls[-1].json["reply_parameters"]["message_id"] == 1365
            msgs = (await c.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
            assert [m["direction"] for m in msgs] == ["in", "out"]
            assert msgs[1]["provider_id"] == "1111111:1371"
            fake.plan.append(H.refused)
            blocked = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Are you there?"})
            failed = await next_event(ws, "message.status_changed", message_id=blocked.json()["id"])
            assert failed["data"]["status"] == "failed" and "blocked by the user" in failed["data"]["error"]


async def test_a_shared_own_contact_gives_the_customer_a_phone_identity(sqlite_server) -> None:
    ids, c, channel = await setup(sqlite_server, "telegram", telegram_config())
    async with aclosing(c), stream(sqlite_server, c) as ws:
        await post(c, channel, (FIXTURES / "contact_shared.json").read_bytes())
        msg = (await next_event(ws, "message.created"))["data"]["message"]
        conv = (await c.get(f"/api/v1/conversations/{msg['conversation_id']}")).json()
        contact = (await c.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
        kinds = {(i["kind"], i["value"]) for i in contact["identities"]}
        assert ("phone", "+393331234567") in kinds and ("handle", "1111111") in kinds


async def test_connect_registers_the_webhook_with_the_secret_token(sqlite_url, tmp_path) -> None:
    fake = FakeProvider(Reply(200, {"ok": True, "result": True, "description": "Webhook was set"}))
    async with run_server(fake.app()) as api, \
            await make_server(sqlite_url, tmp_path, public_base_url="https://support.example.com") as server:
        await seed_basics(server.services)
        c = await admin_client(server)  # cookies are Secure with an https public URL: send them by hand here
        c.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        async with aclosing(c):
            r = await c.post("/api/v1/channels", json={"kind": "telegram", "name": "tg",
                                                       "config": telegram_config(api.url)})
            assert r.status_code == 201, r.text
            channel = r.json()
            assert channel["inbound_url"].startswith("https://support.example.com/hooks/")
            r = await c.post(f"/api/v1/channels/{channel['id']}/connect")
            assert r.status_code == 200 and r.json()["ok"], r.text
            call = fake.calls[-1]
            assert call.path == f"/bot{TELEGRAM_TOKEN}/setWebhook"
            assert call.json["url"] == channel["inbound_url"] and call.json["secret_token"] == TELEGRAM_SECRET
            # a channel whose URL is pasted in a console says so
            _, _, other = await setup_more(c, "twilio")
            r = await c.post(f"/api/v1/channels/{other['id']}/connect")
            assert r.json()["ok"] is False and "paste" in r.json()["error"]


async def setup_more(c, kind: str):  # type: ignore[no-untyped-def]
    r = await c.post("/api/v1/channels", json={"kind": kind, "name": f"{kind}-2", "config": twilio_config()})
    assert r.status_code == 201, r.text
    return None, None, r.json()
