"""SQLite under SQLAlchemy's async engine with every call made straight into ``sqlite3``, on the event loop's
thread.

The stock ``sqlite+aiosqlite`` driver hands each DBAPI call (execute, fetch, commit…) to a worker thread
and awaits it: a thread switch per call, then (after ``db/session.py`` ran aiosqlite's calls inline) still a
greenlet switch, a future and aiosqlite's wrappers per call, about 70 µs of a ~110 µs statement, while
SQLite itself answers a keyed read in 3 µs. This driver keeps SQLAlchemy's async API (the engine, the
sessions and the rest of the code do not change) and drops the awaiting: the adapted cursor calls the
``sqlite3`` cursor directly, and SQLAlchemy's ``greenlet_spawn`` runs the whole statement in one go.

It is right for SQLite because a statement on a local WAL database takes microseconds; the loop is not
held any longer than before, where the same call ran inline too. Long reads (reports) still go to a
worker-thread engine (``Database(offload=True)``, the stock driver). The URL's driver name is
``sqlite+threadline_inline``; ``Database`` picks it for its writer and reader engines.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util.concurrency import await_

DRIVER = "threadline_inline"


class _Ready:
    """An awaitable that is already done. SQLAlchemy's async engine refuses a statement during which the
    driver never awaited (``AwaitRequired``, its guard against sync drivers); one await of this per
    execute satisfies it for the price of a greenlet switch, instead of the several per statement before."""

    def __await__(self) -> Iterator[None]:
        return iter(())


_READY = _Ready()


class InlineCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor: results are fetched at execute time, as SQLAlchemy's async cursors do."""

    __slots__ = ()
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return connection.cursor()

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        await_(_READY)
        cursor = self._cursor
        try:
            if parameters is None:
                cursor.execute(operation)
            else:
                cursor.execute(operation, parameters)
            if cursor.description:
                self._rows = collections.deque(cursor.fetchall())
        except Exception as error:  # noqa: BLE001 - SQLAlchemy's adapter translates DBAPI errors
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        await_(_READY)
        try:
            self._cursor.executemany(operation, seq_of_parameters)
        except Exception as error:  # noqa: BLE001
            self._adapt_connection._handle_exception(error)

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()


class InlineStreamingCursor(InlineCursor):
    """A server-side (streaming) cursor: rows are read from SQLite as they are asked for."""

    __slots__ = ()
    server_side = True

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        await_(_READY)
        try:
            if parameters is None:
                self._cursor.execute(operation)
            else:
                self._cursor.execute(operation, parameters)
        except Exception as error:  # noqa: BLE001
            self._adapt_connection._handle_exception(error)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def close(self) -> None:
        self._cursor.close()


class InlineConnection(AsyncAdapt_aiosqlite_connection):
    """Wraps a ``sqlite3.Connection``: every method runs at once on the caller's thread."""

    __slots__ = ()
    _cursor_cls = InlineCursor
    _ss_cursor_cls = InlineStreamingCursor

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level  # type: ignore[attr-defined, no-any-return]

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection.isolation_level = value  # type: ignore[attr-defined]

    def create_function(self, *args: Any, **kw: Any) -> None:
        self._connection.create_function(*args, **kw)  # type: ignore[attr-defined]

    def rollback(self) -> None:
        try:
            self._connection.rollback()  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001
            self._handle_exception(error)

    def commit(self) -> None:
        try:
            self._connection.commit()  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001
            self._handle_exception(error)

    def close(self) -> None:
        self._connection.close()  # type: ignore[attr-defined]

    def terminate(self) -> None:
        self._connection.close()  # type: ignore[attr-defined]


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *args: Any, **kw: Any) -> InlineConnection:
        creator = kw.pop("async_creator_fn", None)
        if creator is not None:  # Database passes one: an ``async def`` returning a sqlite3 connection
            connection = await_(creator(*args, **kw))
        else:
            kw.pop("check_same_thread", None)
            connection = sqlite3.connect(*args, isolation_level=None, **kw)
        return InlineConnection(self, connection)


class InlineSQLiteDialect(SQLiteDialect_aiosqlite):
    driver = DRIVER
    supports_statement_cache = True
    has_terminate = True

    @classmethod
    def import_dbapi(cls) -> InlineDBAPI:  # type: ignore[override]
        return InlineDBAPI(__import__("aiosqlite"), sqlite3)

    def get_driver_connection(self, connection: Any) -> Any:
        return connection._connection


registry.register(f"sqlite.{DRIVER}", __name__, "InlineSQLiteDialect")
