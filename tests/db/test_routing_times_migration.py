"""Migration 0014: the routing tables' times become UTC datetimes (one time type at the storage boundary),
converting stored Unix seconds to the microsecond, on SQLite and PostgreSQL, and back on downgrade."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from threadline.db.migrate import alembic_config, upgrade
from threadline.db.models import (
    ContactRow,
    ConversationRow,
    RoutingOfferRow,
    RoutingOutcomeRow,
    RoutingTaskRow,
)
from threadline.db.models.base import Base
from threadline.db.session import Database

BEFORE = "0013_security"
T = 1767225600.123456  # 2026-01-01 00:00:00.123456 UTC
ROUTING = {"routing_tasks", "routing_offers", "routing_outcomes"}


def _floats(name: str, *cols: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c, sa.Float()) for c in cols))


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def test_routing_times_are_converted_to_datetimes_and_back(db_url: str) -> None:
    cfg = alembic_config(db_url)
    await asyncio.to_thread(command.downgrade, cfg, BEFORE)
    db = Database(db_url)
    try:
        async with db.transaction(write=True) as s:
            s.add(ContactRow(id=3, name="Ana", attributes={}))
            await s.flush()
            s.add(ConversationRow(id=7, contact_id=3))
            await s.flush()
            await s.execute(sa.text(
                "INSERT INTO routing_tasks (conversation_id, queue_id, channel, status, agent_id, enqueued_at, task,"
                " note, updated_at, sla_state, wrap_ended_at) VALUES (7, 1, 'chat', 'wrapping', 2, :e, '{}', '', :u,"
                " '', :w)"), {"e": T, "u": T + 60.5, "w": T + 90.000001})
            await s.execute(sa.text(
                "INSERT INTO routing_offers (id, conversation_id, agent_id, queue_id, channel, offered_at, expires_at,"
                " status, ended_at) VALUES (1, 7, 2, 1, 'chat', :o, :x, 'accepted', :n),"
                " (2, 7, 2, 1, 'chat', :o, :x, 'open', NULL)"), {"o": T + 1, "x": T + 31, "n": T + 4.25})
            await s.execute(sa.text(
                "INSERT INTO routing_outcomes (conversation_id, queue_id, channel, agent_id, kind, enqueued_at, at,"
                " wait_seconds) VALUES (7, 1, 'chat', 2, 'answered', :e, :a, 4.25), (7, 1, 'chat', NULL, 'abandoned',"
                " NULL, :a, NULL)"), {"e": T, "a": T + 4.25})
        await asyncio.to_thread(upgrade, db_url)

        async with db.transaction(write=False) as s:
            task = (await s.execute(sa.select(RoutingTaskRow))).scalar_one()
            offers = list((await s.execute(sa.select(RoutingOfferRow).order_by(RoutingOfferRow.id))).scalars())
            facts = list((await s.execute(sa.select(RoutingOutcomeRow).order_by(RoutingOutcomeRow.id))).scalars())
            # the datetimes compare and sort in SQL as times
            late = (await s.execute(sa.select(RoutingOutcomeRow.id).where(RoutingOutcomeRow.at >= at(T + 4)))).all()
        assert (task.enqueued_at, task.updated_at, task.wrap_ended_at) == (at(T), at(T + 60.5), at(T + 90.000001))
        assert [(o.offered_at, o.expires_at, o.ended_at) for o in offers] == [
            (at(T + 1), at(T + 31), at(T + 4.25)), (at(T + 1), at(T + 31), None)]
        assert [(f.enqueued_at, f.at) for f in facts] == [(at(T), at(T + 4.25)), (None, at(T + 4.25))]
        assert len(late) == 2

        # the schema is the models' (types and indexes), and the one-open-offer-per-task index still holds
        async with db.write_engine.connect() as conn:
            diffs = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        assert [d for d in diffs if ROUTING & set(map(str, _tables(d)))] == []
        with pytest.raises(IntegrityError):
            async with db.transaction(write=True) as s:
                s.add(RoutingOfferRow(id=3, conversation_id=7, agent_id=5, queue_id=1, channel="chat",
                                      offered_at=at(T), expires_at=at(T + 30), status="open"))

        await asyncio.to_thread(command.downgrade, cfg, BEFORE)
        async with db.transaction(write=False) as s:
            tasks = _floats("routing_tasks", "enqueued_at", "updated_at", "wrap_ended_at")
            offer_t = _floats("routing_offers", "id", "offered_at", "ended_at")
            back = (await s.execute(sa.select(tasks))).one()
            ended = (await s.execute(sa.select(offer_t.c.ended_at).where(offer_t.c.id == 1))).scalar_one()
        assert tuple(back) == pytest.approx((T, T + 60.5, T + 90.000001), abs=1e-6)
        assert ended == pytest.approx(T + 4.25, abs=1e-6)
    finally:
        await db.dispose()
        await asyncio.to_thread(upgrade, db_url)


def _tables(diff: object) -> set[str]:
    """The table names an autogenerate diff is about (nested tuples of ops, tables, columns, indexes)."""
    found: set[str] = set()
    for part in diff if isinstance(diff, tuple | list) else (diff,):
        if isinstance(part, str):
            found.add(part)
        elif isinstance(part, tuple | list):
            found |= _tables(part)
        elif isinstance(part, sa.Table | sa.Index | sa.Column):
            table = part if isinstance(part, sa.Table) else part.table
            if table is not None:
                found.add(table.name)
    return found
