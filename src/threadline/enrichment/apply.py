"""The one call the inbound path makes before a message's text is stored: redact it by the channel's policy
and, when asked, tell its language. Pure: the text in, the values out (docs/enrichment.md)."""

from __future__ import annotations

from dataclasses import dataclass

from threadline.enrichment import language as _language
from threadline.enrichment.redaction import Finding, RedactionPolicy, redact


@dataclass(frozen=True, slots=True)
class Enriched:
    """What to store: the masked text, what was masked (kinds and offsets into ``text``, no secret) and the
    language (ISO 639-1) or None when unknown or not asked."""

    text: str
    redactions: tuple[Finding, ...] = ()
    language: str | None = None
    language_confidence: float | None = None


def enrich_inbound(text: str, policy: RedactionPolicy, detect_language: bool,
                   detector: _language.LanguageDetector | None = None) -> Enriched:
    """Redact ``text`` by ``policy``; detect its language when ``detect_language`` (with ``detector``, else
    the process's one, built on first use).

    The language is read from the masked text with the masks taken out: the detector never sees a secret,
    and a label such as ``[CARD]`` does not count as an English word.
    """
    redacted = redact(text, policy)
    if not detect_language:
        return Enriched(redacted.text, redacted.findings)
    found = (detector or _language.default_detector()).guess(_without_masks(redacted.text, redacted.findings))
    if found is None:
        return Enriched(redacted.text, redacted.findings)
    return Enriched(redacted.text, redacted.findings, found.code, found.confidence)


def _without_masks(text: str, findings: tuple[Finding, ...]) -> str:
    if not findings:
        return text
    parts, pos = [], 0
    for f in findings:
        parts.append(text[pos:f.start])
        pos = f.end
    parts.append(text[pos:])
    return " ".join(parts)
