"""Mask what must never be stored in clear before a customer's message is written: card numbers (PCI) and,
by policy, IBANs, national ids, phone numbers and e-mail addresses (``threadline.enrichment.redaction``;
docs/enrichment.md). The message text, an e-mail's subject, text and HTML, and the raw provider request
kept in the inbox are masked in the transaction that stores them, so the original never reaches the
database, the events, the webhooks, the search index or an export."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from threadline.domain.messages import InboundMessage
from threadline.enrichment.redaction import RedactionPolicy, redact

REDACTED_META = "redacted"  # the message's meta: the kinds masked in it (never the values)


def redact_message(msg: InboundMessage, policy: RedactionPolicy) -> tuple[InboundMessage, int]:
    """The message with its text (and an e-mail's readable parts) masked, and how many things were masked."""
    if not policy.enabled:
        return msg, 0
    text = redact(msg.text, policy)
    kinds = {f.kind.value for f in text.findings}
    found = len(text.findings)
    email = msg.email
    if email:
        email = dict(email)
        for key, value in email.items():
            if isinstance(value, str) and value:
                masked = redact(value, policy)
                if masked.findings:
                    email[key] = masked.text
                    kinds.update(f.kind.value for f in masked.findings)
                    found += len(masked.findings)
    if not found:
        return msg, 0
    extra: dict[str, Any] = {**msg.extra, REDACTED_META: sorted(kinds)}
    return replace(msg, text=text.text, email=email, extra=extra), found


def redact_body(body: bytes, policy: RedactionPolicy) -> tuple[bytes, int]:
    """A provider's raw request as kept in the inbox, masked by the same policy, and how many things were
    masked in it. A request whose parsed messages had more masked than its raw bytes show in plain text
    (base64 or quoted-printable MIME, escaped JSON) is not kept at all: the caller stores ``REMOVED``."""
    if not policy.enabled or not body:
        return body, 0
    masked = redact(body.decode("utf-8", errors="surrogateescape"), policy)
    if not masked.findings:
        return body, 0
    return masked.text.encode("utf-8", errors="surrogateescape"), len(masked.findings)


REMOVED = b"[removed: it held what the redaction policy masks, in a form it could not mask in place]"
