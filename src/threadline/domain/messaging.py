"""Rules of the messaging channels that are not one provider's protocol: SMS segment counting, opt-out
keywords (consent) and the customer-service window (WhatsApp's 24 hours). Pure: the clock is passed in.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

# GSM 03.38 default alphabet (one septet each) and its extension table (escape + septet: two each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True, slots=True)
class Segments:
    """How an SMS body is split: ``encoding`` GSM-7 or UCS-2, ``units`` septets or UTF-16 code units,
    ``segments`` billed parts, ``per_segment`` capacity of each part, ``remaining`` in the last part."""

    encoding: str
    units: int
    segments: int
    per_segment: int
    remaining: int
    non_gsm_characters: tuple[str, ...] = ()  # what forces UCS-2 (up to ten), so an agent can replace it


def sms_segments(text: str) -> Segments:
    """Count SMS segments: GSM-7 160 per single part, 153 per part when concatenated (extension
    characters such as € take two septets); otherwise UCS-2 70 / 67 code units (emoji take two)."""
    non_gsm = [c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENDED]
    if not non_gsm:
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        segments, per = (1 if units else 0), single
    else:
        segments, per = -(-units // multi), multi
    remaining = per * max(segments, 1) - units
    return Segments(encoding, units, segments, per, remaining, tuple(dict.fromkeys(non_gsm))[:10])


class Consent(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


# Whole-message keywords (trimmed, case- and accent-insensitive), as carriers and Twilio's Advanced Opt-Out
# treat them: English (the CTIA set), Spanish and Italian.
CONSENT_KEYWORDS: dict[Consent, frozenset[str]] = {
    Consent.OPT_OUT: frozenset({
        "stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke",  # English / Twilio
        "baja", "parar", "detener", "cancelar",  # Spanish
        "annulla", "disiscriviti", "cancella", "basta",  # Italian ("stop" is common too)
    }),
    Consent.OPT_IN: frozenset({"start", "unstop", "yes", "subscribe", "alta", "iniziare", "inizia", "riattiva"}),
    Consent.HELP: frozenset({"help", "info", "ayuda", "aiuto"}),
}
_STRIP = re.compile(r"[\s.!¡?¿]+")
_ACCENTS = str.maketrans("áéíóúàèìòùÁÉÍÓÚÀÈÌÒÙ", "aeiouaeiouAEIOUAEIOU")


def consent_keyword(text: str) -> Consent | None:
    """The consent a message expresses when its whole text is one keyword ("STOP", "Baja.", "aiuto")."""
    if len(text) > 40:  # a sentence, not a keyword (cheap exit: most messages)
        return None
    word = _STRIP.sub("", text.translate(_ACCENTS)).casefold()
    if not word or len(word) > 20:
        return None
    for consent, words in CONSENT_KEYWORDS.items():
        if word in words:
            return consent
    return None


def window_open(last_inbound_at: datetime | None, now: datetime, window_seconds: int | None) -> bool:
    """Whether free text may be sent: no window, or the customer wrote within it."""
    if window_seconds is None:
        return True
    if last_inbound_at is None:
        return False
    return now - last_inbound_at < timedelta(seconds=window_seconds)


_VAR = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def template_variables(body: str) -> list[str]:
    """The variable names a template body uses, in order of first use: ``{{1}}``, ``{{name}}``."""
    return list(dict.fromkeys(_VAR.findall(body)))


def render_template(body: str, variables: dict[str, str]) -> str:
    """Fill ``{{n}}`` placeholders; raise KeyError naming the first missing variable."""
    missing = [v for v in template_variables(body) if not str(variables.get(v, "")).strip()]
    if missing:
        raise KeyError(missing[0])
    return _VAR.sub(lambda m: str(variables[m.group(1)]), body)
