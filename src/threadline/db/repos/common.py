from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.domain.errors import ValidationFailed
from threadline.domain.ids import is_id


async def ping(session: AsyncSession) -> None:
    """One round trip to the database (readiness checks)."""
    await session.execute(text("SELECT 1"))


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


async def claim_rows(session: AsyncSession, table: Any, ids: Sequence[int], due: Sequence[Any],
                     values: dict[str, Any], returning: Sequence[Any]) -> list[Any]:
    """Take rows for work: one conditional ``UPDATE … SET values WHERE id IN ids AND due … RETURNING``.

    Only rows that still meet ``due`` are taken. On PostgreSQL the rows are first locked in id order,
    skipping rows another process is claiming (``FOR UPDATE SKIP LOCKED``): no waiting, no deadlock, and
    a row claimed meanwhile fails the re-checked condition, so no row is taken twice. SQLite has one
    writer at a time. The returned rows are in id order."""
    if not ids:
        return []
    targets: Any = list(ids)
    if session.get_bind().dialect.name == "postgresql":
        targets = (select(table.c.id).where(table.c.id.in_(list(ids)), *due).order_by(table.c.id)
                   .with_for_update(skip_locked=True).scalar_subquery())
    stmt = update(table).where(table.c.id.in_(targets), *due).values(**values).returning(table.c.id, *returning)
    conn = await session.connection()
    return sorted((await conn.execute(stmt)).all(), key=lambda r: r[0])
