"""Names people and providers type, made safe to show: no invisible or direction-changing characters.

A customer name such as ``"Ana\\u202eexe.doc"`` (a right-to-left override) or ``"ad\\u200bmin"`` (a zero-width
space) shows as something else than it is. Names are cleaned when they are stored (contacts from every
channel, users); pages also isolate them when shown (``<bdi>``), so a name can never reorder the text
around it.
"""

from __future__ import annotations

import unicodedata

# Joiners shape Persian/Indic words and emoji sequences: kept between two non-ASCII characters only.
JOINERS = frozenset("\u200c\u200d")


def clean_name(raw: object, max_len: int = 200) -> str:
    """``raw`` without format characters (bidi embeddings, overrides, isolates and marks, zero-width
    spaces, word joiners, byte-order marks, tag characters) or control characters, whitespace collapsed,
    NFC-normalised, at most ``max_len`` characters."""
    text = unicodedata.normalize("NFC", str(raw or ""))
    out: list[str] = []
    for i, ch in enumerate(text):
        cat = unicodedata.category(ch)
        if ch in JOINERS:
            before = text[i - 1] if i > 0 else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            if before and after and not before.isascii() and not after.isascii():
                out.append(ch)
            continue
        if cat == "Cf":
            continue
        if cat in ("Cc", "Zl", "Zp") or ch.isspace():
            out.append(" ")
            continue
        out.append(ch)
    return " ".join("".join(out).split())[:max_len]
