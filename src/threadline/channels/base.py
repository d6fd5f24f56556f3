"""The one small interface every channel adapter implements.

An adapter knows its provider's protocol and nothing else: it verifies and parses inbound requests
into domain value types (pure, no I/O) and sends outbound messages over the HTTP client it is given.
It never touches the database, the actions or the web layer; the core never branches on its kind,
only on its ``Capabilities``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import httpx
from pydantic import BaseModel

from threadline.domain.messages import InboundMessage, OutboundMessage, SendReceipt, StatusUpdate, Unreadable
from threadline.domain.routing.models import Channel as WorkClass

# What ``parse`` returns: customers' messages, delivery receipts, and the items of a batch it could not read.
Parsed = InboundMessage | StatusUpdate | Unreadable


@dataclass(frozen=True)
class RawRequest:
    """A framework-free copy of the provider's HTTP call; stored verbatim in the inbox."""

    method: str
    url: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


# Request headers that carry credentials (basic auth, cookies, API keys, proxy credentials). A stored raw
# request (workers/inbox.py) keeps every other header, enough to parse it again, and these with their
# value replaced by ``REDACTED``; an adapter adds its provider's own in ``secret_headers``. Signature
# headers that are HMACs of the request (X-Twilio-Signature, X-Hub-Signature-256) reveal no secret: kept.
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token", "x-access-token",
    "x-csrf-token", "x-amz-security-token",
})
REDACTED = "[redacted]"


def storable_headers(headers: Mapping[str, str], secret: frozenset[str] = frozenset()) -> dict[str, str]:
    """``headers`` as they may be stored: credentials (``SECRET_HEADERS`` and ``secret``) redacted."""
    return {k: (REDACTED if k.lower() in SECRET_HEADERS or k.lower() in secret else v) for k, v in headers.items()}


@dataclass(frozen=True)
class Ack:
    """What the provider receives once the request is safely stored."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"


@dataclass(frozen=True)
class ReplayNonce:
    """A provider's one-time token in a signed request (Mailgun's ``token``): the hook layer records it
    for ``ttl_seconds`` (as long as the signature could pass as fresh) and refuses it with another request."""

    value: str
    ttl_seconds: int


@dataclass(frozen=True)
class Capabilities:
    max_text_length: int = 65_536
    attachments: bool = True
    max_attachment_bytes: int = 25 * 1024 * 1024
    allowed_content_types: tuple[str, ...] = ("*/*",)
    typing: bool = False
    read_receipts: bool = False
    reply_window_seconds: int | None = None  # e.g. WhatsApp's 24-hour customer-service window
    identity_kinds: tuple[str, ...] = ("handle",)  # identities this channel can send to
    # Carrier opt-out keywords apply (SMS): the sender checks the SMS opt-out again right before sending.
    consent_keywords: bool = False
    # The consent ledger this channel's STOP/START keywords write and its sends obey, as providers apply
    # opt-outs: "sms" (carriers and Twilio block SMS after STOP) or "whatsapp" (the customer stops the
    # business's WhatsApp); a STOP on one never stops the other. None: no keyword consent on this channel.
    consent_scope: str | None = None
    sms_segments: bool = False  # billed by SMS segments (GSM-7 / UCS-2): the desk shows the count
    templates: bool = False  # approved message templates (with variables) can be sent, e.g. outside the window
    # how routing treats its conversations: slots per agent, what blocks what ("voice", "chat", "messaging", "email")
    work_class: WorkClass = "messaging"


class ChannelError(Exception):
    """Base of adapter errors; the message is safe to show to an admin or an agent."""


class InvalidSignature(ChannelError):
    """The request is not from the provider (bad, missing or stale signature): answer 401, store nothing."""


class BadPayload(ChannelError):
    """The request is signed but cannot be understood at all: answer 400 with the reason. One unreadable
    item of a batch is not a bad payload: ``parse`` returns it as an ``Unreadable`` beside the others."""


class RetryableSendError(ChannelError):
    """Sending failed for a reason that may pass (timeout, 429, 5xx): retry with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSendError(ChannelError):
    """Sending can never succeed as is (bad number, 4xx): mark the message failed with this reason."""


@dataclass(frozen=True)
class ConnectHint:
    """How an admin connects a channel instance, shown beside it on the Channels page: what to do and the
    text to copy (the hook URL a provider calls, or a snippet to paste into a site)."""

    label: str
    value: str
    snippet: bool = False  # code to paste into a page (marked for copying), not a URL


class ChannelAdapter(ABC):
    kind: ClassVar[str]  # unique and never renamed: stored on every channel instance
    title: ClassVar[str]
    icon: ClassVar[str] = "chat"  # the desk's icon for it: chat, mail, phone, send or code
    Config: ClassVar[type[BaseModel]]  # validates the admin's form; SecretStr fields are secrets
    capabilities: ClassVar[Capabilities] = Capabilities()
    # The public URL providers call for this channel instance (public_base_url + /hooks/{key}), set by the
    # adapter factory: signatures over the URL (Twilio) are checked against it, so they validate behind a
    # reverse proxy; empty when the adapter is built without a channel row (credentials test).
    hook_url: str = ""
    # Turns one of our private ``/api/v1/attachments/{id}`` URLs into an expiring signed public link (set by
    # the adapter factory), for providers that fetch outbound media by URL; None when unavailable.
    file_url: Callable[[str], str | None] | None = None
    # Headers of this provider's requests that carry a credential (lower-case), redacted before a request
    # is stored, besides the common ones in ``SECRET_HEADERS`` (e.g. Telegram's secret token).
    secret_headers: ClassVar[frozenset[str]] = frozenset()
    # Where each secret of the Config is sent: {secret field: the config fields naming its destination}, ``()``
    # for one that only signs or checks requests. Secrets not listed go to the destination fields sharing
    # their prefix, or all of them (``actions/channels.secret_destinations``). A saved secret left masked is
    # reused only while those fields keep their saved values.
    secret_destinations: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, config: BaseModel, http: httpx.AsyncClient, *, scope: str) -> None:
        self.config = config
        self.http = http
        self.scope = scope  # the channel instance id, used to scope handle identities

    @abstractmethod
    def verify(self, req: RawRequest) -> None:
        """Raise InvalidSignature unless the request is authentic. No I/O."""

    @abstractmethod
    def parse(self, req: RawRequest) -> list[Parsed]:
        """Turn a verified request into messages and status updates. Pure. Raise BadPayload when the request
        as a whole cannot be read; an item of a batch that cannot be read is returned as ``Unreadable``."""

    def dedupe_key(self, items: list[Parsed], req: RawRequest) -> str:
        """The provider's id for this request, so a retried delivery is stored once."""
        keys = [i.provider_id if isinstance(i, InboundMessage) else f"status:{i.provider_id}:{i.status}"
                if isinstance(i, StatusUpdate) else f"unreadable:{i.provider_id or hashlib.sha256(req.body).hexdigest()[:16]}"
                for i in items]
        return "|".join(keys)[:300] if keys else ""

    @abstractmethod
    async def send(self, msg: OutboundMessage) -> SendReceipt:
        """Deliver one message; raise RetryableSendError or PermanentSendError."""

    def ack(self, req: RawRequest) -> Ack:
        return Ack()

    def replay_nonce(self, req: RawRequest) -> ReplayNonce | None:
        """The one-time token a verified request carries, if the provider signs one (pure, no I/O): the
        hook layer remembers it, so a captured signature cannot carry another request while it is fresh.
        The same token with the same request (a provider retry) is accepted and deduplicated."""
        return None

    async def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """Fetch an inbound attachment the provider only linked (an ``Attachment.url`` that ``parse`` listed in
        ``media_pending``): (bytes, content type). Called by the media worker after the message is
        committed, never inside a transaction; raise RetryableSendError or PermanentSendError."""
        raise PermanentSendError(f"{self.title} attachments cannot be downloaded")

    async def connect(self) -> list[str]:
        """Register ``hook_url`` at the provider when its API allows it (Telegram's setWebhook); what was
        done, in words. Channels whose URL is pasted in the provider's console raise ChannelError."""
        raise ChannelError(f"{self.title}: paste the hook URL in the provider's console (see docs/channels)")

    @classmethod
    def connect_hint(cls, base_url: str, key: str) -> ConnectHint:
        """What the Channels page shows an admin to connect an instance: by default its hook URL."""
        return ConnectHint("Inbound URL", f"{base_url}/hooks/{key}")

    def challenge(self, req: RawRequest) -> Ack | None:
        """Answer a provider's ``GET`` handshake on the hook URL (Meta's ``hub.challenge``): the Ack, or
        None when this channel takes no GET; raise InvalidSignature when the verify token is wrong."""
        return None

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Test the credentials against the provider before an admin saves them (optional)."""
