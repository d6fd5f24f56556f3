"""db/sqlite_inline.py: SQLite under the async engine with every DBAPI call made straight into sqlite3 on the
event loop's thread. It subclasses SQLAlchemy's aiosqlite adapter classes (pyproject pins SQLAlchemy below
the next minor release); these tests fail loudly if a release changes what the subclasses rely on."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from threadline.db.session import Database


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    async with database.write_engine.begin() as conn:
        await conn.run_sync(ITEMS.metadata.create_all)
    yield database
    await database.dispose()


ITEMS = Table("items", MetaData(), Column("id", Integer, primary_key=True), Column("name", String(20), unique=True))


async def test_the_writer_and_readers_use_the_inline_driver(db: Database) -> None:
    assert db.write_engine.dialect.driver == "threadline_inline"
    assert db.read_engine.dialect.driver == "threadline_inline"
    assert db.offload_engine.dialect.driver == "aiosqlite"  # long reads keep their worker thread
    assert db.dialect == "sqlite"


async def test_statements_run_on_the_loop_thread_straight_into_sqlite3(db: Database) -> None:
    calls: list[int] = []
    async with db.transaction() as session:
        conn = await session.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.set_trace_callback(lambda _sql: calls.append(threading.get_ident()))
        await conn.execute(insert(ITEMS), [{"name": "a"}, {"name": "b"}, {"name": "c"}])  # executemany
        rows = (await conn.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars().all()
        raw.set_trace_callback(None)
    assert rows == ["a", "b", "c"]
    assert calls and set(calls) == {threading.get_ident()}
    async with db.transaction(write=False) as session:
        assert (await session.execute(text("SELECT count(*) FROM items"))).scalar() == 3


async def test_errors_are_sqlalchemy_errors_and_roll_back(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await session.execute(insert(ITEMS).values(name="x"))
            await session.execute(insert(ITEMS).values(name="x"))
    with pytest.raises(OperationalError):
        async with db.transaction(write=False) as session:
            await session.execute(text("SELECT nope FROM items"))
    async with db.transaction(write=False) as session:
        assert (await session.execute(text("SELECT count(*) FROM items"))).scalar() == 0


async def test_streamed_results(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(insert(ITEMS), [{"name": f"n{i}"} for i in range(50)])
    async with db.read_engine.connect() as conn:
        result = await conn.stream(select(ITEMS.c.id).order_by(ITEMS.c.id))
        seen = [row.id async for row in result]
    assert seen == list(range(1, 51))
