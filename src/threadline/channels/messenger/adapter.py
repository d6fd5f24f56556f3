"""Facebook Messenger (kind ``messenger``); Instagram messaging reuses it (channels/instagram).

Inbound: Meta POSTs JSON (``object: page``) signed with ``X-Hub-Signature-256``; each
``entry[].messaging[]`` event for this page is read: ``message`` (text, attachments, quick replies,
``reply_to.mid``; echoes of our own sends are skipped) and ``postback`` become customer messages keyed by
``mid``, ``delivery.mids`` become delivery updates. The sender is a page-scoped id (PSID), stored as a
handle identity of this channel. The subscription handshake is ``GET ?hub.challenge=…``.

Outbound: ``POST {graph}/{version}/me/messages`` with the page access token,
``messaging_type: RESPONSE`` (inside the 24-hour window).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

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
from threadline.domain.contacts import IdentityKind, IdentityValue
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

CONTENT_TYPES = {"image": "image/*", "video": "video/*", "audio": "audio/*", "file": "application/octet-stream"}


class MessengerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page_id: str = Field(pattern=r"^\d{3,30}$", description="The Facebook Page id (or the Instagram account id)")
    page_access_token: SecretStr = Field(min_length=20, description="Page access token with pages_messaging")
    app_secret: SecretStr = Field(min_length=8, description="App secret (App settings → Basic): signs webhooks")
    verify_token: SecretStr = Field(min_length=8, description="Any string; paste the same at Meta's webhook setup")
    graph_base_url: str = Field(default="https://graph.facebook.com", description="Graph API base URL")
    api_version: str = Field(default="v21.0", pattern=r"^v\d+\.\d+$")

    @field_validator("graph_base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if not (v.startswith("https://") or v.startswith("http://")):
            raise ValueError("graph_base_url must start with https:// or http://")
        return v.rstrip("/")


def _ms(raw: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(raw)) / 1000, UTC)
    except (TypeError, ValueError, OverflowError):
        return None


class MessengerChannel(ChannelAdapter):
    kind = "messenger"
    title = "Facebook Messenger"
    Config = MessengerConfig
    capabilities = Capabilities(
        max_text_length=2000, attachments=True, max_attachment_bytes=25 * 1024 * 1024,
        allowed_content_types=("image/*", "video/*", "audio/*", "application/pdf"), identity_kinds=("handle",),
        read_receipts=True, reply_window_seconds=24 * 3600, work_class="messaging")
    config: MessengerConfig
    object_name: ClassVar[str] = "page"
    product: ClassVar[str] = "Messenger"

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
        if data.get("object") != self.object_name:
            return []
        out: list[Parsed] = []
        for entry in data["entry"]:
            if not isinstance(entry, dict) or str(entry.get("id") or "") not in ("", self.config.page_id):
                continue
            for event in entry.get("messaging") or []:
                if isinstance(event, dict):
                    try:
                        out.extend(self._event(event))
                    except BadPayload as exc:  # kept with its reason; the rest of the batch goes on
                        mid = (event.get("message") or {}).get("mid") if isinstance(event.get("message"), dict) \
                            else None
                        out.append(Unreadable(f"{self.product} event: {exc}", str(mid or "")[:300]))
        return out

    def _event(self, ev: dict[str, Any]) -> list[InboundMessage | StatusUpdate]:
        sender_id = str((ev.get("sender") or {}).get("id") or "")
        if "delivery" in ev:
            mids = (ev.get("delivery") or {}).get("mids") or []
            return [StatusUpdate(provider_id=str(mid), status=DeliveryStatus.DELIVERED, at=_ms(ev.get("timestamp")))
                    for mid in mids]
        msg, postback = ev.get("message"), ev.get("postback")
        if isinstance(msg, dict):
            if msg.get("is_echo") or msg.get("is_deleted"):
                return []  # our own send echoed back, or an unsent message
            mid = str(msg.get("mid") or "")
            text = str(msg.get("text") or "")
            extra: dict[str, object] = {"channel": self.kind}
            attachments = []
            for a in msg.get("attachments") or []:
                payload = (a or {}).get("payload") or {}
                kind = str((a or {}).get("type") or "file")
                if kind == "location" or "coordinates" in payload:
                    coords = payload.get("coordinates") or {}
                    extra["location"] = {"latitude": coords.get("lat"), "longitude": coords.get("long")}
                    text = text or f"Location: {coords.get('lat')}, {coords.get('long')}"
                elif payload.get("url"):
                    attachments.append(Attachment(url=str(payload["url"]),
                                                  content_type=CONTENT_TYPES.get(kind, "application/octet-stream"),
                                                  name=f"{kind}-{len(attachments) + 1}"))
            quick = msg.get("quick_reply")
            if isinstance(quick, dict):
                extra["button"] = {"payload": quick.get("payload")}
            references: tuple[str, ...] = ()
            reply = msg.get("reply_to")
            if isinstance(reply, dict) and reply.get("mid"):
                references = (str(reply["mid"]),)
                extra["reply_to"] = references[0]
            elif isinstance(reply, dict) and reply.get("story"):
                extra["story_reply"] = reply["story"]
        elif isinstance(postback, dict):
            mid = str(postback.get("mid") or f"postback:{sender_id}:{ev.get('timestamp')}")
            text = str(postback.get("title") or postback.get("payload") or "")
            extra, attachments, references = {"channel": self.kind,
                                              "button": {"payload": postback.get("payload")}}, [], ()
        else:
            return []  # read watermarks, reactions, referrals, optins…: acknowledged, not messages
        if not mid or not sender_id:
            raise BadPayload("a message without mid or sender.id")
        if not text and not attachments:
            text = "[an attachment Threadline cannot show]"
        return [InboundMessage(
            provider_id=mid, sender=Sender((IdentityValue(IdentityKind.HANDLE, sender_id, self.scope),)),
            text=text, attachments=tuple(attachments), sent_at=_ms(ev.get("timestamp")), extra=extra,
            references=references, media_pending=tuple(a.url for a in attachments))]  # downloaded after the commit

    # --- outbound ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.config.graph_base_url}/{self.config.api_version}/{path}"

    def payload(self, msg: OutboundMessage) -> dict[str, Any]:
        if len(msg.attachments) > 1:
            raise PermanentSendError(f"{self.product} sends one attachment per message; send them one by one")
        message: dict[str, Any]
        if msg.attachments:
            a = msg.attachments[0]
            if not a.url.startswith(("https://", "http://")):
                raise PermanentSendError(f"{a.name or 'the attachment'} has no public URL for {self.product}")
            kind = next((k for k in ("image", "audio", "video") if a.content_type.startswith(k + "/")), "file")
            message = {"attachment": {"type": kind, "payload": {"url": a.url, "is_reusable": False}}}
        else:
            message = {"text": msg.text}
        return {"recipient": {"id": msg.to.value}, "messaging_type": "RESPONSE", "message": message}

    async def _post(self, **kwargs: Any) -> str:
        resp = await call(self.http, "POST", self._url("me/messages"), provider=self.product,
                          params={"access_token": self.config.page_access_token.get_secret_value()}, **kwargs)
        if resp.status_code >= 400:
            raise graph_error(resp, self.product)
        return str(json_or_empty(resp).get("message_id") or "")

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        stored = msg.attachments[0] if len(msg.attachments) == 1 and msg.attachments[0].data is not None else None
        if stored is None:
            mid = await self._post(json=self.payload(msg))
        else:  # a file stored in Threadline: the text first, then the file uploaded as ``filedata``
            if msg.text:
                await self._post(json={"recipient": {"id": msg.to.value}, "messaging_type": "RESPONSE",
                                       "message": {"text": msg.text}})
            kind = next((k for k in ("image", "audio", "video") if stored.content_type.startswith(k + "/")), "file")
            mid = await self._post(
                data={"recipient": json.dumps({"id": msg.to.value}), "messaging_type": "RESPONSE",
                      "message": json.dumps({"attachment": {"type": kind, "payload": {"is_reusable": False}}})},
                files={"filedata": (stored.name or "file", stored.data or b"",
                                    stored.content_type or "application/octet-stream")})
        if not mid:
            raise RetryableSendError(f"{self.product} answered without a message_id")
        return SendReceipt(provider_id=str(mid), status=DeliveryStatus.SENT)

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """Attachment URLs are signed CDN links that expire: fetched as they are."""
        if not url.startswith(("https://", "http://")):
            raise PermanentSendError(f"not a media URL: {url[:100]}")
        return await fetch(self.http, url, provider=self.product, max_bytes=max_bytes)

    async def check(self) -> list[str]:  # type: ignore[override]
        try:
            resp = await call(self.http, "GET", self._url("me"), provider=self.product,
                              params={"access_token": self.config.page_access_token.get_secret_value(),
                                      "fields": "id,name"})
        except RetryableSendError as exc:
            raise ChannelError(str(exc)) from None
        if resp.status_code >= 400:
            raise ChannelError(str(graph_error(resp, self.product)))
        body = json_or_empty(resp)
        if str(body.get("id") or "") not in ("", self.config.page_id):
            raise ChannelError(f"the token belongs to {body.get('name')} ({body.get('id')}), not {self.config.page_id}")
        return [f"{self.product}: {body.get('name') or self.config.page_id} ({body.get('id') or self.config.page_id})"]
