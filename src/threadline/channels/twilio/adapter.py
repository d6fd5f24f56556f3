"""Twilio Programmable Messaging: SMS and MMS (kind ``twilio``) and WhatsApp through Twilio
(kind ``twilio_whatsapp``: the 24-hour window applies and approved Content templates are sent outside it).

Inbound: Twilio POSTs ``application/x-www-form-urlencoded`` to the hook URL, signed with
``X-Twilio-Signature`` = base64 HMAC-SHA1(auth token, URL + sorted params), checked by the ``twilio``
library's ``RequestValidator`` against the *public* URL (``public_base_url`` + ``/hooks/{key}``, so it
validates behind a reverse proxy), then against ``X-Forwarded-Proto``/``-Host`` and the URL as received.
One request is either a customer's message (``MessageSid``, ``From``, ``Body``, ``MediaUrl{N}``…) or a
status callback (``MessageStatus``). The acknowledgement is an empty TwiML ``<Response/>``.

Outbound: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with Basic auth, ``StatusCallback``
pointing back at the hook URL; HTTP 429 and 5xx are retried, any other 4xx fails with Twilio's code
and message (e.g. 21610: the recipient replied STOP).
"""

from __future__ import annotations

import hmac
import json
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from twilio.request_validator import RequestValidator, get_signature_algorithm

from threadline.channels._http import call, fetch, json_or_empty, retry_after
from threadline.channels.base import (
    Ack,
    BadPayload,
    Capabilities,
    ChannelAdapter,
    ChannelError,
    InvalidSignature,
    Parsed,
    PermanentSendError,
    RawRequest,
    RetryableSendError,
)
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_phone
from threadline.domain.errors import ValidationFailed
from threadline.domain.messages import (
    Attachment,
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    Sender,
    SendReceipt,
    StatusUpdate,
)
from threadline.domain.messaging import consent_keyword

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
MMS_TYPES = ("image/jpeg", "image/png", "image/gif", "video/mp4", "audio/mpeg", "audio/ogg", "text/vcard",
             "application/pdf")
# Twilio MessageStatus → ours. queued/accepted/scheduled/sending say nothing new: acknowledged, ignored.
STATUS_MAP = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "partially_delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}
# Error codes agents meet most often, in words (https://www.twilio.com/docs/api/errors).
ERRORS = {
    "21211": "the 'To' number is not a valid phone number",
    "21408": "sending to this region is not enabled on the Twilio account",
    "21610": "the recipient has replied STOP and unsubscribed from this sender",
    "21612": "Twilio cannot route a message to this number",
    "21614": "the 'To' number is not a mobile number",
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient or carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error from the carrier",
    "63016": "outside WhatsApp's 24-hour window: only an approved template can be sent",
}


def api_base_url(v: str) -> str:
    """A Twilio REST base URL as configured (tests point it at a fake): http(s), no trailing slash."""
    if not (v.startswith("https://") or v.startswith("http://")):
        raise ValueError("api_base_url must start with https:// or http://")
    return v.rstrip("/")


class TwilioConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$", description="Account SID (AC…), Twilio Console → Account info")
    auth_token: SecretStr = Field(min_length=16, description="Primary Auth Token: signs webhooks, authenticates sends")
    from_number: str | None = Field(default=None, max_length=40,
                                    description="Sender: an E.164 number (+15005550006) or a short code")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$",
                                              description="Or a Messaging Service (MG…) that picks the sender")
    webhook_shared_key: SecretStr | None = Field(
        default=None, description="Only if the webhooks are signed with a SharedKey (requests carrying "
        "X-Twilio-Webhooks-Signature-Settings): its secret; otherwise the Auth Token signs")
    api_base_url: str = Field(default="https://api.twilio.com", description="Twilio REST API base URL")
    status_callbacks: bool = Field(default=True, description="Ask Twilio to report delivery to the hook URL")

    @field_validator("from_number")
    @classmethod
    def _from(cls, v: str | None) -> str | None:
        if not v:
            return None
        v = v.strip().removeprefix("whatsapp:")
        if v.isdigit() and len(v) <= 8:  # a short code
            return v
        try:
            return normalise_phone(v)
        except ValidationFailed:
            raise ValueError("from_number must be an E.164 phone number such as +15005550006") from None

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        return api_base_url(v)

    @model_validator(mode="after")
    def _sender(self) -> TwilioConfig:
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("set from_number or messaging_service_sid")
        return self


class _Params(dict[str, list[str]]):
    """Form parameters with every value of a repeated name, as RequestValidator wants them (getall)."""

    def getall(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str, default: str = "") -> str:
        values = self.get(name)
        return values[0] if values else default


def form_params(req: RawRequest) -> _Params:
    ctype = req.header("content-type").split(";")[0].strip().lower()
    if req.method == "POST" and ctype not in ("", "application/x-www-form-urlencoded"):
        return _Params()
    return _form(req.body)


def _form(body: bytes) -> _Params:
    """The form's parameters (cheap: the hook reads them to verify and to parse; the inbox takes the parsed
    items from the hook and does not parse the request again)."""
    out = _Params()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("the form body is not UTF-8") from None
    for name, value in parse_qsl(text, keep_blank_values=True):
        out.setdefault(name, []).append(value)
    return out


@lru_cache(maxsize=4096)
def _e164(value: str) -> str:
    return normalise_phone(value)


def _identity(raw: str, scope: str) -> IdentityValue:
    """A sender address: E.164 phone (SMS and WhatsApp alike; ``normalise_phone`` maps WhatsApp's legacy
    forms such as Mexico's ``whatsapp:+521…``), else a handle on this channel (an alphanumeric sender)."""
    value = raw.strip().removeprefix("whatsapp:")
    try:
        return IdentityValue(IdentityKind.PHONE, _e164(value))
    except ValidationFailed:
        if not value:
            raise BadPayload("the request has no From") from None
        return IdentityValue(IdentityKind.HANDLE, value[:300], scope)


def describe_error(code: str, message: str = "") -> str:
    known = ERRORS.get(code, "")
    text = message or known or "no reason given"
    if known and message and known not in message:
        text = f"{message} ({known})"
    return f"Twilio error {code}: {text}" if code else text


def _candidate_urls(req: RawRequest, hook_url: str) -> list[str]:
    parts = urlsplit(req.url)
    query = f"?{parts.query}" if parts.query else ""
    urls: list[str] = []
    if hook_url:
        urls.append(hook_url + query)
    proto, host = req.header("x-forwarded-proto"), req.header("x-forwarded-host")
    if proto or host:
        urls.append(f"{(proto or parts.scheme).split(',')[0].strip()}://"
                    f"{(host or parts.netloc).split(',')[0].strip()}{parts.path}{query}")
    urls.append(req.url)
    return list(dict.fromkeys(urls))


def verify_signature(req: RawRequest, auth_token: SecretStr, shared_key: SecretStr | None, hook_url: str) -> None:
    """Raise InvalidSignature unless ``X-Twilio-Signature`` signs this request: checked against the public
    URL (``hook_url`` plus the query) first, then the forwarded and the received URL. Messaging and voice
    webhooks alike."""
    signature = req.header("x-twilio-signature")
    if not signature:
        raise InvalidSignature("missing X-Twilio-Signature header")
    try:
        params = form_params(req)
    except BadPayload:
        raise InvalidSignature("the body is not a form Twilio could have signed") from None
    settings = req.header("x-twilio-webhooks-signature-settings")
    algorithm = get_signature_algorithm(settings)
    if settings:  # SharedKey signing (twilio >= 9): its own secret and algorithm
        if shared_key is None:
            raise InvalidSignature("the request is signed with a Twilio SharedKey; set webhook_shared_key")
        validator = RequestValidator(shared_key.get_secret_value())
    else:
        validator = RequestValidator(auth_token.get_secret_value())
    urls = _candidate_urls(req, hook_url)
    # the URL exactly as configured first (one HMAC); then the library's full check of every candidate,
    # which also tries each with and without the default port
    if hmac.compare_digest(validator.compute_signature(urls[0], params, algorithm), signature):
        return
    if not any(validator.validate(url, params, signature, algorithm) for url in urls):
        raise InvalidSignature("X-Twilio-Signature does not match the URL and parameters (check "
                               "THREADLINE_PUBLIC_BASE_URL and the channel's auth token)")


class TwilioChannel(ChannelAdapter):
    kind = "twilio"
    title = "SMS / MMS (Twilio)"
    icon = "phone"
    Config = TwilioConfig
    capabilities = Capabilities(
        max_text_length=1600, attachments=True, max_attachment_bytes=5 * 1024 * 1024,
        allowed_content_types=MMS_TYPES, identity_kinds=("phone",), consent_keywords=True, sms_segments=True,
        consent_scope="sms", work_class="messaging")
    config: TwilioConfig
    whatsapp = False

    # --- inbound -------------------------------------------------------------------------------

    def verify(self, req: RawRequest) -> None:
        verify_signature(req, self.config.auth_token, self.config.webhook_shared_key, self.hook_url)

    def parse(self, req: RawRequest) -> list[Parsed]:
        p = form_params(req)
        sid = p.first("MessageSid") or p.first("SmsMessageSid") or p.first("SmsSid")
        if not sid:
            raise BadPayload("no MessageSid: not a Twilio Messaging request")
        if p.first("AccountSid") and p.first("AccountSid") != self.config.account_sid:
            raise BadPayload(f"AccountSid {p.first('AccountSid')} is not this channel's account")
        status = p.first("MessageStatus")
        if status and status not in ("received", "receiving"):
            mapped = STATUS_MAP.get(status)
            if mapped is None:
                return []
            code = p.first("ErrorCode")
            error = describe_error(code, p.first("ErrorMessage")) if mapped is DeliveryStatus.FAILED else None
            return [StatusUpdate(provider_id=sid, status=mapped, error=error)]
        return [self._inbound(sid, p)]

    def _inbound(self, sid: str, p: _Params) -> InboundMessage:
        sender = _identity(p.first("From"), self.scope)
        text = p.first("Body")
        try:
            count = int(p.first("NumMedia", "0") or 0)
        except ValueError:
            raise BadPayload("NumMedia is not a number") from None
        media = tuple(
            Attachment(url=p.first(f"MediaUrl{n}"), content_type=p.first(f"MediaContentType{n}") or
                       "application/octet-stream", name=f"media-{n}")
            for n in range(min(count, 10)) if p.first(f"MediaUrl{n}"))
        # "from": the address exactly as Twilio gave it, so a reply goes back to that very address
        extra: dict[str, object] = {"channel": "whatsapp" if p.first("From").startswith("whatsapp:") else "sms",
                                    "to": p.first("To"), "from": p.first("From")}
        if p.first("NumSegments"):
            extra["segments"] = p.first("NumSegments")
        if p.first("ButtonPayload") or p.first("ButtonText"):
            extra["button"] = {"payload": p.first("ButtonPayload"), "text": p.first("ButtonText")}
            text = text or p.first("ButtonText")
        if p.first("Latitude") and p.first("Longitude"):
            loc = {"latitude": p.first("Latitude"), "longitude": p.first("Longitude"),
                   "label": p.first("Label"), "address": p.first("Address")}
            extra["location"] = loc
            text = text or f"Location: {loc['latitude']}, {loc['longitude']}" + (
                f" ({loc['label'] or loc['address']})" if loc["label"] or loc["address"] else "")
        references: tuple[str, ...] = ()
        if p.first("OriginalRepliedMessageSid"):
            references = (p.first("OriginalRepliedMessageSid"),)
            extra["reply_to"] = references[0]
        if not text.strip() and not media:
            raise BadPayload("the message has neither Body nor media")
        return InboundMessage(provider_id=sid, sender=Sender(identities=(sender,), name=p.first("ProfileName")),
                              text=text, attachments=media, extra=extra, references=references,
                              consent=consent_keyword(text) if not media else None,
                              media_pending=tuple(a.url for a in media))  # downloaded into storage after the commit

    def ack(self, req: RawRequest) -> Ack:
        return Ack(200, TWIML_EMPTY, "text/xml")

    # --- outbound ------------------------------------------------------------------------------

    def _address(self, msg: OutboundMessage) -> str:
        """The ``To``: the address the customer wrote from, exactly as Twilio reported it, when this reply
        answers them (WhatsApp keeps Mexican mobiles as ``whatsapp:+521…`` although the contact's number is
        +52…); otherwise the identity, with ``whatsapp:`` on a WhatsApp sender."""
        to = msg.to
        received = str(msg.reply_to_meta.get("from") or "")
        if received and received.startswith("whatsapp:") == self.whatsapp:
            bare = received.removeprefix("whatsapp:")
            if to.kind is IdentityKind.HANDLE and bare == to.value:
                return received
            if to.kind is IdentityKind.PHONE:
                try:
                    if _e164(bare) == to.value:
                        return received
                except ValidationFailed:
                    pass
        if self.whatsapp and not to.value.startswith("whatsapp:"):
            return f"whatsapp:{to.value}"
        return to.value

    def _form(self, msg: OutboundMessage) -> list[tuple[str, str]]:
        form = [("To", self._address(msg))]
        if self.config.messaging_service_sid:
            form.append(("MessagingServiceSid", self.config.messaging_service_sid))
        else:
            sender = self.config.from_number or ""
            form.append(("From", f"whatsapp:{sender}" if self.whatsapp else sender))
        template = msg.template
        if template:
            form.append(("ContentSid", template.provider_ref))
            form.append(("ContentVariables", json.dumps(template.variables)))
        elif msg.text:
            form.append(("Body", msg.text))
        for a in msg.attachments:
            url = a.url if a.url.startswith(("https://", "http://")) else (self.file_url(a.url) if self.file_url
                                                                          else None)
            if not url:
                raise PermanentSendError(f"{a.name or 'an attachment'} has no public URL; Twilio fetches media "
                                         "from a public https URL")
            form.append(("MediaUrl", url))  # our stored files: an expiring signed link (files/links.py)
        if self.config.status_callbacks and self.hook_url:
            form.append(("StatusCallback", self.hook_url))
        return form

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        url = f"{self.config.api_base_url}/2010-04-01/Accounts/{self.config.account_sid}/Messages.json"
        resp = await call(self.http, "POST", url, provider="Twilio", content=urlencode(self._form(msg)).encode(),
                          headers={"content-type": "application/x-www-form-urlencoded"},
                          auth=(self.config.account_sid, self.config.auth_token.get_secret_value()))
        body = json_or_empty(resp)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableSendError(describe_error(str(body.get("code") or ""),
                                                    str(body.get("message") or f"HTTP {resp.status_code}")),
                                     retry_after=retry_after(resp))
        if resp.status_code >= 400:
            raise PermanentSendError(describe_error(str(body.get("code") or ""),
                                                    str(body.get("message") or f"HTTP {resp.status_code}")))
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise RetryableSendError("Twilio answered without a message sid")
        if body.get("status") == "failed":
            raise PermanentSendError(describe_error(str(body.get("error_code") or ""),
                                                    str(body.get("error_message") or "")))
        return SendReceipt(provider_id=sid, status=DeliveryStatus.SENT)

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """Twilio media URLs answer with a redirect to the file; Basic auth is needed when the account
        enforces HTTP auth on media."""
        if not url.startswith(("https://", "http://")):
            raise PermanentSendError(f"not a media URL: {url[:100]}")
        return await fetch(self.http, url, provider="Twilio", max_bytes=max_bytes,
                           auth=(self.config.account_sid, self.config.auth_token.get_secret_value()))

    async def check(self) -> list[str]:  # type: ignore[override]
        """Fetch the account (proves the SID and token) and, with a from_number, that it is the account's."""
        auth = (self.config.account_sid, self.config.auth_token.get_secret_value())
        base = f"{self.config.api_base_url}/2010-04-01/Accounts/{self.config.account_sid}"
        try:
            resp = await call(self.http, "GET", f"{base}.json", provider="Twilio", auth=auth)
        except RetryableSendError as exc:
            raise ChannelError(str(exc)) from None
        body: dict[str, Any] = json_or_empty(resp)
        if resp.status_code in (401, 403):
            raise ChannelError("Twilio refused the Account SID / Auth Token (error 20003: authenticate)")
        if resp.status_code >= 400:
            raise ChannelError(describe_error(str(body.get("code") or ""), str(body.get("message") or
                                                                               f"HTTP {resp.status_code}")))
        checks = [f"Twilio account {body.get('friendly_name') or self.config.account_sid} "
                  f"({body.get('status') or 'active'})"]
        if self.config.from_number and not self.whatsapp:
            resp = await call(self.http, "GET", f"{base}/IncomingPhoneNumbers.json", provider="Twilio", auth=auth,
                              params={"PhoneNumber": self.config.from_number})
            numbers = json_or_empty(resp).get("incoming_phone_numbers")
            if resp.status_code == 200 and isinstance(numbers, list) and not numbers:
                raise ChannelError(f"{self.config.from_number} is not a number of this Twilio account")
            if resp.status_code == 200:
                checks.append(f"{self.config.from_number} belongs to the account")
        return checks


class TwilioWhatsAppChannel(TwilioChannel):
    kind = "twilio_whatsapp"
    title = "WhatsApp (Twilio)"
    capabilities = Capabilities(
        max_text_length=1600, attachments=True, max_attachment_bytes=16 * 1024 * 1024,
        allowed_content_types=("image/jpeg", "image/png", "audio/ogg", "audio/mpeg", "video/mp4",
                               "application/pdf"),
        identity_kinds=("phone",), reply_window_seconds=24 * 3600, templates=True, read_receipts=True,
        consent_scope="whatsapp", work_class="messaging")
    whatsapp = True
