"""Messenger and Instagram end to end: the hub.challenge handshake, signed page events turned into messages
from page-scoped ids, echoes ignored, replies through the Send API, delivery receipts applied."""

from __future__ import annotations

import json
from contextlib import aclosing
from pathlib import Path

import pytest

from tests.conftest import run_server

from ..e2e import FakeProvider, hook_path, next_event, setup, stream
from ..harness import harnesses, messenger_config, meta_headers

HERE = Path(__file__).parent.parent


@pytest.mark.parametrize(("kind", "page_id", "fixture"), [
    ("messenger", "108886302101133", "messenger/fixtures/text.json"),
    ("instagram", "17841405822304914", "instagram/fixtures/text.json"),
])
async def test_page_messages_in_and_replies_out(sqlite_server, kind: str, page_id: str, fixture: str) -> None:
    h = harnesses()[kind]
    fake = FakeProvider(h.ok)
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, kind, messenger_config(api.url, page_id=page_id))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            path = hook_path(channel)
            r = await c.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "verify-me-please",
                                          "hub.challenge": "42"})
            assert r.status_code == 200 and r.text == "42"
            body = (HERE / fixture).read_bytes()
            assert (await c.post(path, content=body, headers=meta_headers(body, "", "bad"))).status_code == 401
            assert (await c.post(path, content=body, headers=meta_headers(body, ""))).status_code == 200
            msg = (await next_event(ws, "message.created"))["data"]["message"]
            conv = (await c.get(f"/api/v1/conversations/{msg['conversation_id']}")).json()
            contact = (await c.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
            assert [(i["kind"], i["value"]) for i in contact["identities"]] == [("handle", h.to.value)]
            reply = await c.post(f"/api/v1/conversations/{conv['id']}/messages", json={"text": "Yes we do!"})
            await next_event(ws, "message.status_changed", message_id=reply.json()["id"], status="sent")
            call = (await fake.wait_calls(1))[0]
            assert call.path == "/v21.0/me/messages" and call.query["access_token"].startswith("EAAG")
            assert call.json == {"recipient": {"id": h.to.value}, "messaging_type": "RESPONSE",
                                 "message": {"text": "Yes we do!"}}
            mid = h.ok.body["message_id"]  # type: ignore[index]
            delivery = {"object": "page" if kind == "messenger" else "instagram", "entry": [{"id": page_id, "messaging": [
                {"sender": {"id": h.to.value}, "recipient": {"id": page_id}, "timestamp": 1732449300000,
                 "delivery": {"mids": [mid], "watermark": 1732449299000}}]}]}
            raw = json.dumps(delivery).encode()
            assert (await c.post(path, content=raw, headers=meta_headers(raw, ""))).status_code == 200
            await next_event(ws, "message.status_changed", message_id=reply.json()["id"], status="delivered")
            # our own send echoed back is not a customer message
            echo = {"object": delivery["object"], "entry": [{"id": page_id, "messaging": [
                {"sender": {"id": page_id}, "recipient": {"id": h.to.value}, "timestamp": 1732449400000,
                 "message": {"mid": mid, "is_echo": True, "text": "Yes we do!"}}]}]}
            raw = json.dumps(echo).encode()
            assert (await c.post(path, content=raw, headers=meta_headers(raw, ""))).status_code == 200
            msgs = (await c.get(f"/api/v1/conversations/{conv['id']}/messages")).json()["items"]
            assert [m["direction"] for m in msgs] == ["in", "out"]
