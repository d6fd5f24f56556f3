"""Messages and the value types channel adapters exchange with the core.

A message's direction is ``in`` (from the customer), ``out`` (to the customer), ``note`` (internal,
never sent) or ``activity`` (a line in the timeline: assigned, resolved, channel switched…).
Its delivery status only moves forward: queued → sent → delivered → read; ``failed`` may follow
queued or sent, and nothing follows it except a later, stronger confirmation from the provider that
it was in fact delivered or read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from threadline.domain.contacts import IdentityValue
from threadline.domain.messaging import Consent


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"
    NOTE = "note"
    ACTIVITY = "activity"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.FAILED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}


def advance_status(current: DeliveryStatus | None, new: DeliveryStatus) -> DeliveryStatus | None:
    """Return the status to store, or None when ``new`` would move the message backwards.

    Provider callbacks arrive out of order ("delivered" before "sent"); applying them by rank means
    the stored status is the furthest one seen, whatever the arrival order.
    """
    if current is None:
        return new
    if _RANK[new] > _RANK[current]:
        return new
    return None


MAX_TEXT = 65_536


@dataclass(frozen=True, slots=True)
class Attachment:
    url: str
    content_type: str = "application/octet-stream"
    name: str = ""
    size: int | None = None
    # Bytes a channel received inline (an email's attachment): the inbox stores them in the file store
    # and replaces ``url`` with the download URL before the message is saved. None for linked files.
    data: bytes | None = field(default=None, repr=False, compare=False)
    content_id: str = ""  # an inline image's Content-ID (email), so the HTML body can point at it
    # Part of the message body (an image the email's HTML shows through ``cid:``), not a file the customer
    # attached: stored and shown in the body, left out of the message's attachment list.
    inline: bool = False


@dataclass(frozen=True, slots=True)
class Sender:
    """Who an inbound message is from: the identities the channel vouches for, and a display name."""

    identities: tuple[IdentityValue, ...]
    name: str = ""
    claims: tuple[IdentityValue, ...] = ()  # unverified (typed into a form): never merge on these


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """What a channel adapter's ``parse`` returns for a customer's message."""

    provider_id: str
    sender: Sender
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    sent_at: datetime | None = None
    thread_hint: str | None = None  # e.g. an email's In-Reply-To, an external thread id
    # Other details the channel gives (a location, a button, the address exactly as the provider wrote it…):
    # stored in the message's meta and shown, never read by the core, which reads only the typed fields.
    extra: dict[str, object] = field(default_factory=dict)
    consent: Consent | None = None  # the whole text is an opt-out/opt-in keyword (STOP, START…)
    media_pending: tuple[str, ...] = ()  # URLs of linked attachments the media worker downloads after the commit
    email: dict[str, object] | None = None  # an email's own details (subject, addresses, HTML, fingerprint…)
    # Hints the channel may give about where the message belongs, strongest first:
    conversation_id: int | None = None  # the conversation the channel's session is bound to (web chat)
    references: tuple[str, ...] = ()  # provider ids of earlier messages it answers (email References)
    queue_id: int | None = None  # the queue a new conversation should start in (a pre-chat topic)
    # An automatic message (out-of-office, auto-generated notice, delivery report): recorded quietly in the
    # conversation it answers without reopening, re-routing or redirecting it, and never the start of a
    # conversation anyone has to handle.
    automatic: bool = False

    def stored_meta(self) -> dict[str, object]:
        """The message's meta as stored: the channel's details, then the typed ones under their own keys."""
        meta = dict(self.extra)
        if self.consent is not None:
            meta["consent"] = self.consent.value
        if self.media_pending:
            meta["media_pending"] = list(self.media_pending)
        if self.email is not None:
            meta["email"] = self.email
        if self.thread_hint:
            meta["thread"] = self.thread_hint
        if self.automatic:
            meta["automatic"] = True
        return meta


@dataclass(frozen=True, slots=True)
class Unreadable:
    """One item of a provider's batch that the adapter cannot read (a message without a sender, a media
    message without its media…). The rest of the batch is processed and the request acknowledged, so the
    provider stops retrying it; the request stays in the inbox with this reason."""

    reason: str
    provider_id: str = ""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A provider's delivery receipt for one of our outbound messages."""

    provider_id: str
    status: DeliveryStatus
    error: str | None = None
    at: datetime | None = None
    # Set when the failure says the address itself is dead (an email hard bounce): the recipient's
    # identity is flagged, e.g. "bounced: 5.1.1 user unknown".
    identity_flag: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateSend:
    """An approved template sent as a message (WhatsApp outside its 24-hour window): the provider's
    reference, its language and the variables filled in, in the template's order. Stored as the message's
    ``meta["template"]``."""

    provider_ref: str
    name: str = ""
    language: str = "en_US"
    variables: dict[str, str] = field(default_factory=dict)
    order: tuple[str, ...] = ()  # the variables in the order the template's body uses them
    id: int | None = None  # the template row it came from

    def as_meta(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "language": self.language, "provider_ref": self.provider_ref,
                "order": list(self.order), "variables": dict(self.variables)}

    @classmethod
    def from_meta(cls, meta: object) -> TemplateSend | None:
        """Read ``meta["template"]`` back (None when the message is not a template)."""
        if not isinstance(meta, dict):
            return None
        variables = meta.get("variables")
        order = meta.get("order")
        template_id = meta.get("id")
        return cls(provider_ref=str(meta.get("provider_ref") or meta.get("name") or ""),
                   name=str(meta.get("name") or ""), language=str(meta.get("language") or "en_US"),
                   variables={str(k): str(v) for k, v in variables.items()} if isinstance(variables, dict) else {},
                   order=tuple(str(k) for k in order) if isinstance(order, list) else (),
                   id=template_id if isinstance(template_id, int) else None)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What the sender worker hands to a channel adapter's ``send``."""

    message_id: int
    conversation_id: int
    to: IdentityValue
    text: str
    attachments: tuple[Attachment, ...] = ()
    author_name: str = ""
    reply_to_provider_id: str | None = None
    # The channel's own meta of the customer message being answered (an email's subject, References,
    # CC), so a reply threads the way that channel threads.
    reply_to_meta: dict[str, object] = field(default_factory=dict)
    template: TemplateSend | None = None  # an approved template instead of free text
    # A message of no conversation (conversation_id 0, e.g. a verification code) has its own subject where
    # the channel has subjects; a reply takes the thread's.
    subject: str = ""


@dataclass(frozen=True, slots=True)
class SendReceipt:
    provider_id: str
    status: DeliveryStatus = DeliveryStatus.SENT
