"""The typed fields of the values adapters exchange with the core, and the meta they are stored as."""

from __future__ import annotations

from threadline.domain.contacts import IdentityKind, IdentityValue
from threadline.domain.messages import InboundMessage, Sender, TemplateSend
from threadline.domain.messaging import Consent

ANA = Sender((IdentityValue(IdentityKind.PHONE, "+14155550100"),))


def test_an_inbound_messages_typed_fields_are_stored_under_their_keys_beside_the_channels_details() -> None:
    msg = InboundMessage("SM1", ANA, "STOP", extra={"channel": "sms", "to": "+15005550006"}, consent=Consent.OPT_OUT,
                         media_pending=("https://api.twilio.com/m/1",), thread_hint="t-1", automatic=True)
    assert msg.stored_meta() == {"channel": "sms", "to": "+15005550006", "consent": "opt_out",
                                 "media_pending": ["https://api.twilio.com/m/1"], "thread": "t-1", "automatic": True}
    mail = InboundMessage("<a@b>", ANA, "Hi", email={"subject": "Invoice"}, extra={"auto_reply": True})
    assert mail.stored_meta() == {"auto_reply": True, "email": {"subject": "Invoice"}}
    assert InboundMessage("SM2", ANA, "hello").stored_meta() == {}


def test_a_template_is_stored_as_meta_and_read_back() -> None:
    template = TemplateSend(provider_ref="HX1", name="order_ready", language="es", variables={"1": "Ana"},
                            order=("1",), id=4)
    assert template.as_meta() == {"id": 4, "name": "order_ready", "language": "es", "provider_ref": "HX1",
                                  "order": ["1"], "variables": {"1": "Ana"}}
    assert TemplateSend.from_meta(template.as_meta()) == template
    assert TemplateSend.from_meta(None) is None and TemplateSend.from_meta("order_ready") is None
    older = TemplateSend.from_meta({"name": "order_ready", "variables": {"1": 7}})  # no provider_ref, no order
    assert older == TemplateSend(provider_ref="order_ready", name="order_ready", variables={"1": "7"})
