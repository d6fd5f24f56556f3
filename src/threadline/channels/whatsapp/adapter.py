"""Meta WhatsApp Cloud API (kind ``whatsapp``).

Inbound: Meta POSTs JSON (``object: whatsapp_business_account``) signed with ``X-Hub-Signature-256``;
every ``entry[].changes[].value`` for this channel's ``phone_number_id`` is read: ``messages[]`` become
customer messages (text, media, location, contacts, interactive/button replies, reactions, replies-to via
``context.id``; the ``wamid`` is the dedup key) and ``statuses[]`` delivery updates (sent, delivered,
read, failed with Meta's error). The subscription handshake is ``GET ?hub.challenge=…``.

Outbound: ``POST {graph}/{version}/{phone_number_id}/messages`` with the system-user token: text inside
the 24-hour customer-service window, an approved template (name, language, body variables) outside it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from threadline.channels._http import call, fetch, json_or_empty
from threadline.channels.base import (
    Ack,
    BadPayload,
    Capabilities,
    ChannelAdapter,
    ChannelError,
    Parsed,
    PermanentSendError,
    RawRequest,
    RetryableSendError,
)
from threadline.channels.meta import graph_error, hub_challenge, verify_hub_signature
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
    Unreadable,
)
from threadline.domain.messaging import consent_keyword

MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
STATUS_MAP = {"sent": DeliveryStatus.SENT, "delivered": DeliveryStatus.DELIVERED, "read": DeliveryStatus.READ,
              "played": DeliveryStatus.READ, "failed": DeliveryStatus.FAILED}


class WhatsAppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(pattern=r"^\d{5,30}$", description="Phone number ID (WhatsApp → API Setup)")
    access_token: SecretStr = Field(min_length=20, description="Permanent system-user access token")
    app_secret: SecretStr = Field(min_length=8, description="App secret (App settings → Basic): signs webhooks")
    verify_token: SecretStr = Field(min_length=8, description="Any string; paste the same at Meta's webhook setup")
    business_account_id: str | None = Field(default=None, pattern=r"^\d{5,30}$", description="WABA id (templates)")
    graph_base_url: str = Field(default="https://graph.facebook.com", description="Graph API base URL")
    api_version: str = Field(default="v21.0", pattern=r"^v\d+\.\d+$")

    @field_validator("graph_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if not (v.startswith("https://") or v.startswith("http://")):
            raise ValueError("graph_base_url must start with https:// or http://")
        return v.rstrip("/")


def _ts(raw: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(raw)), UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _identity(wa_id: str, scope: str) -> IdentityValue:
    """The customer's phone number in E.164 (``normalise_phone`` maps WhatsApp's legacy forms: Mexico's
    ``521…``, Brazil's 8-digit mobiles); a WhatsApp id no numbering plan explains stays a handle on this
    channel, so the message is kept and the reply still reaches that id."""
    try:
        return IdentityValue(IdentityKind.PHONE, normalise_phone("+" + wa_id.lstrip("+")))
    except ValidationFailed:
        return IdentityValue(IdentityKind.HANDLE, wa_id[:300], scope)


def _id_of(item: Any) -> str:
    return str(item.get("id") or "")[:300] if isinstance(item, dict) else ""


class WhatsAppChannel(ChannelAdapter):
    kind = "whatsapp"
    title = "WhatsApp (Cloud API)"
    icon = "phone"
    Config = WhatsAppConfig
    capabilities = Capabilities(
        max_text_length=4096, attachments=True, max_attachment_bytes=16 * 1024 * 1024,
        allowed_content_types=("image/jpeg", "image/png", "audio/ogg", "audio/mpeg", "audio/aac", "video/mp4",
                               "application/pdf"),
        identity_kinds=("phone",), read_receipts=True, reply_window_seconds=24 * 3600, templates=True,
        consent_scope="whatsapp", work_class="messaging")
    config: WhatsAppConfig

    def verify(self, req: RawRequest) -> None:
        verify_hub_signature(self.config.app_secret.get_secret_value(), req)

    def challenge(self, req: RawRequest) -> Ack | None:
        return hub_challenge(self.config.verify_token.get_secret_value(), req)

    def parse(self, req: RawRequest) -> list[Parsed]:
        try:
            data: Any = json.loads(req.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPayload(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
            raise BadPayload("expected an object with an entry list")
        if data.get("object") != "whatsapp_business_account":
            return []
        out: list[Parsed] = []
        for entry in data["entry"]:
            for change in (entry or {}).get("changes") or [] if isinstance(entry, dict) else []:
                value = (change or {}).get("value") if isinstance(change, dict) else None
                if not isinstance(value, dict) or change.get("field") != "messages":
                    continue  # account updates, template reviews…: acknowledged, not messages
                number = str((value.get("metadata") or {}).get("phone_number_id") or "")
                if number and number != self.config.phone_number_id:
                    continue  # another number of the same app
                names = {str(c.get("wa_id")): str((c.get("profile") or {}).get("name") or "")
                         for c in value.get("contacts") or [] if isinstance(c, dict)}
                # Meta batches many messages in one POST and retries the whole POST for days when it is
                # refused: one item we cannot read is kept with its reason, never a refusal of the others.
                for m in value.get("messages") or []:
                    try:
                        out.append(self._message(m, names))
                    except BadPayload as exc:
                        out.append(Unreadable(f"WhatsApp message: {exc}", _id_of(m)))
                for st in value.get("statuses") or []:
                    try:
                        update = self._status(st)
                    except BadPayload as exc:
                        out.append(Unreadable(f"WhatsApp status: {exc}", _id_of(st)))
                        continue
                    if update is not None:
                        out.append(update)
        return out

    def _message(self, m: Any, names: dict[str, str]) -> InboundMessage:
        if not isinstance(m, dict) or not m.get("id") or not m.get("from"):
            raise BadPayload("a message without id or from")
        kind = str(m.get("type") or "unknown")
        body = m.get(kind) if isinstance(m.get(kind), dict) else {}
        text, attachments, extra = "", [], {"channel": "whatsapp", "type": kind}
        consent, pending = None, ()
        if kind == "text":
            text = str(body.get("body") or "")
            consent = consent_keyword(text)  # STOP/START: the customer's consent to this business's WhatsApp
        elif kind in MEDIA_TYPES:
            media_id = str(body.get("id") or "")
            if not media_id:
                raise BadPayload(f"{kind} without a media id")
            attachments.append(Attachment(url=f"whatsapp-media:{media_id}",
                                          content_type=str(body.get("mime_type") or "application/octet-stream"),
                                          name=str(body.get("filename") or f"{kind}-{media_id}")))
            text = str(body.get("caption") or "")
            pending = (f"whatsapp-media:{media_id}",)
        elif kind == "location":
            extra["location"] = {k: body.get(k) for k in ("latitude", "longitude", "name", "address")}
            label = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
            text = f"Location: {body.get('latitude')}, {body.get('longitude')}" + (f" ({label})" if label else "")
        elif kind == "contacts":
            cards = m.get("contacts") or []
            extra["contacts"] = cards
            parts = []
            for card in cards if isinstance(cards, list) else []:
                name = ((card or {}).get("name") or {}).get("formatted_name") or ""
                phones = ", ".join(str(p.get("phone")) for p in (card or {}).get("phones") or [] if p.get("phone"))
                parts.append(f"{name} {phones}".strip())
            text = "Shared contact: " + "; ".join(parts)
        elif kind == "interactive":
            reply = body.get("button_reply") or body.get("list_reply") or {}
            extra["button"] = {"id": reply.get("id"), "title": reply.get("title")}
            text = str(reply.get("title") or reply.get("id") or "")
        elif kind == "button":
            extra["button"] = {"payload": body.get("payload"), "text": body.get("text")}
            text = str(body.get("text") or body.get("payload") or "")
        elif kind == "reaction":
            extra["reaction"] = {"emoji": body.get("emoji"), "message_id": body.get("message_id")}
            text = f"Reacted {body.get('emoji') or '(removed)'}"
        else:
            errors = m.get("errors") or []
            reason = errors[0].get("title") if errors and isinstance(errors[0], dict) else kind
            text = f"[a WhatsApp message Threadline cannot show: {reason}]"
        references: tuple[str, ...] = ()
        context = m.get("context") if isinstance(m.get("context"), dict) else {}
        target = context.get("id") or (body.get("message_id") if kind == "reaction" else None)
        if target:
            references = (str(target),)
            extra["reply_to"] = str(target)
        sender = str(m["from"])
        extra["wa_id"] = sender  # the address exactly as WhatsApp reported it (the identity is its E.164)
        return InboundMessage(provider_id=str(m["id"]), sender=Sender((_identity(sender, self.scope),),
                                                                      names.get(sender, "")),
                              text=text or ("" if attachments else f"[{kind}]"), attachments=tuple(attachments),
                              sent_at=_ts(m.get("timestamp")), extra=extra, references=references,
                              consent=consent, media_pending=pending)

    def _status(self, st: Any) -> StatusUpdate | None:
        if not isinstance(st, dict) or not st.get("id"):
            raise BadPayload("a status without id")
        status = STATUS_MAP.get(str(st.get("status")))
        if status is None:
            return None
        error = None
        if status is DeliveryStatus.FAILED:
            errs = st.get("errors") or [{}]
            e = errs[0] if isinstance(errs[0], dict) else {}
            details = (e.get("error_data") or {}).get("details") if isinstance(e.get("error_data"), dict) else None
            error = f"WhatsApp error {e.get('code')}: {e.get('title') or e.get('message') or 'failed'}" + (
                f" – {details}" if details else "")
        return StatusUpdate(provider_id=str(st["id"]), status=status, error=error, at=_ts(st.get("timestamp")))

    # --- outbound ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.config.graph_base_url}/{self.config.api_version}/{path}"

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.config.access_token.get_secret_value()}"}

    @staticmethod
    def recipient(to: IdentityValue) -> str:
        """The ``to`` of a send: the number as Meta dials it, with its ``+`` (without one, Meta reads the
        number in the business number's country). WhatsApp reports some customers with a digit the number
        does not have and refuses that form as a recipient (error 131030): Mexico's ``521…`` is sent to as
        +52 and ten digits (the contact's E.164 already), Argentina's mobile ``549…`` as +54 and ten digits,
        without the mobile 9. A WhatsApp id kept as a handle goes back as it came."""
        if to.kind is not IdentityKind.PHONE:
            return to.value
        digits = to.value.lstrip("+")
        if digits.startswith("549") and len(digits) == 13:
            return "+54" + digits[3:]
        return "+" + digits

    def payload(self, msg: OutboundMessage, media_id: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                               "to": self.recipient(msg.to)}
        template = msg.template
        if template is not None:
            variables = template.variables
            order = template.order or sorted(variables, key=lambda k: (not str(k).isdigit(), str(k).zfill(4)))
            params = [{"type": "text", "text": str(variables[k])} for k in order if k in variables]
            out["type"] = "template"
            out["template"] = {"name": template.provider_ref or template.name,
                               "language": {"code": template.language or "en_US"},
                               "components": [{"type": "body", "parameters": params}] if params else []}
            return out
        if len(msg.attachments) > 1:
            raise PermanentSendError("WhatsApp sends one attachment per message; send them one by one")
        if msg.attachments:
            a = msg.attachments[0]
            if media_id is None and not a.url.startswith(("https://", "http://")):
                raise PermanentSendError(f"{a.name or 'the attachment'} has no public URL for WhatsApp to fetch")
            kind = next((k for k in ("image", "audio", "video") if a.content_type.startswith(k + "/")), "document")
            media: dict[str, Any] = {"id": media_id} if media_id else {"link": a.url}
            if msg.text and kind in ("image", "video", "document"):
                media["caption"] = msg.text
            if kind == "document" and a.name:
                media["filename"] = a.name
            out["type"], out[kind] = kind, media
        else:
            out["type"], out["text"] = "text", {"preview_url": False, "body": msg.text}
        if msg.reply_to_provider_id and msg.reply_to_provider_id.startswith("wamid."):
            out["context"] = {"message_id": msg.reply_to_provider_id}
        return out

    async def _upload(self, data: bytes, content_type: str, name: str) -> str:
        """A file stored in Threadline: uploaded to WhatsApp's media endpoint, sent by its id."""
        resp = await call(self.http, "POST", self._url(f"{self.config.phone_number_id}/media"), provider="WhatsApp",
                          headers=self._headers(), data={"messaging_product": "whatsapp", "type": content_type},
                          files={"file": (name or "file", data, content_type or "application/octet-stream")})
        if resp.status_code >= 400:
            raise graph_error(resp, "WhatsApp")
        media_id = json_or_empty(resp).get("id")
        if not media_id:
            raise RetryableSendError("WhatsApp answered the upload without a media id")
        return str(media_id)

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        media_id = None
        if len(msg.attachments) == 1 and msg.attachments[0].data is not None and msg.template is None:
            a = msg.attachments[0]
            media_id = await self._upload(a.data, a.content_type, a.name)  # type: ignore[arg-type]
        resp = await call(self.http, "POST", self._url(f"{self.config.phone_number_id}/messages"),
                          provider="WhatsApp", json=self.payload(msg, media_id), headers=self._headers())
        if resp.status_code >= 400:
            raise graph_error(resp, "WhatsApp")
        messages = json_or_empty(resp).get("messages") or []
        wamid = messages[0].get("id") if messages and isinstance(messages[0], dict) else None
        if not wamid:
            raise RetryableSendError("WhatsApp answered without a message id")
        return SendReceipt(provider_id=str(wamid), status=DeliveryStatus.SENT)

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """``whatsapp-media:{id}``: ask Graph for the short-lived URL, then fetch it with the same token."""
        media_id = url.removeprefix("whatsapp-media:")
        if media_id == url or not media_id.isdigit():
            raise PermanentSendError(f"not a WhatsApp media reference: {url[:100]}")
        resp = await call(self.http, "GET", self._url(media_id), provider="WhatsApp", headers=self._headers())
        if resp.status_code >= 400:
            raise graph_error(resp, "WhatsApp")
        link = json_or_empty(resp).get("url")
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise PermanentSendError("WhatsApp gave no URL for the media")
        return await fetch(self.http, link, provider="WhatsApp", max_bytes=max_bytes, headers=self._headers())

    async def check(self) -> list[str]:  # type: ignore[override]
        try:
            resp = await call(self.http, "GET", self._url(self.config.phone_number_id), provider="WhatsApp",
                              headers=self._headers(), params={"fields": "display_phone_number,verified_name"})
        except RetryableSendError as exc:
            raise ChannelError(str(exc)) from None
        if resp.status_code >= 400:
            raise ChannelError(str(graph_error(resp, "WhatsApp")))
        body = json_or_empty(resp)
        return [f"WhatsApp number {body.get('display_phone_number') or self.config.phone_number_id} "
                f"({body.get('verified_name') or 'unverified name'})"]
