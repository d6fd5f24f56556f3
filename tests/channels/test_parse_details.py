"""What each adapter makes of its provider's richer payloads: media, location, button replies, replies-to,
batched WhatsApp changes, Telegram chat/message pairs and edits, and the Twilio published signature vector."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from twilio.request_validator import RequestValidator

from threadline.channels.base import InvalidSignature, RawRequest
from threadline.channels.registry import adapters
from threadline.domain.contacts import IdentityKind
from threadline.domain.messages import (
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    StatusUpdate,
    TemplateSend,
    Unreadable,
)
from threadline.domain.messaging import Consent

from .harness import harnesses

HERE = Path(__file__).parent
HOOK = "https://support.example.com/hooks/abc123"


def parse(kind: str, path: str) -> list:
    h = harnesses()[kind]
    cls = adapters()[kind]
    adapter = cls(cls.Config.model_validate(h.config), httpx.AsyncClient(), scope="1")
    adapter.hook_url = HOOK
    body = (HERE / path).read_bytes()
    req = RawRequest("POST", HOOK, h.headers(body, HOOK), body)
    adapter.verify(req)
    return adapter.parse(req)


def test_twilio_published_vector_and_port_variants() -> None:
    v = RequestValidator("12345")
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    p = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
         "To": "+18005551212"}
    assert v.compute_signature(url, p) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_query_string_and_default_port_are_part_of_the_check() -> None:
    h = harnesses()["twilio"]
    cls = adapters()["twilio"]
    adapter = cls(cls.Config.model_validate(h.config), httpx.AsyncClient(), scope="1")
    adapter.hook_url = "https://support.example.com/hooks/abc123"
    body = (HERE / "twilio/fixtures/sms_inbound.form").read_bytes()
    signed_with_port = h.headers(body, "https://support.example.com:443/hooks/abc123?rc=2")
    adapter.verify(RawRequest("POST", "http://10.0.0.5:8080/hooks/abc123?rc=2", signed_with_port, body))


def test_twilio_mms_keeps_every_media_item_for_download() -> None:
    [msg] = parse("twilio", "twilio/fixtures/mms_inbound.form")
    assert isinstance(msg, InboundMessage)
    assert [a.content_type for a in msg.attachments] == ["image/jpeg", "application/pdf"]
    assert msg.media_pending == tuple(a.url for a in msg.attachments)
    assert msg.sender.identities[0].kind is IdentityKind.PHONE and msg.sender.identities[0].value == "+14155551234"


def test_twilio_whatsapp_location_button_and_reply_to() -> None:
    [loc] = parse("twilio_whatsapp", "twilio/fixtures/whatsapp_location.form")
    assert loc.text.startswith("Location: 37.7749, -122.4194") and loc.sender.name == "Sheena Nelson"
    assert loc.extra["channel"] == "whatsapp" and loc.sender.identities[0].value == "+16505551234"
    [btn] = parse("twilio_whatsapp", "twilio/fixtures/whatsapp_button_reply.form")
    assert btn.extra["button"] == {"payload": "RESCHEDULE_YES", "text": "Yes, reschedule"}
    assert btn.references == ("SM0b1c2d3e4f5061728394a5b6c7d8e9f0",)


def test_twilio_stop_keyword_is_marked_and_failures_carry_the_reason() -> None:
    [stop] = parse("twilio", "twilio/fixtures/sms_stop_spanish.form")
    assert stop.consent is Consent.OPT_OUT
    [failed] = parse("twilio", "twilio/fixtures/status_undelivered.form")
    assert isinstance(failed, StatusUpdate) and failed.status is DeliveryStatus.FAILED
    assert "30003" in (failed.error or "") and "unreachable" in (failed.error or "")


async def test_twilio_whatsapp_sends_templates_as_content_sid() -> None:
    h = harnesses()["twilio_whatsapp"]
    cls = adapters()["twilio_whatsapp"]
    adapter = cls(cls.Config.model_validate(h.config), httpx.AsyncClient(), scope="1")
    form = dict(adapter._form(OutboundMessage(1, 1, h.to, "Hi Ana", template=TemplateSend(  # type: ignore[attr-defined]
        provider_ref="HXb5b62575e6e4ff6129ad7c8efe1f983e", variables={"1": "Ana"}))))
    assert form["To"] == "whatsapp:+14155551234" and form["From"] == "whatsapp:+15005550006"
    assert form["ContentSid"].startswith("HX") and form["ContentVariables"] == '{"1": "Ana"}' and "Body" not in form


def test_whatsapp_batches_media_interactive_location_and_reaction() -> None:
    [img] = parse("whatsapp", "whatsapp/fixtures/image.json")
    assert img.attachments[0].url == "whatsapp-media:1003383421387256" and img.text == "The scratch on the lid"
    [btn] = parse("whatsapp", "whatsapp/fixtures/interactive_reply.json")
    assert btn.text == "Change colour" and btn.references[0].startswith("wamid.")
    loc, reaction = parse("whatsapp", "whatsapp/fixtures/location_and_reaction_batch.json")
    assert "1 Hacker Way" in loc.text and loc.sent_at is not None
    assert reaction.text == "Reacted 👍" and reaction.references
    [failed] = parse("whatsapp", "whatsapp/fixtures/status_failed.json")
    assert failed.status is DeliveryStatus.FAILED and "131047" in failed.error and "24 hours" in failed.error


def test_whatsapp_ignores_other_numbers_of_the_same_app() -> None:
    h = harnesses()["whatsapp"]
    cls = adapters()["whatsapp"]
    adapter = cls(cls.Config.model_validate({**h.config, "phone_number_id": "999999999"}), httpx.AsyncClient(),
                  scope="1")
    body = (HERE / "whatsapp/fixtures/text.json").read_bytes()
    assert adapter.parse(RawRequest("POST", HOOK, {}, body)) == []


def test_messenger_attachments_reply_to_postbacks_and_instagram_story_replies() -> None:
    [att] = parse("messenger", "messenger/fixtures/attachment_reply.json")
    assert att.attachments[0].url.startswith("https://scontent") and att.references
    [pb] = parse("messenger", "messenger/fixtures/postback.json")
    assert pb.text == "Talk to an agent" and pb.extra["button"] == {"payload": "HUMAN_AGENT"}
    [story] = parse("instagram", "instagram/fixtures/story_reply.json")
    assert story.extra["story_reply"]["id"] == "17922386585789434"
    assert story.sender.identities[0].kind is IdentityKind.HANDLE


def test_telegram_pairs_photos_callbacks_and_edits() -> None:
    [photo] = parse("telegram", "telegram/fixtures/photo_reply.json")
    assert photo.provider_id == "1111111:1367" and photo.references == ("1111111:1366",)
    assert photo.attachments[0].url == "telegram-file:AgACAgQAAxkBAAIBY2VkZ2"  # the largest size
    [cb] = parse("telegram", "telegram/fixtures/callback_query.json")
    assert cb.text == "rate:5" and cb.provider_id == "callback:4382bfdwdsb323b2d9"
    [edit] = parse("telegram", "telegram/fixtures/edited_message.json")
    assert edit.provider_id == "1111111:1365:edit:1441645800" and edit.text == "(edited) /start please"


def test_twilio_shared_key_signatures_use_their_secret_and_sha256() -> None:
    h = harnesses()["twilio"]
    cls = adapters()["twilio"]
    adapter = cls(cls.Config.model_validate({**h.config, "webhook_shared_key": "sharedkey-secret-0123456789"}),
                  httpx.AsyncClient(), scope="1")
    adapter.hook_url = HOOK
    body = (HERE / "twilio/fixtures/sms_inbound.form").read_bytes()
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    sig = RequestValidator("sharedkey-secret-0123456789").compute_signature(HOOK, params, "HMAC_SHA256")
    settings = {"x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"}
    adapter.verify(RawRequest("POST", HOOK, {"content-type": "application/x-www-form-urlencoded",
                                             "x-twilio-signature": sig, **settings}, body))
    sha1 = RequestValidator("sharedkey-secret-0123456789").compute_signature(HOOK, params)
    with pytest.raises(InvalidSignature):
        adapter.verify(RawRequest("POST", HOOK, {"x-twilio-signature": sha1, **settings}, body))
    plain = cls(cls.Config.model_validate(h.config), httpx.AsyncClient(), scope="1")
    with pytest.raises(InvalidSignature, match="webhook_shared_key"):
        plain.verify(RawRequest("POST", HOOK, {"x-twilio-signature": sig, **settings}, body))


def test_one_unreadable_event_of_a_messenger_batch_is_kept_with_its_reason_beside_the_others() -> None:
    h = harnesses()["messenger"]
    cls = adapters()["messenger"]
    adapter = cls(cls.Config.model_validate(h.config), httpx.AsyncClient(), scope="1")
    page = h.config["page_id"]
    body = json.dumps({"object": "page", "entry": [{"id": page, "time": 1, "messaging": [
        {"sender": {"id": "6523845174373124"}, "recipient": {"id": page}, "timestamp": 1,
         "message": {"mid": "m_ok", "text": "hello"}},
        {"sender": {}, "recipient": {"id": page}, "timestamp": 2, "message": {"mid": "m_broken", "text": "?"}},
    ]}]}).encode()
    ok, broken = adapter.parse(RawRequest("POST", HOOK, {}, body))
    assert isinstance(ok, InboundMessage) and ok.text == "hello"
    assert isinstance(broken, Unreadable) and broken.provider_id == "m_broken" and "sender" in broken.reason
    assert "unreadable:m_broken" in adapter.dedupe_key([ok, broken], RawRequest("POST", HOOK, {}, body))
