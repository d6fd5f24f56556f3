"""Consent per channel kind, as providers apply it, over signed webhooks: a WhatsApp "Stop" (through Twilio
or the Cloud API) stops WhatsApp and leaves SMS alone, an SMS STOP stops SMS from every SMS channel and
leaves WhatsApp alone; the composer's limits and the desk's sidebar say which; ledgers recorded before
consent had scopes are migrated by the channel they were recorded on."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from pathlib import Path
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa
from alembic import command

from tests.conftest import run_server
from tests.web.test_desk_pages import page_login
from threadline.db.migrate import alembic_config, upgrade
from threadline.db.models import ChannelInstanceRow, ContactRow
from threadline.db.session import Database

from .e2e import FakeProvider, hook_path, setup
from .harness import (
    TWILIO_OK,
    TWILIO_SID,
    Reply,
    meta_headers,
    twilio_config,
    twilio_headers,
    whatsapp_config,
)

CUSTOMER = "+5215512345678"  # as WhatsApp reports a Mexican mobile; the contact's number is +525512345678
E164 = "+525512345678"
WA_OK = Reply(200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.OUT"}]})


def twilio_form(sid: str, frm: str, body: str, whatsapp: bool) -> bytes:
    return urlencode({"MessageSid": sid, "SmsSid": sid, "SmsStatus": "received", "NumMedia": "0", "Body": body,
                      "AccountSid": TWILIO_SID, "ApiVersion": "2010-04-01",
                      "From": f"whatsapp:{frm}" if whatsapp else frm,
                      "To": "whatsapp:+15005550006" if whatsapp else "+15005550006"}).encode()


def cloud_text(mid: str, wa_id: str, body: str) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Lupita"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": mid, "timestamp": "1749416383", "type": "text",
                          "text": {"body": body}}]}}]}]}).encode()


async def test_a_whatsapp_stop_leaves_sms_alone_and_the_desk_says_so(server) -> None:
    twilio, graph = FakeProvider(TWILIO_OK), FakeProvider(WA_OK)
    async with run_server(twilio.app()) as twilio_api, run_server(graph.app()) as graph_api:
        ids, c, sms = await setup(server, "twilio", twilio_config(twilio_api.url))
        async with aclosing(c):
            channels = {"sms": sms}
            for kind, config in (("twilio_whatsapp", twilio_config(twilio_api.url)),
                                 ("whatsapp", whatsapp_config(graph_api.url))):
                r = await c.post("/api/v1/channels", json={"kind": kind, "name": kind, "config": config,
                                                           "default_queue_id": ids["general"]})
                assert r.status_code == 201, r.text
                channels[kind] = r.json()
            twa, cloud = channels["twilio_whatsapp"], channels["whatsapp"]
            n = 0

            async def twilio_says(channel: dict, text: str) -> None:
                nonlocal n
                n += 1
                form = twilio_form(f"SM{n:032d}", CUSTOMER if channel is twa else E164, text, channel is twa)
                r = await c.post(hook_path(channel), content=form, headers=twilio_headers(form, channel["inbound_url"]))
                assert r.status_code == 200, r.text

            await twilio_says(sms, "Hola, ¿dónde está mi pedido?")
            await twilio_says(twa, "Stop")
            conv = (await c.get("/api/v1/conversations")).json()["items"][0]
            contact = (await c.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
            ident = {i["value"]: i["id"] for i in contact["identities"]}[E164]
            consent = contact["attributes"]["consent"][E164]
            assert set(consent) == {"whatsapp"} and consent["whatsapp"]["status"] == "opted_out"

            async def reply(channel: dict, text: str) -> httpx.Response:
                return await c.post(f"/api/v1/conversations/{conv['id']}/messages", json={
                    "text": text, "channel_instance_id": channel["id"], "identity_id": ident})

            # SMS still goes out; WhatsApp (through Twilio or the Cloud API: one WhatsApp) is refused
            assert (await reply(sms, "Su pedido sale hoy")).status_code == 201
            assert (await twilio.wait_calls(1))[-1].form["To"] == [E164]
            for channel in (twa, cloud):
                refused = await reply(channel, "¿Algo más?")
                assert refused.status_code == 422 and "opted out of WhatsApp" in refused.json()["detail"]
            limits = {k: (await c.get(f"/api/v1/channels/{ch['id']}/limits",
                                      params={"conversation_id": conv["id"]})).json()
                      for k, ch in (("sms", sms), ("twa", twa))}
            assert limits["sms"]["opted_out"] is None and not limits["sms"]["problems"]
            assert limits["sms"]["consent"]["whatsapp"]["status"] == "opted_out"  # said, not a problem on SMS
            assert limits["twa"]["opted_out"]["keyword"] == "Stop"
            assert "opted out of WhatsApp" in limits["twa"]["problems"][0]

            # the sidebar shows the opt-out per channel, and the contact form keeps working
            async with httpx.AsyncClient(base_url=server.url) as desk:
                csrf = await page_login(desk, "admin@example.com")
                side = await desk.get(f"/desk/p/conversations/{conv['id']}/sidebar")
                assert side.status_code == 200 and "Opted out of WhatsApp" in side.text
                assert "Opted out of SMS" not in side.text and 'name="attr:consent"' not in side.text
                saved = await desk.post(f"/desk/contacts/{contact['id']}", data={"name": "Lupita"},
                                        headers={"X-CSRF-Token": csrf})
                assert saved.status_code in (200, 204), saved.text

            # START on the Cloud API opts back in to WhatsApp (one scope for both providers)
            body = cloud_text("wamid.START", CUSTOMER.lstrip("+"), "START")
            assert (await c.post(hook_path(cloud), content=body, headers=meta_headers(body, ""))).status_code == 200
            assert (await reply(cloud, "¡De nuevo!")).status_code == 201
            assert (await graph.wait_calls(1))[-1].json["to"] == E164

            # an SMS STOP stops SMS only
            await twilio_says(sms, "STOP")
            refused = await reply(sms, "¿Seguro?")
            assert refused.status_code == 422 and "opted out of SMS" in refused.json()["detail"]
            assert (await reply(twa, "Seguimos por WhatsApp")).status_code == 201
            calls = await twilio.wait_calls(2)
            assert calls[-1].form["To"] == [f"whatsapp:{E164}"]  # the last customer message was an SMS: E.164
            contact = (await c.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
            assert {k: v["status"] for k, v in contact["attributes"]["consent"][E164].items()} == \
                {"sms": "opted_out", "whatsapp": "opted_in"}


async def test_the_migration_scopes_legacy_ledgers_by_the_channel_they_came_on(db_url: str, tmp_path: Path) -> None:
    """A STOP recorded before scopes on a Twilio WhatsApp channel becomes a WhatsApp opt-out; one from SMS (or
    from a deleted channel) stays an SMS opt-out; the downgrade puts the old shape back."""
    cfg = alembic_config(db_url)
    await asyncio.to_thread(command.downgrade, cfg, "0010_one_head")
    db = Database(db_url)
    try:
        ledger = {"+34612345678": {"status": "opted_out", "keyword": "Stop", "channel_instance_id": 72},
                  "+34699999999": {"status": "opted_out", "keyword": "STOP", "channel_instance_id": 71},
                  "+34600000000": {"status": "opted_in", "keyword": "START", "channel_instance_id": 999}}
        async with db.transaction(write=True) as s:
            s.add_all([ChannelInstanceRow(id=71, kind="twilio", name="SMS", key="k-sms", config_encrypted=""),
                       ChannelInstanceRow(id=72, kind="twilio_whatsapp", name="WA", key="k-wa", config_encrypted=""),
                       ContactRow(id=5, name="Ana", attributes={"consent": ledger, "tier": "gold"})])
        await asyncio.to_thread(upgrade, db_url)

        async def attributes() -> dict:
            async with db.transaction(write=False) as s:
                return (await s.execute(sa.select(ContactRow.attributes).where(ContactRow.id == 5))).scalar_one()

        after = await attributes()
        assert after["tier"] == "gold"
        assert after["consent"] == {"+34612345678": {"whatsapp": ledger["+34612345678"]},
                                    "+34699999999": {"sms": ledger["+34699999999"]},
                                    "+34600000000": {"sms": ledger["+34600000000"]}}
        await asyncio.to_thread(command.downgrade, cfg, "0010_one_head")
        assert (await attributes())["consent"] == ledger
        await asyncio.to_thread(upgrade, db_url)
    finally:
        await db.dispose()
