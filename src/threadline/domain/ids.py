"""Row ids: positive integers that fit a 32-bit column (PostgreSQL ``integer``), everywhere the same.

An id from outside (a URL, a query, a body, a cursor) beyond this range names nothing that can exist:
the web layer refuses it as invalid input (422) before any query, instead of letting the database fail.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le

MAX_ID = 2**31 - 1
# Every id a client sends (path, query, body): 1..2^31-1, the range of the columns (PostgreSQL integer).
# Anything else is a 422 naming the field, never a database error.
Id = Annotated[int, Ge(1), Le(MAX_ID)]
IdOrZero = Annotated[int, Ge(0), Le(MAX_ID)]  # "after this id", 0 for the start


def is_id(value: object) -> bool:
    """``value`` is an int (not a bool) in 1..MAX_ID."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def parse_id(text: object) -> int | None:
    """The id written in ``text`` (ASCII digits within range), or None (forms and query strings)."""
    raw = str(text if text is not None else "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        return None
    value = int(raw)
    return value if is_id(value) else None
