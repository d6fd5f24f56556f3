from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.domain.errors import ValidationFailed
from threadline.domain.ids import is_id


def insert_ignore(session: AsyncSession, table: Any, values: dict[str, Any]) -> Any:
    """An INSERT that does nothing when a unique key already exists (provider retries)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return ins.values(**values).on_conflict_do_nothing()


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError
        if any(isinstance(v, int | float) and not isinstance(v, bool) and not is_id(v) for v in values):
            raise ValueError  # cursors carry ids (and timestamps as text): any other number is forged
        return values
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise ValidationFailed("cursor is not one this API gave out", field="cursor") from None
