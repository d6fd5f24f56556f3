"""The generic API channel.

Inbound: ``POST /hooks/{key}`` with a JSON body, the header ``X-Threadline-Timestamp`` (Unix seconds)
and ``X-Threadline-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" with the channel secret>``.
Requests older than five minutes are refused (replay protection); a retried ``id`` is stored once.

Outbound: each agent reply is POSTed to the configured ``webhook_url`` with the same two headers,
retried with backoff on timeouts, 429 and 5xx; any other 4xx fails the message with the reason.
The receiver answers 2xx, optionally with ``{"id": "<its message id>"}`` for later status callbacks.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from threadline.channels.base import (
    BadPayload,
    Capabilities,
    ChannelAdapter,
    InvalidSignature,
    PermanentSendError,
    RawRequest,
    RetryableSendError,
)
from threadline.domain.contacts import IdentityKind, IdentityValue, normalise_identity
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
from threadline.security import sign, signature_matches

MAX_SKEW_SECONDS = 300


class ApiChannelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: SecretStr = Field(min_length=16, description="Shared HMAC secret, both directions")
    webhook_url: str | None = Field(default=None, description="Where replies are POSTed (http or https)")
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v and not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError("webhook_url must start with http:// or https://")
        return v or None


class _Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)


class _Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    content_type: str = Field(default="application/octet-stream", max_length=200)
    name: str = Field(default="", max_length=300)
    size: int | None = Field(default=None, ge=0)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["message"] = "message"
    id: str = Field(min_length=1, max_length=200)
    contact: _Contact
    text: str = Field(default="", max_length=65_536)
    attachments: list[_Attachment] = Field(default_factory=list, max_length=20)
    sent_at: datetime | None = None
    thread: str | None = Field(default=None, max_length=300)


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["status"]
    message_id: str = Field(min_length=1, max_length=200)
    status: Literal["sent", "delivered", "read", "failed"]
    error: str | None = Field(default=None, max_length=1000)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class ApiChannel(ChannelAdapter):
    kind = "api"
    title = "API (generic)"
    icon = "code"
    Config = ApiChannelConfig
    secret_destinations = {"secret": ()}  # signs both ways, never sent
    capabilities = Capabilities(max_text_length=65_536, attachments=True, identity_kinds=("handle",),
                                work_class="messaging")
    config: ApiChannelConfig

    def verify(self, req: RawRequest) -> None:
        ts = req.header("x-threadline-timestamp")
        sig = req.header("x-threadline-signature")
        if not ts or not sig:
            raise InvalidSignature("missing X-Threadline-Timestamp or X-Threadline-Signature header")
        try:
            age = abs(time.time() - int(ts))
        except ValueError:
            raise InvalidSignature("X-Threadline-Timestamp must be Unix seconds") from None
        if age > MAX_SKEW_SECONDS:
            raise InvalidSignature("stale request: the timestamp is more than 5 minutes from now")
        if not signature_matches(self.config.secret.get_secret_value(), req.body, sig, ts):
            raise InvalidSignature("signature does not match the body")

    def parse(self, req: RawRequest) -> list[InboundMessage | StatusUpdate]:
        try:
            data: Any = json.loads(req.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPayload(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadPayload("body must be a JSON object")
        try:
            if data.get("type") == "status":
                st = _Status.model_validate(data)
                return [StatusUpdate(provider_id=st.message_id, status=DeliveryStatus(st.status), error=st.error)]
            msg = _Message.model_validate(data)
        except ValidationError as exc:
            raise BadPayload(_describe(exc)) from None
        if not msg.text.strip() and not msg.attachments:
            raise BadPayload("a message needs text or at least one attachment")
        handle = IdentityValue(IdentityKind.HANDLE, msg.contact.id, self.scope)
        identities: list[IdentityValue] = [handle]
        try:
            if msg.contact.email:
                identities.append(normalise_identity(IdentityKind.EMAIL, msg.contact.email))
            if msg.contact.phone:
                identities.append(normalise_identity(IdentityKind.PHONE, msg.contact.phone))
        except ValidationFailed as exc:
            raise BadPayload(f"contact: {exc.message}") from None
        return [
            InboundMessage(
                provider_id=msg.id,
                sender=Sender(identities=tuple(identities), name=msg.contact.name),
                text=msg.text,
                attachments=tuple(Attachment(a.url, a.content_type, a.name, a.size) for a in msg.attachments),
                sent_at=msg.sent_at,
                thread_hint=msg.thread,
            )
        ]

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        if not self.config.webhook_url:
            raise PermanentSendError("this API channel has no webhook_url to deliver replies to")
        body = json.dumps(
            {
                "type": "message",
                "id": f"tl-{msg.message_id}",
                "conversation_id": msg.conversation_id,
                "to": {"id": msg.to.value},
                "text": msg.text,
                "author": msg.author_name,
                "attachments": [
                    {"url": a.url, "content_type": a.content_type, "name": a.name} for a in msg.attachments
                ],
            },
            separators=(",", ":"),
        ).encode()
        ts = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-threadline-timestamp": ts,
            "x-threadline-signature": sign(self.config.secret.get_secret_value(), body, ts),
        }
        try:
            resp = await self.http.post(
                self.config.webhook_url, content=body, headers=headers, timeout=self.config.timeout_seconds
            )
        except httpx.TimeoutException:
            raise RetryableSendError("the webhook did not answer in time") from None
        except httpx.HTTPError as exc:
            raise RetryableSendError(f"cannot reach the webhook: {exc.__class__.__name__}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            retry_after = resp.headers.get("retry-after")
            delay = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise RetryableSendError(f"webhook answered {resp.status_code}", retry_after=delay)
        if resp.status_code >= 400:
            raise PermanentSendError(f"webhook refused the message: {resp.status_code} {resp.text[:200]}")
        provider_id = f"tl-{msg.message_id}"
        try:
            answer = resp.json()
            if isinstance(answer, dict) and isinstance(answer.get("id"), str) and answer["id"]:
                provider_id = answer["id"][:200]
        except ValueError:
            pass
        return SendReceipt(provider_id=provider_id, status=DeliveryStatus.SENT)
