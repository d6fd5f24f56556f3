"""WhatsApp Cloud API end to end: Meta's hub.challenge handshake, X-Hub-Signature-256 over the raw body,
the 24-hour window refusing free text and an approved template going out instead, statuses applied by
rank whatever their order, and Graph errors retried or failing the message with Meta's reason."""

from __future__ import annotations

import hashlib
import hmac
import json
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import update

from tests.conftest import run_server
from threadline.db.models import MessageRow
from threadline.db.types import utcnow

from ..e2e import FakeProvider, hook_path, next_event, setup, stream
from ..harness import META_429, META_SECRET, WA_400, Reply, harnesses, meta_headers, whatsapp_config

FIXTURES = Path(__file__).parent / "fixtures"
OK = harnesses()["whatsapp"].ok


def test_golden_signature_vector_from_the_reference() -> None:
    body = (FIXTURES / "text.json").read_bytes()
    digest = hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert digest == "ded1d1d9621cffa39832ccf2b330fa476b4dc8ec2a5d102e1e554312b3f21d42"


async def post(c: httpx.AsyncClient, channel: dict, payload: dict | bytes, secret: str | None = None
               ) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return await c.post(hook_path(channel), content=body, headers=meta_headers(body, "", secret))


def statuses(wamid: str, *names: str) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"display_phone_number": "15550783881",
                                                    "phone_number_id": "106540352242922"},
                                       "statuses": [{"id": wamid, "status": s, "timestamp": "1749416800",
                                                     "recipient_id": "16505551234"} for s in names]}}]}]}


async def test_handshake_inbound_window_template_and_statuses(server) -> None:
    fake = FakeProvider(OK, [META_429])
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(server, "whatsapp", whatsapp_config(api.url))
        async with aclosing(c), stream(server, c) as ws:
            path = hook_path(channel)
            r = await c.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "verify-me-please",
                                          "hub.challenge": "1158201444"})
            assert r.status_code == 200 and r.text == "1158201444"
            r = await c.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "wrong",
                                          "hub.challenge": "1158201444"})
            assert r.status_code == 403
            # forged and unsigned posts: 401, nothing stored
            assert (await post(c, channel, (FIXTURES / "text.json").read_bytes(), secret="nope")).status_code == 401
            r = await c.post(path, content=(FIXTURES / "text.json").read_bytes(),
                             headers={"content-type": "application/json"})
            assert r.status_code == 401
            assert (await post(c, channel, (FIXTURES / "text.json").read_bytes())).status_code == 200
            created = await next_event(ws, "message.created")
            msg = created["data"]["message"]
            assert msg["text"] == "Does it come in another color?"
            conv_id = msg["conversation_id"]
            # an event type we do not handle: acknowledged
            assert (await post(c, channel, {"object": "whatsapp_business_account", "entry": [
                {"id": "1", "changes": [{"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}]}]}
            )).status_code == 200

            limits = (await c.get(f"/api/v1/channels/{channel['id']}/limits",
                                  params={"conversation_id": conv_id})).json()
            assert limits["window"]["open"] is True and limits["reply_window_seconds"] == 86400
            reply = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Yes, in blue"})
            assert reply.status_code == 201
            sent = await next_event(ws, "message.status_changed", message_id=reply.json()["id"])
            assert sent["data"]["status"] == "sent"  # after one throughput-limit retry
            calls = await fake.wait_calls(2)
            assert calls[-1].path == "/v21.0/106540352242922/messages"
            assert calls[-1].headers["authorization"].startswith("Bearer EAAJB")
            assert calls[-1].json["text"] == {"preview_url": False, "body": "Yes, in blue"}
            assert calls[-1].json["to"] == "+16505551234"  # with its "+": never read in the business's country
            assert calls[-1].json["context"]["message_id"].startswith("wamid.")
            # read arrives before delivered: read stays
            wamid = OK.body["messages"][0]["id"]  # type: ignore[index]
            assert (await post(c, channel, statuses(wamid, "read"))).status_code == 200
            read = await next_event(ws, "message.status_changed", message_id=reply.json()["id"])
            assert read["data"]["status"] == "read"
            assert (await post(c, channel, statuses(wamid, "delivered"))).status_code == 200

            # 25 hours later the window is closed: free text is refused before queuing
            async with server.services.db.transaction(write=True) as s:
                await s.execute(update(MessageRow).where(MessageRow.direction == "in")
                                .values(created_at=utcnow() - timedelta(hours=25)))
            refused = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Still there?"})
            assert refused.status_code == 422 and "24-hour" in refused.json()["detail"]
            assert "template" in refused.json()["detail"]
            r = await c.post(f"/api/v1/channels/{channel['id']}/templates", json={
                "name": "order_update", "language": "en_US",
                "body": "Hello {{1}}, your order {{2}} has shipped."})
            assert r.status_code == 201 and r.json()["variables"] == ["1", "2"]
            template_id = r.json()["id"]
            missing = await c.post(f"/api/v1/conversations/{conv_id}/template-messages",
                                   json={"template_id": template_id, "variables": {"1": "Sheena"}})
            assert missing.status_code == 422 and "{{2}}" in missing.json()["detail"]
            fake.plan.append(Reply(200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.TEMPLATE1"}]}))
            ok = await c.post(f"/api/v1/conversations/{conv_id}/template-messages",
                              json={"template_id": template_id, "variables": {"1": "Sheena", "2": "#18233"}})
            assert ok.status_code == 201, ok.text
            assert ok.json()["text"] == "Hello Sheena, your order #18233 has shipped."
            await next_event(ws, "message.status_changed", message_id=ok.json()["id"], status="sent")
            tpl = fake.calls[-1].json
            assert tpl["type"] == "template" and tpl["template"]["name"] == "order_update"
            assert tpl["template"]["language"] == {"code": "en_US"}
            assert tpl["template"]["components"] == [{"type": "body", "parameters": [
                {"type": "text", "text": "Sheena"}, {"type": "text", "text": "#18233"}]}]
            listed = (await c.get(f"/api/v1/channels/{channel['id']}/templates")).json()
            assert [t["name"] for t in listed] == ["order_update"]
        msgs = (await httpx.AsyncClient(base_url=server.url, cookies=c.cookies).get(
            f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
        first_out = [m for m in msgs if m["direction"] == "out"][0]
        assert first_out["delivery_status"] == "read"


async def test_a_permanent_graph_error_is_shown_to_the_agent(sqlite_server) -> None:
    fake = FakeProvider(WA_400)
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "whatsapp", whatsapp_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            await post(c, channel, (FIXTURES / "image.json").read_bytes())
            msg = (await next_event(ws, "message.created"))["data"]["message"]
            assert msg["text"] == "The scratch on the lid"
            assert msg["attachments"][0]["content_type"] == "image/jpeg"
            reply = await c.post(f"/api/v1/conversations/{msg['conversation_id']}/messages", json={"text": "Sorry!"})
            failed = await next_event(ws, "message.status_changed", message_id=reply.json()["id"])
            assert failed["data"]["status"] == "failed"
            assert "131030" in failed["data"]["error"] and "allowed list" in failed["data"]["error"]
            assert len([x for x in fake.calls if x.path.endswith("/messages")]) == 1  # permanent: not retried
