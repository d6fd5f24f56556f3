"""File names in HTTP downloads (RFC 6266): an ASCII fallback every client reads, plus the real name."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote


def _ascii(c: str) -> str:
    if c.isascii():
        return c if c.isprintable() and c not in '"\\;' else "_"
    plain = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()  # è → e, Ñ → N
    return plain if plain.isprintable() and plain and not set(plain) & set('"\\;') else "_"


def content_disposition(disposition: str, filename: str) -> str:
    """``attachment; filename="Fattura_e_N___.pdf"; filename*=UTF-8''Fattura_%C3%A8_%C3%91_%E6%97%A5%E6%9C%AC.pdf``.

    ``filename*`` (RFC 8187) carries the name in UTF-8 for every current browser; ``filename`` is the ASCII
    fallback (accents dropped, anything else ``_``, quotes and backslashes never inside the quoted string)."""
    name = " ".join(filename.replace("\r", " ").replace("\n", " ").split()).strip() or "file"
    fallback = "".join(_ascii(c) for c in name)
    value = f'{disposition}; filename="{fallback or "file"}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value
