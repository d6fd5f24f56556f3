"""Outbox followers: a named follower starts at the log's end, handles the events it wants in batches,
each batch in one transaction with its side effects and the cursor move (a failure rolls back both and
the batch is handled again, once), skips the rest cheaply, and one process at a time follows a name (a
second one takes over where the first stopped). The webhook dispatcher's old cursor survives the
migration. SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import make_settings
from threadline.actions import contacts as contact_actions
from threadline.actions.scheduler import schedule_job
from threadline.db.migrate import alembic_config, upgrade
from threadline.db.models import ScheduledJobRow
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.session import Database
from threadline.services import Services
from threadline.workers.follower import EventHead, Followed, OutboxFollower


class Recorder(OutboxFollower):
    """Follows contact.created and writes one row per event (a side effect in the batch's transaction)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, "test-recorder", batch=3)
        self.fail_on: str | None = None
        self.batches: list[list[int]] = []

    def wants(self, head: EventHead) -> bool:
        return head.name == "contact.created"

    async def handle(self, session: AsyncSession, events: list[Followed]) -> None:
        self.batches.append([e.seq for e in events])
        for e in events:
            name = e.payload["contact"]["name"]
            await schedule_job(session, "test.seen", name, e.created_at, {"seq": e.seq})
            if name == self.fail_on:
                raise RuntimeError(f"cannot handle {name}")


async def contacts(svc: Services, *names: str) -> None:
    for name in names:
        async with svc.db.transaction() as s:
            await contact_actions.create_contact(s, name=name, identities=[])
    await svc.relay.relay_once()  # PostgreSQL: the relay gives the seqs


async def seen(svc: Services) -> list[str]:
    async with svc.db.transaction(write=False) as s:
        rows = (await s.execute(select(ScheduledJobRow.key).where(ScheduledJobRow.kind == "test.seen")
                                .order_by(ScheduledJobRow.id))).scalars()
        return list(rows)


async def follow_all(f: OutboxFollower) -> None:
    for _ in range(50):
        if not await f.follow_once():
            return


async def test_a_follower_handles_each_event_once_with_its_side_effects(db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        await contacts(svc, "history")
        rec = Recorder(svc.db)
        assert await rec.follow_once() == 0  # the first step places its cursor at the log's end
        async with svc.db.transaction(write=False) as s:
            start = await plumbing_repo.get_cursor(s, "test-recorder")
            assert start == await plumbing_repo.max_seq(s)
        await contacts(svc, "A", "B", "C", "D")
        await follow_all(rec)
        assert await seen(svc) == ["A", "B", "C", "D"]  # not the history
        assert [len(b) for b in rec.batches] == [3, 1]

        rec.fail_on = "F"
        await contacts(svc, "E", "F", "G")
        with pytest.raises(RuntimeError, match="cannot handle F"):
            await rec.follow_once()
        assert await seen(svc) == ["A", "B", "C", "D"]  # E rolled back with F, the cursor did not move
        rec.fail_on = None
        await follow_all(rec)
        assert await seen(svc) == ["A", "B", "C", "D", "E", "F", "G"]
        async with svc.db.transaction(write=False) as s:
            assert await plumbing_repo.get_cursor(s, "test-recorder") == await plumbing_repo.max_seq(s)
    finally:
        await svc.stop()


class OnlyVips(Recorder):
    """Wants every contact.created, but only those named VIP* need handling."""

    def relevant(self, event: Followed) -> bool:
        return event.payload["contact"]["name"].startswith("VIP")


async def test_events_that_are_not_relevant_move_the_cursor_without_a_write(db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        rec = OnlyVips(svc.db)
        assert await rec.follow_once() == 0
        await contacts(svc, "a", "b", "c", "d")
        await follow_all(rec)
        assert rec.batches == [] and await seen(svc) == []  # handle() never ran: no write transaction
        await contacts(svc, "e", "VIP f", "g")
        await follow_all(rec)
        assert [len(b) for b in rec.batches] == [1] and await seen(svc) == ["VIP f"]
        async with svc.db.transaction(write=False) as s:  # the cursor stored with the batch, past it
            assert await plumbing_repo.get_cursor(s, "test-recorder") == await plumbing_repo.max_seq(s)
    finally:
        await svc.stop()


async def test_one_process_follows_a_name_and_another_takes_over_where_it_stopped(db_url: str,
                                                                                   tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, run_workers=False)
    a, b = Services.build(settings), Services.build(settings)
    await a.start()
    await b.start()
    try:
        first, second = Recorder(a.db), Recorder(b.db)
        await first.tick()  # leads; its cursor starts at the end
        await contacts(a, "A", "B")
        await first.tick()
        await second.tick()  # not the leader: does nothing
        assert second.batches == [] and await seen(a) == ["A", "B"]
        await contacts(a, "C")
        await first.on_stop()  # releases the lead
        await second.tick()
        assert await seen(a) == ["A", "B", "C"] and len(second.batches) == 1  # C only: no repeats
        await second.on_stop()
    finally:
        await b.stop()
        await a.stop()


def test_the_webhook_dispatchers_cursor_becomes_a_follower_cursor() -> None:
    folder = Path(tempfile.mkdtemp(prefix="tl-migrate-"))
    url = f"sqlite+aiosqlite:///{folder / 'old.db'}"
    command.upgrade(alembic_config(url), "0010_one_head")
    with sqlite3.connect(folder / "old.db") as conn:
        conn.execute("INSERT INTO webhook_cursor (name, seq, updated_at) VALUES ('dispatcher', 4711, '2026-01-01')")
        conn.execute("INSERT INTO outbox_events (seq, name, payload, audience, created_at) "
                     "VALUES (1, 'conversation.typing', '{}', '{}', '2026-01-01'), "
                     "(2, 'contact.created', '{}', '{}', '2026-01-01')")
    upgrade(url)
    with sqlite3.connect(folder / "old.db") as conn:
        assert conn.execute("SELECT name, seq FROM outbox_cursors").fetchall() == [("webhooks", 4711)]
        assert conn.execute("SELECT seq, ephemeral FROM outbox_events ORDER BY seq").fetchall() == [(1, 1), (2, 0)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "webhook_cursor" not in tables and "scheduled_jobs" in tables
    command.downgrade(alembic_config(url), "0010_one_head")
    with sqlite3.connect(folder / "old.db") as conn:
        assert conn.execute("SELECT name, seq FROM webhook_cursor").fetchall() == [("dispatcher", 4711)]
