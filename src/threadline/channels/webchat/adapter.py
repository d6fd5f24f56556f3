"""The web chat channel: a chat bubble on the business's own website (``/widget.js``).

Unlike other channels there is no third-party provider: Threadline's own visitor endpoints
(``channels/webchat/web``) are the "provider". They authenticate the visitor (a token this adapter issues and
checks), then hand each visitor message to the inbox like any provider request, as a ``RawRequest``
signed with the channel's session secret, so ``verify``/``parse`` and the durable inbox work exactly
as for every other channel (and ``POST /hooks/{key}`` refuses anything not signed by us).

Outbound: agent replies reach the visitor over the visitor's websocket, which follows the bus events
of the visitor's conversation (``message.created`` with direction ``out``). ``send`` therefore has
nothing to transmit: it confirms the message (``sent``, provider id ``wc-<message id>``); the widget
then reports ``delivered``/``read`` receipts, which come back through ``parse`` as ``StatusUpdate``.

Identity: an anonymous visitor is a ``handle`` identity ``visitor:<random id>`` scoped to the channel.
A host site that knows its user may pass ``user_id`` with ``user_hash = hex(HMAC-SHA256(identity_secret,
user_id))``; when it matches, the visitor is ``user:<user_id>`` and the e-mail/phone given with it are
identities; otherwise the identity is ignored and e-mail/phone typed into the pre-chat form are only
*claims* (never used to merge contacts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from threadline.channels.base import (
    BadPayload,
    Capabilities,
    ChannelAdapter,
    ConnectHint,
    InvalidSignature,
    RawRequest,
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

SIGNATURE_HEADER = "x-threadline-webchat-signature"
TOKEN_VERSION = "v1"
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_MIME = re.compile(r"^[a-z0-9.+-]+/(\*|[a-z0-9.+-]+)$")
PrechatField = Literal["name", "email", "phone", "topic"]
Language = Literal["en", "es", "it"]


class Topic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=80)
    queue_id: int | None = None


class WebChatConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed_origins: list[str] = Field(min_length=1, max_length=50, description=(
        "Sites that may show the widget, e.g. https://shop.example.com (scheme, host and port; no path)"))
    title: str = Field(default="Chat with us", max_length=60)
    greeting: str = Field(default="Hi there! How can we help you today?", max_length=300)
    colour: str = Field(default="#4f46e5", description="Accent colour, #rrggbb")
    position: Literal["right", "left"] = "right"
    prechat_fields: list[PrechatField] = Field(default_factory=lambda: ["name", "email"])
    prechat_required: list[PrechatField] = Field(default_factory=list)
    # [{"label": "Billing", "queue_id": 2}]: pre-chat topics, each may pick the queue of a new conversation
    # (plain dicts, validated as ``Topic``, so the config stays JSON as stored)
    topics: list[dict[str, Any]] = Field(default_factory=list, max_length=20)
    identity_secret: SecretStr | None = Field(default=None, description=(
        "Signs your site's user ids (HMAC-SHA256); leave empty to treat every visitor as anonymous"))
    session_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
                                      description="Signs visitor tokens (generated; rotating it forgets visitors)")
    allowed_attachment_types: list[str] = Field(default_factory=lambda: [
        "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"])
    max_attachment_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=25 * 1024 * 1024)
    offline_form: bool = True
    languages: list[Language] = Field(default_factory=lambda: ["en", "es", "it"], min_length=1)
    messages_per_minute: int = Field(default=20, ge=1, le=600, description="Per visitor; more are refused (429)")
    calls: Literal["off", "voice", "video"] = Field(default="off", description=(
        "Calls from the widget, in the browser (WebRTC): off, voice, or voice and video"))

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        out = []
        for origin in v:
            origin = origin.strip().rstrip("/").lower()
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://shop.example.com (no path)")
            out.append(origin)
        return out

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [Topic.model_validate(t).model_dump() for t in v]

    @field_validator("colour")
    @classmethod
    def _colour(cls, v: str) -> str:
        if not _COLOUR.match(v):
            raise ValueError("the colour is #rrggbb, e.g. #4f46e5")
        return v.lower()

    @field_validator("allowed_attachment_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if not _MIME.match(t):
                raise ValueError(f"{t!r} is not a content type like image/png or image/*")
        return v

    @field_validator("identity_secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and 0 < len(v.get_secret_value()) < 16:
            raise ValueError("the identity secret is at least 16 characters")
        return v if v is not None and v.get_secret_value() else None


@dataclass(frozen=True)
class VisitorSession:
    visitor_id: str
    user_id: str | None  # the host site's user id, only when its signature matched
    issued_at: int


class _Att(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=500)
    content_type: str = Field(max_length=255)
    name: str = Field(default="", max_length=255)
    size: int | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["message"] = "message"
    visitor_id: str = Field(min_length=1, max_length=64)
    user_id: str | None = Field(default=None, max_length=200)
    client_id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    queue_id: int | None = None
    conversation_id: int | None = None
    text: str = Field(default="", max_length=10_000)
    attachments: list[_Att] = Field(default_factory=list, max_length=10)
    offline: bool = False


class _Receipts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["receipts"]
    visitor_id: str = Field(min_length=1, max_length=64)
    status: Literal["delivered", "read"]
    message_ids: list[int] = Field(min_length=1, max_length=200)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def identity_hash(secret: str, user_id: str) -> str:
    """What the host site computes for a signed identity: hex HMAC-SHA256 of the user id."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


class WebChatChannel(ChannelAdapter):
    kind = "webchat"
    title = "Web chat"
    Config = WebChatConfig
    capabilities = Capabilities(max_text_length=10_000, attachments=True, max_attachment_bytes=25 * 1024 * 1024,
                                typing=True, read_receipts=True, identity_kinds=("handle",), work_class="chat")
    config: WebChatConfig

    @staticmethod
    def embed_snippet(base_url: str, key: str) -> str:
        """The line a site owner pastes into their pages."""
        return f'<script src="{base_url}/widget.js" data-channel="{key}" async></script>'

    @classmethod
    def connect_hint(cls, base_url: str, key: str) -> ConnectHint:
        return ConnectHint("Paste before </body> on your site:", cls.embed_snippet(base_url, key), snippet=True)

    # -- visitor sessions -------------------------------------------------------------------------
    def _mac(self, data: bytes) -> str:
        return _b64(hmac.new(self.config.session_secret.get_secret_value().encode(), data, hashlib.sha256).digest())

    def issue_token(self, visitor_id: str, user_id: str | None, now: float | None = None) -> str:
        payload = _b64(json.dumps({"c": self.scope, "v": visitor_id, "u": user_id, "t": int(now or time.time())},
                                  separators=(",", ":")).encode())
        body = f"{TOKEN_VERSION}.{payload}"
        return f"{body}.{self._mac(body.encode())}"

    def read_token(self, token: str) -> VisitorSession:
        """The session a visitor token stands for; InvalidSignature if it was not issued by this channel."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_VERSION:
            raise InvalidSignature("not a visitor token")
        if not hmac.compare_digest(parts[2], self._mac(f"{parts[0]}.{parts[1]}".encode())):
            raise InvalidSignature("the visitor token was not issued by this channel")
        try:
            data = json.loads(_unb64(parts[1]))
        except ValueError:
            raise InvalidSignature("unreadable visitor token") from None
        if data.get("c") != self.scope or not isinstance(data.get("v"), str):
            raise InvalidSignature("the visitor token belongs to another channel")
        return VisitorSession(data["v"], data.get("u"), int(data.get("t", 0)))

    def verified_user(self, user_id: str | None, user_hash: str | None) -> str | None:
        """The host site's user id when its HMAC matches; None (anonymous) otherwise: never trusted unsigned."""
        secret = self.config.identity_secret
        if secret is None or not user_id or not user_hash or len(user_id) > 200:
            return None
        expected = identity_hash(secret.get_secret_value(), user_id)
        return user_id if hmac.compare_digest(expected, user_hash.strip().lower()) else None

    def visitor_identity(self, session: VisitorSession) -> IdentityValue:
        value = f"user:{session.user_id}" if session.user_id else f"visitor:{session.visitor_id}"
        return IdentityValue(IdentityKind.HANDLE, value, self.scope)

    # -- checks used by the visitor endpoints -----------------------------------------------------
    def origin_allowed(self, origin: str | None) -> bool:
        return origin is not None and origin.strip().rstrip("/").lower() in self.config.allowed_origins

    def attachment_allowed(self, content_type: str) -> bool:
        ct = (content_type or "").split(";")[0].strip().lower()
        for allowed in self.config.allowed_attachment_types:
            if allowed == ct or (allowed.endswith("/*") and ct.startswith(allowed[:-1])):
                return True
        return False

    def queue_for_topic(self, topic: str | None) -> int | None:
        for t in self.config.topics:
            if topic and t["label"] == topic:
                return t["queue_id"]
        return None

    # -- the inbox protocol -----------------------------------------------------------------------
    def signed_request(self, url: str, payload: dict[str, Any]) -> RawRequest:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return RawRequest("POST", url, {"content-type": "application/json", SIGNATURE_HEADER: self._mac(body)}, body)

    def verify(self, req: RawRequest) -> None:
        sig = req.header(SIGNATURE_HEADER)
        if not sig or not hmac.compare_digest(sig, self._mac(req.body)):
            raise InvalidSignature("web chat requests come from Threadline's widget endpoints only")

    def parse(self, req: RawRequest) -> list[InboundMessage | StatusUpdate]:
        try:
            data: Any = json.loads(req.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPayload(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadPayload("body must be a JSON object")
        try:
            if data.get("type") == "receipts":
                rc = _Receipts.model_validate(data)
                return [StatusUpdate(provider_id=f"wc-{i}", status=DeliveryStatus(rc.status)) for i in rc.message_ids]
            msg = _Message.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise BadPayload(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
        if not msg.text.strip() and not msg.attachments:
            raise BadPayload("a message needs text or an attachment")
        session = VisitorSession(msg.visitor_id, msg.user_id, 0)
        identities = [self.visitor_identity(session)]
        claims: list[IdentityValue] = []
        for kind, raw in ((IdentityKind.EMAIL, msg.email), (IdentityKind.PHONE, msg.phone)):
            if not raw:
                continue
            try:
                ident = normalise_identity(kind, raw)
            except ValidationFailed:
                continue  # a typo in a form field never loses the message
            # Always a claim: the host site's signature covers the user id only, and these fields come
            # from the visitor's browser, so a signed-in visitor could type someone else's address.
            claims.append(ident)
        text = msg.text
        if msg.offline and msg.email:
            text = f"{text}\n\n(Left with the offline form; answer by e-mail to {msg.email})"
        return [InboundMessage(
            provider_id=f"{msg.visitor_id}:{msg.client_id}",
            sender=Sender(identities=tuple(identities), name=msg.name, claims=tuple(claims)),
            text=text,
            attachments=tuple(Attachment(a.url, a.content_type, a.name, a.size) for a in msg.attachments),
            conversation_id=msg.conversation_id,
            queue_id=msg.queue_id,
            extra={"offline": True} if msg.offline else {},
        )]

    def dedupe_key(self, items: list[InboundMessage | StatusUpdate], req: RawRequest) -> str:
        if items and all(isinstance(i, StatusUpdate) for i in items):
            # receipts carry no id of their own; the same receipt twice changes nothing anyway
            return "receipts:" + hashlib.sha256(req.body).hexdigest()
        return super().dedupe_key(items, req)

    async def send(self, msg: OutboundMessage) -> SendReceipt:
        """Nothing to transmit: the visitor's websocket already follows the conversation's events."""
        return SendReceipt(provider_id=f"wc-{msg.message_id}", status=DeliveryStatus.SENT)
