"""The messaging rules that are not one provider's protocol: SMS segments, opt-out keywords, the reply
window and template variables (domain/messaging.py, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threadline.domain.messaging import (
    Consent,
    consent_keyword,
    render_template,
    sms_segments,
    template_variables,
    window_open,
)


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),  # concatenated parts carry 153 septets
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
    ("{" * 81, "GSM-7", 162, 2),
    ("Perché è così", "GSM-7", 13, 1),  # è and é are in the GSM alphabet
    ("ciò che è già", "GSM-7", 13, 1),  # ò, è and à are GSM-7 too
    ("ça va", "UCS-2", 5, 1),  # lower-case ç is not (only Ç is)
    ("Привет" * 12, "UCS-2", 72, 2),  # 70 per single UCS-2 part, then 67
    ("👍" * 35, "UCS-2", 70, 1),  # an emoji is two UTF-16 code units
    ("👍" * 36, "UCS-2", 72, 2),
])
def test_sms_segments(text: str, encoding: str, units: int, segments: int) -> None:
    seg = sms_segments(text)
    assert (seg.encoding, seg.units, seg.segments) == (encoding, units, segments)
    assert seg.remaining == seg.per_segment * max(seg.segments, 1) - seg.units


def test_the_characters_forcing_ucs2_are_named() -> None:
    seg = sms_segments("Grazie “mille” 🙂")
    assert seg.encoding == "UCS-2" and set(seg.non_gsm_characters) == {"“", "”", "🙂"}


@pytest.mark.parametrize(("text", "consent"), [
    ("STOP", Consent.OPT_OUT), (" stop. ", Consent.OPT_OUT), ("Unsubscribe", Consent.OPT_OUT),
    ("BAJA", Consent.OPT_OUT), ("Cancelar", Consent.OPT_OUT), ("ANNULLA", Consent.OPT_OUT),
    ("disiscriviti", Consent.OPT_OUT), ("START", Consent.OPT_IN), ("unstop", Consent.OPT_IN),
    ("ALTA", Consent.OPT_IN), ("HELP", Consent.HELP), ("¿Ayuda?", Consent.HELP), ("aiuto!", Consent.HELP),
    ("please stop sending me these", None), ("stop it and refund me", None), ("fine", None), ("", None),
    ("Hello", None),
])
def test_consent_keywords_are_whole_messages(text: str, consent: Consent | None) -> None:
    assert consent_keyword(text) is consent


def test_window() -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    day = 24 * 3600
    assert window_open(now - timedelta(hours=23, minutes=59), now, day)
    assert not window_open(now - timedelta(hours=24), now, day)
    assert not window_open(None, now, day)
    assert window_open(None, now, None)


def test_templates() -> None:
    body = "Hi {{1}}, order {{ 2 }} ships {{when}}; thanks {{1}}"
    assert template_variables(body) == ["1", "2", "when"]
    assert render_template(body, {"1": "Ana", "2": "#7", "when": "today"}) == "Hi Ana, order #7 ships today; thanks Ana"
    with pytest.raises(KeyError) as missing:
        render_template(body, {"1": "Ana", "2": " "})
    assert missing.value.args[0] == "2"
