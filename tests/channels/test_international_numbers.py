"""International numbers over signed provider webhooks: one person is one E.164 identity whether they
write by SMS (Twilio), WhatsApp through Twilio or the WhatsApp Cloud API, in whatever form the provider
reports it (WhatsApp's Mexican ``521…``, Brazil's 8-digit legacy mobiles); a WhatsApp Cloud batch with one
item Threadline cannot read is acknowledged and its other messages kept; replies go back to the exact
address the customer wrote from."""

from __future__ import annotations

import json
from contextlib import aclosing
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import run_server
from threadline.db.models import InboxItemRow
from threadline.domain.contacts import normalise_phone

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

# country → (E.164, the sender as an SMS carrier reports it, the WhatsApp id as WhatsApp reports it)
NUMBERS = {
    "MX": ("+525512345678", "+525512345678", "5215512345678"),  # WhatsApp keeps the retired mobile "1"
    "MX2": ("+528112345678", "+528112345678", "5218112345678"),
    "AR": ("+5491123456789", "+5491123456789", "5491123456789"),  # the mobile "9" is part of the E.164 form
    "BR": ("+5531988887777", "+5531988887777", "553188887777"),  # an account older than the ninth digit
    "BR-SP": ("+5511987654321", "+5511987654321", "5511987654321"),
    "IN": ("+919876543210", "+919876543210", "919876543210"),
    "GB": ("+447911123456", "+447911123456", "447911123456"),
    "DE": ("+4915112345678", "+4915112345678", "4915112345678"),
    "IT": ("+393471234567", "+393471234567", "393471234567"),
    "ES": ("+34612345678", "+34612345678", "34612345678"),
    "FR": ("+33612345678", "+33612345678", "33612345678"),
    "US": ("+12025550143", "+12025550143", "12025550143"),
    "NG": ("+2348031234567", "+2348031234567", "2348031234567"),
    "ID": ("+6281234567890", "+6281234567890", "6281234567890"),
    "CN": ("+8613812345678", "+8613812345678", "8613812345678"),
    "ZA": ("+27821234567", "+27821234567", "27821234567"),
    "JP": ("+819012345678", "+819012345678", "819012345678"),
}
WA_OK = Reply(200, {"messaging_product": "whatsapp", "contacts": [{"input": "x", "wa_id": "x"}],
                    "messages": [{"id": "wamid.OUT"}]})


@pytest.mark.parametrize("country", sorted(NUMBERS))
def test_every_form_of_a_number_gives_one_e164(country: str) -> None:
    e164, sms, wa_id = NUMBERS[country]
    assert normalise_phone(sms) == e164
    assert normalise_phone("+" + wa_id) == e164
    assert normalise_phone("whatsapp:+" + wa_id) == e164


@pytest.mark.parametrize(("raw", "e164"), [
    ("+52 1 55 1234 5678", "+525512345678"),  # typed the old way
    ("+54 11 15 2345 6789", "+5491123456789"),  # Argentina's national mobile "15"
    ("+54 9 11 15 2345 6789", "+5491123456789"),  # both the "9" and the "15"
    ("+54 9 351 15 234 5678", "+5493512345678"),
    ("+55 21 8888 7777", "+5521988887777"),  # a Rio mobile without its ninth digit
    ("+55 31 3333 4444", "+553133334444"),  # a Belo Horizonte landline: never given a ninth digit
    ("+54 11 2345 6789", "+541123456789"),  # a Buenos Aires landline stays one
])
def test_legacy_and_national_forms(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


def wa_batch(items: list[dict], statuses: list[dict] | None = None) -> bytes:
    contacts = [{"profile": {"name": f"Customer {m['from']}"}, "wa_id": m["from"]} for m in items if "from" in m]
    value: dict = {"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                   "contacts": contacts, "messages": items}
    if statuses:
        value["statuses"] = statuses
    return json.dumps({"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]}).encode()


def twilio_inbound(sid: str, frm: str, to: str, body: str) -> bytes:
    return urlencode({"SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received", "Body": body,
                      "To": to, "NumSegments": "1", "MessageSid": sid, "AccountSid": TWILIO_SID, "From": frm,
                      "ApiVersion": "2010-04-01", **({"WaId": frm.removeprefix("whatsapp:+")}
                                                      if frm.startswith("whatsapp:") else {})}).encode()


async def contact_of(c: httpx.AsyncClient, e164: str) -> dict:
    found = (await c.get("/api/v1/contacts", params={"q": e164})).json()["items"]
    assert len(found) == 1, (e164, found)
    return found[0]


async def test_one_person_one_identity_across_sms_twilio_whatsapp_and_whatsapp_cloud(server) -> None:
    twilio, graph = FakeProvider(TWILIO_OK), FakeProvider(WA_OK)
    async with run_server(twilio.app()) as twilio_api, run_server(graph.app()) as graph_api:
        ids, c, sms = await setup(server, "twilio", twilio_config(twilio_api.url))
        async with aclosing(c):
            r = await c.post("/api/v1/channels", json={"kind": "twilio_whatsapp", "name": "WhatsApp via Twilio",
                                                       "config": twilio_config(twilio_api.url),
                                                       "default_queue_id": ids["general"]})
            assert r.status_code == 201, r.text
            twa = r.json()
            r = await c.post("/api/v1/channels", json={"kind": "whatsapp", "name": "WhatsApp Cloud",
                                                       "config": whatsapp_config(graph_api.url),
                                                       "default_queue_id": ids["general"]})
            assert r.status_code == 201, r.text
            cloud = r.json()

            # 1. WhatsApp Cloud: one batch with every country, one message Threadline cannot read (no
            # sender) and a status of a message it never sent: acknowledged, the valid ones stored
            items = [{"from": wa_id, "id": f"wamid.IN-{country}", "timestamp": "1749416383", "type": "text",
                      "text": {"body": f"Hola from {country}"}} for country, (_, _, wa_id) in NUMBERS.items()]
            items.insert(3, {"id": "wamid.BROKEN", "timestamp": "1749416383", "type": "text",
                             "text": {"body": "who am I?"}})
            body = wa_batch(items, [{"id": "wamid.UNKNOWN", "status": "delivered", "timestamp": "1749416400",
                                     "recipient_id": "5215512345678"}])
            r = await c.post(hook_path(cloud), content=body, headers=meta_headers(body, ""))
            assert r.status_code == 200, r.text
            async with server.services.db.transaction(write=False) as s:
                [item] = (await s.execute(select(InboxItemRow).where(
                    InboxItemRow.channel_instance_id == cloud["id"]))).scalars().all()
            assert item.processed_at is not None  # done: Meta's retry would read the same
            assert "wamid.BROKEN" in (item.error or "") and "without id or from" in (item.error or "")
            # Meta retries the same batch: stored once, nothing doubled
            r = await c.post(hook_path(cloud), content=body, headers=meta_headers(body, ""))
            assert r.status_code == 200

            # 2. the same people by SMS and by WhatsApp through Twilio, in the form each reports
            for n, (country, (_, sms_from, wa_id)) in enumerate(NUMBERS.items()):
                for channel, frm, to in ((sms, sms_from, "+15005550006"),
                                         (twa, f"whatsapp:+{wa_id}", "whatsapp:+15005550006")):
                    sid = f"SM{channel['id']:02d}{n:030d}"
                    form = twilio_inbound(sid, frm, to, f"Also from {country}")
                    r = await c.post(hook_path(channel), content=form,
                                     headers=twilio_headers(form, channel["inbound_url"]))
                    assert r.status_code == 200, r.text

            # 3. one contact per person, one phone identity, the three channels in one conversation
            for country, (e164, _, _) in NUMBERS.items():
                contact = await contact_of(c, e164)
                assert [(i["kind"], i["value"]) for i in contact["identities"]] == [("phone", e164)], country
                convs = (await c.get("/api/v1/conversations", params={"contact_id": contact["id"]})).json()["items"]
                assert len(convs) == 1, country
                msgs = (await c.get(f"/api/v1/conversations/{convs[0]['id']}/messages")).json()["items"]
                assert {m["channel_instance_id"] for m in msgs if m["direction"] == "in"} == \
                    {sms["id"], twa["id"], cloud["id"]}, country

            # 4. replies: Twilio gets back the address it reported; WhatsApp Cloud the form Meta accepts
            mx = (await c.get("/api/v1/conversations",
                              params={"contact_id": (await contact_of(c, "+525512345678"))["id"]})).json()["items"][0]
            br = (await c.get("/api/v1/conversations",
                              params={"contact_id": (await contact_of(c, "+5531988887777"))["id"]})).json()["items"][0]
            for conv in (mx, br):  # the customer last wrote on WhatsApp via Twilio: the default reply goes there
                assert (await c.post(f"/api/v1/conversations/{conv['id']}/messages",
                                     json={"text": "Gracias"})).status_code == 201
            calls = await twilio.wait_calls(2)
            assert sorted(x.form["To"][0] for x in calls) == ["whatsapp:+5215512345678", "whatsapp:+553188887777"]
            sms_ident = {i["value"]: i["id"] for i in (await contact_of(c, "+525512345678"))["identities"]}
            r = await c.post(f"/api/v1/conversations/{mx['id']}/messages",
                             json={"text": "Por SMS", "channel_instance_id": sms["id"],
                                   "identity_id": sms_ident["+525512345678"]})
            assert r.status_code == 201, r.text
            calls = await twilio.wait_calls(3)
            assert calls[-1].form["To"] == ["+525512345678"]
            ar_contact = await contact_of(c, "+5491123456789")
            ar = (await c.get("/api/v1/conversations", params={"contact_id": ar_contact["id"]})).json()["items"][0]
            for conv, contact in ((mx, "+525512345678"), (ar, "+5491123456789"), (br, "+5531988887777")):
                ident = (await contact_of(c, contact))["identities"][0]["id"]
                r = await c.post(f"/api/v1/conversations/{conv['id']}/messages",
                                 json={"text": "Por WhatsApp", "channel_instance_id": cloud["id"], "identity_id": ident})
                assert r.status_code == 201, r.text
            sent = await graph.wait_calls(3)
            # the dialable forms Meta accepts as a recipient (its 521…/549… ids answer 131030)
            assert [x.json["to"] for x in sent] == ["+525512345678", "+541123456789", "+5531988887777"]
