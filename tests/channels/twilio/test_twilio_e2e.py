"""Twilio SMS end to end over real HTTP: requests signed by the twilio library's RequestValidator against the
public URL (the server sits "behind a proxy": THREADLINE_PUBLIC_BASE_URL differs from the address the test
posts to), replies through a fake Twilio REST API on loopback with 429/5xx retries and a permanent 4xx,
status callbacks applied by rank, STOP/START recorded as consent and honoured."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from datetime import timedelta
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select, update

from tests.conftest import run_server
from threadline.db.models import InboxItemRow, MessageRow
from threadline.db.types import utcnow

from ..e2e import FakeProvider, hook_path, next_event, setup, stream
from ..harness import (
    TWILIO_400,
    TWILIO_429,
    TWILIO_500,
    TWILIO_OK,
    TWILIO_SID,
    Reply,
    twilio_config,
    twilio_headers,
)

CUSTOMER = "+14155551234"


def inbound(sid: str, body: str, frm: str = CUSTOMER, **extra: str) -> bytes:
    params = {"ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received",
              "Body": body, "To": "+15005550006", "NumSegments": "1", "MessageSid": sid, "AccountSid": TWILIO_SID,
              "From": frm, "ApiVersion": "2010-04-01", **extra}
    return urlencode(params).encode()


def status(sid: str, value: str, **extra: str) -> bytes:
    return urlencode({"SmsSid": sid, "SmsStatus": value, "MessageStatus": value, "To": CUSTOMER,
                      "MessageSid": sid, "AccountSid": TWILIO_SID, "From": "+15005550006",
                      "ApiVersion": "2010-04-01", **extra}).encode()


async def post(c: httpx.AsyncClient, channel: dict, body: bytes, *, sign_url: str | None = None,
               token: str | None = None) -> httpx.Response:
    """POST as Twilio does: signed over the URL Twilio called (the public one) and the form params."""
    headers = twilio_headers(body, sign_url or channel["inbound_url"], token)
    return await c.post(hook_path(channel), content=body, headers=headers)


async def count(server, model) -> int:  # type: ignore[no-untyped-def]
    async with server.services.db.transaction(write=False) as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def test_inbound_sms_reaches_the_stream_once_and_forgeries_are_refused(server) -> None:
    ids, c, channel = await setup(server, "twilio", twilio_config())
    assert channel["inbound_url"].startswith("http://127.0.0.1:8080/hooks/")  # the public URL, not ours
    assert channel["config"]["auth_token"] == "********"
    async with aclosing(c), stream(server, c) as ws:
        # forged: wrong token, or signed for another URL, or a stale signature replayed with new params
        r = await post(c, channel, inbound("SM" + "1" * 32, "hi"), token="f" * 32)
        assert r.status_code == 401 and "X-Twilio-Signature" in r.json()["detail"]
        r = await post(c, channel, inbound("SM" + "1" * 32, "hi"), sign_url="https://evil.example.com/hooks/x")
        assert r.status_code == 401
        old = twilio_headers(inbound("SM" + "1" * 32, "hi"), channel["inbound_url"])
        r = await c.post(hook_path(channel), content=inbound("SM" + "1" * 32, "hi there"), headers=old)
        assert r.status_code == 401
        r = await c.post(hook_path(channel), content=inbound("SM" + "1" * 32, "hi"),
                         headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 401
        assert await count(server, InboxItemRow) == 0 and await count(server, MessageRow) == 0

        body = inbound("SM" + "2" * 32, "Hi, my order #18233 has not arrived yet")
        r = await post(c, channel, body)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
        assert r.content == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
        event = await next_event(ws, "message.created", message__provider_id="SM" + "2" * 32)
        assert event["data"]["message"]["text"] == "Hi, my order #18233 has not arrived yet"
        # Twilio's retry storm of the same MessageSid: every request acknowledged, one message
        answers = await asyncio.gather(*(post(c, channel, body) for _ in range(20)))
        assert {a.status_code for a in answers} == {200}
        # an event type we do not handle (queued) is acknowledged and dropped
        r = await post(c, channel, status("SM" + "3" * 32, "queued"))
        assert r.status_code == 200
        convs = (await c.get("/api/v1/conversations")).json()["items"]
        assert len(convs) == 1
        msgs = (await c.get(f"/api/v1/conversations/{convs[0]['id']}/messages")).json()["items"]
        assert [m["direction"] for m in msgs] == ["in"]
        contact = (await c.get(f"/api/v1/contacts/{convs[0]['contact_id']}")).json()
        assert ("phone", CUSTOMER) in {(i["kind"], i["value"]) for i in contact["identities"]}
        assert await count(server, InboxItemRow) == 1


async def test_signature_behind_a_proxy_uses_forwarded_headers_too(sqlite_server) -> None:
    ids, c, channel = await setup(sqlite_server, "twilio", twilio_config())
    async with aclosing(c):
        public = "https://sms.example.org" + hook_path(channel)
        body = inbound("SM" + "4" * 32, "via the proxy")
        headers = {**twilio_headers(body, public), "x-forwarded-proto": "https", "x-forwarded-host": "sms.example.org"}
        assert (await c.post(hook_path(channel), content=body, headers=headers)).status_code == 200


async def test_replies_retry_on_429_and_5xx_then_status_callbacks_apply_by_rank(sqlite_server) -> None:
    fake = FakeProvider(TWILIO_OK, [TWILIO_429, TWILIO_500])
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "twilio", twilio_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            assert (await post(c, channel, inbound("SM" + "5" * 32, "where is my parcel?"))).status_code == 200
            conv_id = (await next_event(ws, "message.created"))["data"]["message"]["conversation_id"]
            limits = (await c.get(f"/api/v1/channels/{channel['id']}/limits",
                                  params={"text": "Your parcel ships today €", "conversation_id": conv_id})).json()
            assert limits["sms"]["encoding"] == "GSM-7" and limits["sms"]["units"] == 26
            assert limits["max_text_length"] == 1600 and limits["opted_out"] is None
            seg = (await c.post("/api/v1/messaging/segments", json={"text": "Grazie 👍" * 8})).json()
            assert seg["encoding"] == "UCS-2" and seg["units"] == 72 and seg["segments"] == 2
            assert seg["non_gsm_characters"] == ["👍"]
            reply = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "On its way!"})
            assert reply.status_code == 201
            msg_id = reply.json()["id"]
            sent = await next_event(ws, "message.status_changed", message_id=msg_id)
            assert sent["data"]["status"] == "sent"
            calls = await fake.wait_calls(3)
            assert len(calls) == 3  # 429, 500, then accepted
            call = calls[-1]
            assert call.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
            assert httpx.BasicAuth(TWILIO_SID, twilio_config()["auth_token"])._auth_header == call.headers["authorization"]  # type: ignore[arg-type]
            assert call.form["To"] == [CUSTOMER] and call.form["From"] == ["+15005550006"]
            assert call.form["Body"] == ["On its way!"]
            assert call.form["StatusCallback"] == [channel["inbound_url"]]
            sid = TWILIO_OK.body["sid"]  # type: ignore[index]
            # delivered, then a late "sent" and a stale "undelivered": the status never moves backwards
            assert (await post(c, channel, status(sid, "delivered"))).status_code == 200
            delivered = await next_event(ws, "message.status_changed", message_id=msg_id)
            assert delivered["data"]["status"] == "delivered"
            for late in (status(sid, "sent"), status(sid, "undelivered", ErrorCode="30003")):
                assert (await post(c, channel, late)).status_code == 200
            msgs = (await c.get(f"/api/v1/conversations/{conv_id}/messages")).json()["items"]
            out = [m for m in msgs if m["id"] == msg_id][0]
            assert out["delivery_status"] == "delivered" and out["provider_id"] == sid and out["error"] is None


async def test_a_permanent_error_fails_the_message_with_twilios_reason(sqlite_server) -> None:
    fake = FakeProvider(TWILIO_400)
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "twilio", twilio_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            await post(c, channel, inbound("SM" + "6" * 32, "hello"))
            conv_id = (await next_event(ws, "message.created"))["data"]["message"]["conversation_id"]
            # the composer's limits are enforced before queuing: media type, size, length
            bad = [{"url": "https://files.example.com/a.zip", "content_type": "application/zip", "name": "a.zip"},
                   {"url": "https://files.example.com/b.jpg", "content_type": "image/jpeg", "name": "b.jpg",
                    "size": 6_000_000}]
            for att in bad:
                r = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "x", "attachments": [att]})
                assert r.status_code == 422 and r.json()["field"] == "attachments" and att["name"] in r.json()["detail"]
            r = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "y" * 1601})
            assert r.status_code == 422 and "1600" in r.json()["detail"]
            msg_id = (await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Hi"})).json()["id"]
            failed = await next_event(ws, "message.status_changed", message_id=msg_id)
            assert failed["data"]["status"] == "failed"
            assert "21211" in failed["data"]["error"] and "not a valid phone number" in failed["data"]["error"]
            assert len(fake.calls) == 1  # permanent: not retried
            # a delivery failure reported later by callback carries Twilio's reason too
            await post(c, channel, inbound("SM" + "7" * 32, "still there?"))
            fake.plan.append(Reply(201, {**TWILIO_OK.body, "sid": "SM" + "8" * 32}))  # type: ignore[dict-item]
            msg2 = (await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Yes"})).json()["id"]
            await next_event(ws, "message.status_changed", message_id=msg2, status="sent")
            await post(c, channel, status("SM" + "8" * 32, "undelivered", ErrorCode="30006"))
            failed = await next_event(ws, "message.status_changed", message_id=msg2)
            assert failed["data"]["status"] == "failed" and "30006" in failed["data"]["error"]
            assert "landline" in failed["data"]["error"]


async def test_stop_is_recorded_as_consent_and_blocks_replies_until_start(sqlite_server) -> None:
    fake = FakeProvider(TWILIO_OK)
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "twilio", twilio_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            await post(c, channel, inbound("SM" + "a" * 32, "Hola, necesito ayuda", frm="+34612345678"))
            conv_id = (await next_event(ws, "message.created"))["data"]["message"]["conversation_id"]
            await post(c, channel, inbound("SM" + "b" * 32, " Baja ", frm="+34612345678"))
            updated = await next_event(ws, "contact.updated")
            consent = updated["data"]["contact"]["attributes"]["consent"]["+34612345678"]["sms"]
            assert consent["status"] == "opted_out" and consent["keyword"] == "Baja"
            line = await next_event(ws, "message.created", message__direction="activity")
            assert "opted out" in line["data"]["message"]["text"]
            refused = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "¿Seguro?"})
            assert refused.status_code == 422 and "opted out" in refused.json()["detail"]
            limits = (await c.get(f"/api/v1/channels/{channel['id']}/limits",
                                  params={"conversation_id": conv_id})).json()
            assert limits["opted_out"]["status"] == "opted_out" and limits["problems"]
            assert fake.calls == []
            await post(c, channel, inbound("SM" + "c" * 32, "ALTA", frm="+34612345678"))
            updated = await next_event(ws, "contact.updated")
            assert updated["data"]["contact"]["attributes"]["consent"]["+34612345678"]["sms"]["status"] == "opted_in"
            ok = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "¡Bienvenido de nuevo!"})
            assert ok.status_code == 201
            await fake.wait_calls(1)


async def test_credentials_test_before_saving(sqlite_server) -> None:
    fake = FakeProvider(Reply(200, {"sid": TWILIO_SID, "friendly_name": "Acme Support", "status": "active"}),
                        [Reply(200, {"sid": TWILIO_SID, "friendly_name": "Acme Support", "status": "active"}),
                         Reply(200, {"incoming_phone_numbers": [{"phone_number": "+15005550006"}]}),
                         Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})])
    async with run_server(fake.app()) as api:
        ids, c, _ = await setup(sqlite_server, "api", {"secret": "s3cret-s3cret-s3cret-2"})
        async with aclosing(c):
            r = await c.post("/api/v1/channels/test", json={"kind": "twilio", "config": twilio_config(api.url)})
            assert r.status_code == 200 and r.json()["ok"], r.text
            assert "Acme Support" in r.json()["checks"][0] and "+15005550006" in r.json()["checks"][1]
            r = await c.post("/api/v1/channels/test", json={"kind": "twilio", "config": twilio_config(api.url)})
            assert r.json() == {"ok": False, "checks": [], "error": r.json()["error"]}
            assert "20003" in r.json()["error"]
            r = await c.post("/api/v1/channels/test", json={"kind": "twilio", "config": {"account_sid": "nope"}})
            assert r.status_code == 422


async def test_mms_media_is_downloaded_into_storage_after_the_message_is_stored(sqlite_server) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"JFIF-test-image" * 50
    fake = FakeProvider(TWILIO_OK, media={"ME1.jpg": jpeg})
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "twilio", twilio_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            body = inbound("MM" + "d" * 32, "the damaged box", NumMedia="2",
                           MediaUrl0=f"{api.url}/redirect/ME1.jpg", MediaContentType0="image/jpeg",
                           MediaUrl1=f"{api.url}/redirect/ME2.jpg", MediaContentType1="image/jpeg")
            assert (await post(c, channel, body)).status_code == 200
            created = (await next_event(ws, "message.created"))["data"]["message"]
            assert [a["url"] for a in created["attachments"]] == [f"{api.url}/redirect/ME1.jpg",
                                                                 f"{api.url}/redirect/ME2.jpg"]
            updated = (await next_event(ws, "message.updated"))["data"]["message"]
            first = updated["attachments"][0]
            assert first["url"].startswith("/api/v1/attachments/") and first["size"] == len(jpeg)
            assert updated["attachments"][1]["url"].endswith("/redirect/ME2.jpg")  # missing at Twilio: kept as is
            got = await c.get(first["url"])
            assert got.status_code == 200 and got.content == jpeg
            redirect_call = [x for x in fake.calls if x.path == "/redirect/ME1.jpg"][0]
            assert redirect_call.headers["authorization"].startswith("Basic ")


async def test_whatsapp_via_twilio_window_and_content_template(sqlite_server) -> None:
    fake = FakeProvider(TWILIO_OK)
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "twilio_whatsapp", twilio_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            body = inbound("SM" + "9" * 32, "Hola!", frm="whatsapp:+16505551234", ProfileName="Sheena Nelson",
                           To="whatsapp:+15005550006")
            assert (await post(c, channel, body)).status_code == 200
            msg = (await next_event(ws, "message.created"))["data"]["message"]
            conv_id = msg["conversation_id"]
            ok = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Hi Sheena"})
            assert ok.status_code == 201
            await next_event(ws, "message.status_changed", message_id=ok.json()["id"], status="sent")
            assert fake.calls[-1].form["To"] == ["whatsapp:+16505551234"]
            assert fake.calls[-1].form["From"] == ["whatsapp:+15005550006"]
            async with sqlite_server.services.db.transaction(write=True) as s:
                await s.execute(update(MessageRow).where(MessageRow.direction == "in")
                                .values(created_at=utcnow() - timedelta(hours=24, minutes=1)))
            closed = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Still there?"})
            assert closed.status_code == 422 and "WhatsApp (Twilio)" in closed.json()["detail"]
            tpl = (await c.post(f"/api/v1/channels/{channel['id']}/templates", json={
                "name": "appointment_reminder", "body": "Your appointment is {{1}} at {{2}}.",
                "provider_ref": "HXb5b62575e6e4ff6129ad7c8efe1f983e"})).json()
            fake.plan.append(Reply(201, {**TWILIO_OK.body, "sid": "SM" + "7" * 32}))  # type: ignore[dict-item]
            sent = await c.post(f"/api/v1/conversations/{conv_id}/template-messages",
                                json={"template_id": tpl["id"], "variables": {"1": "tomorrow", "2": "3pm"}})
            assert sent.status_code == 201, sent.text
            await next_event(ws, "message.status_changed", message_id=sent.json()["id"], status="sent")
            form = fake.calls[-1].form
            assert form["ContentSid"] == ["HXb5b62575e6e4ff6129ad7c8efe1f983e"] and "Body" not in form
            assert json.loads(form["ContentVariables"][0]) == {"1": "tomorrow", "2": "3pm"}


async def test_a_stored_file_goes_out_as_an_expiring_signed_link(sqlite_server) -> None:
    from threadline.actions.attachments import describe, store_attachment
    from threadline.files.links import link_key, signed_link

    fake = FakeProvider(TWILIO_OK)
    png = b"\x89PNG\r\n\x1a\n" + b"p" * 200
    async with run_server(fake.app()) as api:
        ids, c, channel = await setup(sqlite_server, "twilio", twilio_config(api.url))
        async with aclosing(c), stream(sqlite_server, c) as ws:
            await post(c, channel, inbound("SM" + "0" * 32, "send me the invoice"))
            conv_id = (await next_event(ws, "message.created"))["data"]["message"]["conversation_id"]
            svc = sqlite_server.services
            async with svc.db.transaction() as s:
                att = describe(await store_attachment(s, svc.files, png, name="invoice.png", content_type="image/png",
                                                      conversation_id=conv_id))
            r = await c.post(f"/api/v1/conversations/{conv_id}/messages", json={"text": "Here", "attachments": [att]})
            assert r.status_code == 201, r.text
            await next_event(ws, "message.status_changed", message_id=r.json()["id"], status="sent")
            [link] = fake.calls[-1].form["MediaUrl"]
            assert link.startswith(channel["inbound_url"] + "/media/")
            local = link.replace("http://127.0.0.1:8080", sqlite_server.url)
            async with httpx.AsyncClient() as anon:  # Twilio: no cookie, only the link
                got = await anon.get(local)
                assert got.status_code == 200 and got.content == png and got.headers["content-type"] == "image/png"
                assert (await anon.get(local[:-3] + "000")).status_code == 403  # tampered signature
                expired = signed_link(link_key(svc.settings.resolved_secret_key), channel["inbound_url"], att["url"],
                                      now=0)
                assert (await anon.get(expired.replace("http://127.0.0.1:8080", sqlite_server.url))).status_code == 403
                assert (await anon.get(sqlite_server.url + "/api/v1" + att["url"][7:])).status_code == 401
