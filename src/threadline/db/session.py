"""Engines and the unit of work: the one place where transactions begin and commit.

SQLite (the default) runs in WAL mode. Its statements run **on the event loop's thread**, straight into
``sqlite3`` (``db/sqlite_inline.py``'s driver under the async engine): a statement on a local WAL database
takes microseconds, while handing each one to a worker thread (aiosqlite's design) costs a thread switch
per call, about ten per transaction, which made a one-row transaction take over a millisecond. Write transactions start with ``BEGIN IMMEDIATE`` and are serialised
in-process by an asyncio lock, so writers never deadlock and never wait inside SQLite; when another
process holds the write lock, ``BEGIN`` is retried asynchronously (the loop keeps serving) instead of
sleeping in SQLite's busy handler. Readers use deferred transactions and never block writers. A long
read (a report over months of data) asks for ``offload=True`` and runs on a worker-thread connection
so that it cannot stall the loop. PostgreSQL runs through asyncpg.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, insert, inspect, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.pool import NullPool

from threadline.db.cache import DataVersion, ReadCache
from threadline.db.sqlite_inline import DRIVER as INLINE_DRIVER

WRITE_LOCK_WAIT = 30.0  # seconds a writer waits for another process's write lock before failing


def _sqlite_path(url: str) -> Path | None:
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    if not rest or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def _inline_creator(path: str) -> Callable[[], Any]:
    async def create() -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None)
    return create


def _inline_url(url: str) -> str:
    """The writer's and readers' URL: the same database through ``db/sqlite_inline.py``'s driver."""
    return make_url(url).set(drivername=f"sqlite+{INLINE_DRIVER}").render_as_string(hide_password=False)


def _configure_sqlite(engine: AsyncEngine, begin: str, busy_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(begin)


def _is_locked(exc: OperationalError) -> bool:
    return "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower()


class _SqliteWriteSession(SyncSession):
    """The writer's session on SQLite: before a flush, new rows that will be inserted two or more to a table
    get their ids here (see ``_number_new_rows``), so the ORM inserts them with one ``executemany`` instead of
    one ``INSERT … RETURNING`` per row (SQLite's dialect cannot match the rows of a batched RETURNING to
    the objects)."""


_RESERVED = "threadline.reserved_ids"  # session.info: table name -> the last id this transaction handed out


def _reserve_sqlite(session: SyncSession, wanted: list[tuple[Table, int]]) -> list[int]:
    """SQLite: the first of ``n`` fresh ids per table, one statement for all the tables. The writer holds the
    database's write lock (``BEGIN IMMEDIATE``) for the whole transaction, so no other connection takes an
    id meanwhile; the ids are those SQLite would choose (one more than the largest; no table uses
    AUTOINCREMENT), past those this transaction handed out and has not inserted yet."""
    marks = session.info.setdefault(_RESERVED, {})
    sql = "SELECT " + ", ".join(f"(SELECT max({t.primary_key.columns[0].name}) FROM {t.name})" for t, _ in wanted)
    tops = session.connection().exec_driver_sql(sql).one()
    firsts = []
    for (table, n), top in zip(wanted, tops, strict=True):
        first = max(top or 0, marks.get(table.name, 0)) + 1
        marks[table.name] = first + n - 1
        firsts.append(first)
    return firsts


async def reserve_ids(session: AsyncSession, table: Table, n: int) -> list[int]:
    """``n`` fresh ids for rows of ``table`` (an integer primary key) this transaction is about to insert: with
    the ids known before the insert, rows that point at each other (a contact and its identity, a
    conversation and its message) are built in memory and written with one statement per table instead of
    a flush per step. SQLite: from the table's largest id (see ``_reserve_sqlite``); PostgreSQL: from the
    table's sequence."""
    if n <= 0:
        return []
    if session.bind.dialect.name == "sqlite":
        [first] = await session.run_sync(lambda s: _reserve_sqlite(s, [(table, n)]))
        return list(range(first, first + n))
    column = table.primary_key.columns[0].name
    result = await session.execute(text("SELECT nextval(pg_get_serial_sequence(:t, :c)) FROM generate_series(1, :n)"),
                                   {"t": table.name, "c": column, "n": n})
    return sorted(result.scalars())


async def insert_built(session: AsyncSession, objs: Sequence[Any]) -> None:
    """Insert new rows of one mapped class, built in memory with their ids (``reserve_ids``), with one
    ``executemany`` statement, and put them in the session as if just loaded: later changes to them are
    written as UPDATEs as usual. The unit of work costs tens of microseconds per object to insert; this
    a few. Columns left unset take their Python default (``default=``) or None."""
    if not objs:
        return
    mapper = objs[0].__mapper__
    columns = _INSERT_COLUMNS.get(mapper)
    if columns is None:
        columns = _INSERT_COLUMNS[mapper] = [
            (prop.key, prop.columns[0].key, prop.columns[0].default) for prop in mapper.column_attrs]
    params = []
    for obj in objs:
        state, row = obj.__dict__, {}
        for key, column, default in columns:
            if key in state:
                value = state[key]
            else:
                value = None if default is None else default.arg(None) if default.is_callable else default.arg
                setattr(obj, key, value)
            row[column] = value
        params.append(row)
    await (await session.connection()).execute(insert(mapper.local_table), params)
    for obj in objs:
        make_transient_to_detached(obj)
    session.add_all(objs)


_INSERT_COLUMNS: dict[Any, list[tuple[str, str, Any]]] = {}


@event.listens_for(_SqliteWriteSession, "before_flush")
def _number_new_rows(session: SyncSession, _context: Any, _instances: Any) -> None:
    """Give the new objects of this flush their integer ids, where two or more go to one table or the
    transaction reserved ids of the table before (``_reserve_sqlite``), in the order they were added."""
    pending: dict[Any, list[Any]] = {}
    for obj in session.new:
        mapper = obj.__mapper__
        key = _NUMBERED.get(mapper)
        if key is None:
            column = mapper.local_table._autoincrement_column
            key = _NUMBERED[mapper] = mapper.get_property_by_column(column).key if column is not None else ""
        if key and getattr(obj, key) is None:
            pending.setdefault(mapper, []).append(obj)
    marks = session.info.get(_RESERVED, {})  # a table with ids handed out: every new row takes the next ones
    batches = [(mapper, objs) for mapper, objs in pending.items() if len(objs) > 1 or mapper.local_table.name in marks]
    if not batches:
        return
    firsts = _reserve_sqlite(session, [(mapper.local_table, len(objs)) for mapper, objs in batches])
    for (mapper, objs), first in zip(batches, firsts, strict=True):
        key = _NUMBERED[mapper]
        objs.sort(key=lambda o: inspect(o).insert_order)
        for offset, obj in enumerate(objs):
            setattr(obj, key, first + offset)


_NUMBERED: dict[Any, str] = {}  # mapper -> its integer primary key attribute ("" when it has none)


WRITTEN = "threadline.written"
BEFORE_COMMIT = "threadline.before_commit"


# The session ``Database.transaction`` hands out, named for the layers above storage: the web layer
# passes it from a transaction to the reads and actions it calls and never imports SQLAlchemy itself.
Session = AsyncSession


def mark_written(session: AsyncSession, what: str) -> None:
    """Note that this transaction wrote something a worker waits for ("events", "jobs", "inbox")."""
    session.info.setdefault(WRITTEN, set()).add(what)


def before_commit(session: AsyncSession, step: Callable[[AsyncSession], Awaitable[None]]) -> None:
    """Run ``step`` once just before this session's transaction commits (e.g. write batched rows)."""
    steps = session.info.setdefault(BEFORE_COMMIT, [])
    if step not in steps:
        steps.append(step)


async def _run_before_commit(session: AsyncSession) -> None:
    for step in session.info.pop(BEFORE_COMMIT, []):
        await step(session)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Called after a write commits, with what it wrote (``mark_written``): e.g. {"events", "jobs"}.
        self.after_commit: list[Callable[[frozenset[str]], None]] = []
        if self.is_sqlite:
            path = _sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.sqlite_path = path
            file = str(path) if path is not None else ":memory:"
            self.write_engine = create_async_engine(_inline_url(url), echo=echo, pool_size=1, max_overflow=0,
                                                    async_creator=_inline_creator(file))
            self.read_engine = create_async_engine(_inline_url(url), echo=echo, pool_size=4, max_overflow=4,
                                                   async_creator=_inline_creator(file))
            self.offload_engine = create_async_engine(url, echo=echo, pool_size=2, max_overflow=2)
            # The writer fails fast when another process holds the lock and retries without blocking the
            # loop (see ``_begin_write``); inline readers rarely wait (WAL), and then only briefly.
            _configure_sqlite(self.write_engine, "BEGIN IMMEDIATE", busy_ms=0)
            _configure_sqlite(self.read_engine, "BEGIN", busy_ms=200)
            _configure_sqlite(self.offload_engine, "BEGIN", busy_ms=30000)
        else:
            self.sqlite_path = None
            self.write_engine = create_async_engine(
                url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
            self.offload_engine = self.write_engine
        self._write_maker = async_sessionmaker(self.write_engine, expire_on_commit=False,
                                               sync_session_class=_SqliteWriteSession if self.is_sqlite else SyncSession)
        self._read_maker = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._offload_maker = async_sessionmaker(self.offload_engine, expire_on_commit=False)
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        self._host_lock: int | None = None  # the writers' file lock of this host (``_host_turn``)
        if self.is_sqlite and self.sqlite_path is not None:
            self._host_lock = os.open(f"{self.sqlite_path}.writers", os.O_RDWR | os.O_CREAT, 0o600)
        # reads kept while nothing committed (db/cache.py): SQLite files only
        self._version = DataVersion(self.sqlite_path) if self.sqlite_path is not None else None
        self.cache = ReadCache()

    def version(self) -> int | None:
        """The database's data version (changes on every commit by anyone), or None where reads are not kept.
        Read it before the queries whose result you keep in ``cache``."""
        return self._version.read() if self._version is not None else None

    def auth_version(self) -> int | None:
        """The ``auth`` change counter: moves on every write to users, memberships, sessions or API tokens
        (triggers, migration 0018), or None where reads are not kept. Read it before the reads you keep."""
        return self._version.counter("auth") if self._version is not None else None

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @asynccontextmanager
    async def transaction(self, *, write: bool = True, offload: bool = False) -> AsyncIterator[AsyncSession]:
        """Open a session in a transaction; commit when the block ends, roll back on an exception.

        ``offload``: a read that may take long (reports); on SQLite it runs on a worker thread.
        """
        if not write:
            async with (self._offload_maker if offload else self._read_maker)() as session, session.begin():
                yield session
                if session.info.get(BEFORE_COMMIT):  # a write in a read transaction is a bug: say so
                    raise RuntimeError("events were emitted in a read-only transaction; use write=True")
            return
        if self._write_lock is not None:
            async with self._write_lock, self._host_turn(), self._write_maker() as session:
                await self._begin_write(session)  # the session's transaction has begun
                try:
                    yield session
                    await _run_before_commit(session)
                except BaseException:
                    await session.rollback()
                    raise
                await session.commit()
        else:
            async with self._write_maker() as session, session.begin():
                yield session
                await _run_before_commit(session)
        written = frozenset(session.info.get(WRITTEN, ()))
        if written:
            for hook in self.after_commit:
                hook(written)

    @asynccontextmanager
    async def _host_turn(self) -> AsyncIterator[None]:
        """SQLite file: the writers of every process on this host take turns on a file lock beside the
        database, queued by the kernel, before ``BEGIN IMMEDIATE``: a writer waiting for another process
        wakes as soon as that one commits (instead of retrying the database lock with a back-off, which made
        several processes' writes wait up to 50 ms each). Uncontended it costs one ``flock`` call; contended,
        the wait runs on a thread so the loop keeps serving."""
        if self._host_lock is None:
            yield
            return
        fd = self._host_lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:  # the lock is ours when the thread gets it: give it back then
                waiting.add_done_callback(lambda f: f.exception() is None and fcntl.flock(fd, fcntl.LOCK_UN))
                raise
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    async def _begin_write(self, session: AsyncSession) -> None:
        """SQLite: check out the writer connection and take the database write lock, waiting (without
        blocking the event loop) while another process holds it. ``session.begin()`` then joins it."""
        deadline = time.monotonic() + WRITE_LOCK_WAIT
        delay = 0.001
        while True:
            try:
                await session.connection()
                return
            except OperationalError as exc:
                await session.rollback()
                if not _is_locked(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def null_pool_engine(self) -> AsyncEngine:
        """A separate engine for long-held connections (leader locks), outside the pools."""
        return create_async_engine(self.url, poolclass=NullPool)

    async def dispose(self) -> None:
        if self._version is not None:
            self._version.close()
        if self._host_lock is not None:
            os.close(self._host_lock)
            self._host_lock = None
        self.cache.clear()
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
            await self.offload_engine.dispose()
