"""Engines and the unit of work: the one place where transactions begin and commit.

SQLite (the default) runs in WAL mode. Write transactions start with ``BEGIN IMMEDIATE`` and are
serialised in-process by an asyncio lock, so two writers never deadlock on a lock upgrade; readers
use plain deferred transactions and never block writers. PostgreSQL runs through asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool


def _sqlite_path(url: str) -> Path | None:
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    if not rest or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def _configure_sqlite(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(begin)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.after_commit: list[Callable[[], None]] = []
        if self.is_sqlite:
            path = _sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.sqlite_path = path
            self.write_engine = create_async_engine(url, echo=echo, pool_size=1, max_overflow=0)
            self.read_engine = create_async_engine(url, echo=echo, pool_size=8, max_overflow=8)
            _configure_sqlite(self.write_engine, "BEGIN IMMEDIATE")
            _configure_sqlite(self.read_engine, "BEGIN")
        else:
            self.sqlite_path = None
            self.write_engine = create_async_engine(
                url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
        self._write_maker = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_maker = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """Open a session in a transaction; commit when the block ends, roll back on an exception."""
        if not write:
            async with self._read_maker() as session, session.begin():
                yield session
            return
        if self._write_lock is not None:
            async with self._write_lock:
                async with self._write_maker() as session, session.begin():
                    yield session
        else:
            async with self._write_maker() as session, session.begin():
                yield session
        for hook in self.after_commit:
            hook()

    def null_pool_engine(self) -> AsyncEngine:
        """A separate engine for long-held connections (leader locks), outside the pools."""
        return create_async_engine(self.url, poolclass=NullPool)

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
