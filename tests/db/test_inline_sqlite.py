"""db/session.py runs SQLite statements on the event loop's thread by replacing aiosqlite's private
queue to its worker thread (``Connection._tx``). pyproject pins aiosqlite below the next minor release;
these tests fail loudly if a release moves that internal, instead of silently falling back to threads."""

from __future__ import annotations

import sqlite3
import threading

import aiosqlite

from threadline.db.session import InlineConnection


def test_aiosqlite_still_queues_calls_through_tx() -> None:
    conn = aiosqlite.Connection(lambda: sqlite3.connect(":memory:"), 64)
    assert hasattr(conn, "_tx") and callable(getattr(conn._tx, "put_nowait", None))


async def test_inline_connection_runs_statements_on_the_calling_thread() -> None:
    seen: list[int] = []

    def connect() -> sqlite3.Connection:
        seen.append(threading.get_ident())
        return sqlite3.connect(":memory:")

    conn = await InlineConnection(connect)
    try:
        async with conn.execute("SELECT 1") as cursor:
            assert await cursor.fetchone() == (1,)
        assert seen == [threading.get_ident()]
    finally:
        await conn.close()
