"""Retention of the logs: old published events go (ephemeral ones after minutes), never past a follower's
cursor, an unpublished event, a waiting webhook delivery or the newest event; processed inbox items go
after days and failed ones after longer; pruning is a periodic scheduled job working a chunk at a time.
SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select, update

from tests.conftest import make_settings, seed_basics
from tests.workers.webhook_receiver import FakeClock
from threadline.actions import retention as actions
from threadline.actions.events import emit
from threadline.db.models import (
    InboxItemRow,
    OutboxCursorRow,
    OutboxEventRow,
    ScheduledJobRow,
)
from threadline.db.types import utcnow
from threadline.domain.events import Audience, ConversationTyping, PresenceChanged
from threadline.domain.retention import Retention
from threadline.services import Services
from threadline.webhooks import actions as webhook_actions
from threadline.webhooks import repo as webhooks_repo
from threadline.webhooks.models import WebhookEndpointRow
from threadline.workers.jobs import RETENTION

LOGS = [webhook_actions.RETAINED]  # the feature packages' logs (services.py passes them the same way)
POLICY = Retention(outbox_days=30, ephemeral_minutes=10, inbox_days=7, inbox_failed_days=90, chunk=1000)


async def event_seqs(svc: Services) -> list[int]:
    async with svc.db.transaction(write=False) as s:
        return list((await s.execute(select(OutboxEventRow.seq).order_by(OutboxEventRow.seq))).scalars())


async def test_events_go_after_their_retention_but_never_before_everyone_has_passed_them(db_url: str,
                                                                                         tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        now = utcnow()
        old, minutes_ago = now - timedelta(days=31), now - timedelta(minutes=11)

        def row(seq: int, at, *, ephemeral: bool = False, published: bool = True):  # type: ignore[no-untyped-def]
            return {"seq": seq, "name": "routing.state" if ephemeral else "contact.created", "payload": {},
                    "audience": {}, "created_at": at, "published_at": at if published else None,
                    "ephemeral": ephemeral}

        async with svc.db.transaction() as s:
            await s.execute(insert(OutboxEventRow), [
                row(1, old), row(2, old), row(3, old), row(4, old), row(5, old, published=False),
                row(6, minutes_ago, ephemeral=True), row(7, minutes_ago, ephemeral=True), row(8, now),
                row(9, now, ephemeral=True), row(10, old)])
            await s.execute(insert(OutboxCursorRow), [
                {"name": "slow", "seq": 3, "updated_at": now},
                {"name": "gone", "seq": 0, "updated_at": now - timedelta(days=40)}])  # a follower that left
        async with svc.db.transaction() as s:
            done = await actions.prune_once(s, POLICY, now, LOGS)
        assert (done.events, done.ephemeral) == (3, 0)
        assert await event_seqs(svc) == [4, 5, 6, 7, 8, 9, 10]  # the slow follower is at 3

        async with svc.db.transaction() as s:
            await s.execute(update(OutboxCursorRow).where(OutboxCursorRow.name == "slow").values(seq=10))
            endpoint, _ = await webhook_actions.create_endpoint(s, svc.box, url="https://crm.example/in",
                                                                events=["*"], now=now)
            await webhooks_repo.insert_deliveries(s, [
                {"endpoint_id": endpoint.id, "event_seq": 7, "event_name": "routing.state", "status": "pending",
                 "attempts": 0, "next_attempt_at": now, "created_at": now}])
        async with svc.db.transaction() as s:
            done = await actions.prune_once(s, POLICY, now, LOGS)
        assert (done.events, done.ephemeral) == (1, 1)
        assert await event_seqs(svc) == [5, 7, 8, 9, 10]  # 7: a delivery waits for it; 5: not published

        async with svc.db.transaction() as s:  # the endpoint is switched off: its deliveries hold nothing
            await s.execute(update(WebhookEndpointRow).values(active=False))
        async with svc.db.transaction() as s:
            done = await actions.prune_once(s, POLICY, now + timedelta(days=31), LOGS)
        # 10 is old but the newest: it stays (the next seq is counted from it); so does the unpublished 5
        assert await event_seqs(svc) == [5, 10]
    finally:
        await svc.stop()


async def test_inbox_items_and_the_ephemeral_mark(db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        ids = await seed_basics(svc)
        now = utcnow()

        def item(key: str, received_days: float, processed_days: float | None, error: str | None = None):  # type: ignore[no-untyped-def]
            return {"channel_instance_id": ids["channel"], "dedupe_key": key, "method": "POST", "url": "/hooks/x",
                    "headers": {}, "body": b"{}", "received_at": now - timedelta(days=received_days),
                    "processed_at": None if processed_days is None else now - timedelta(days=processed_days),
                    "attempts": 1, "error": error}

        async with svc.db.transaction() as s:
            await s.execute(insert(InboxItemRow), [
                item("processed-old", 9, 8), item("processed-recent", 2, 2), item("failed", 30, None, "bad"),
                item("failed-long-ago", 100, None, "bad"), item("processed-late", 10, 1)])
            emit(s, ConversationTyping(conversation_id=1, who="visitor", typing=True), Audience())
            emit(s, PresenceChanged(user_id=ids["alice"], status="away"), Audience())
        async with svc.db.transaction() as s:
            done = await actions.prune_once(s, POLICY, now, LOGS)
        assert done.inbox == 2
        async with svc.db.transaction(write=False) as s:
            keys = (await s.execute(select(InboxItemRow.dedupe_key).order_by(InboxItemRow.id))).scalars()
            assert list(keys) == ["processed-recent", "failed", "processed-late"]
            marks = dict((await s.execute(select(OutboxEventRow.name, OutboxEventRow.ephemeral))).all())
        assert marks["conversation.typing"] is True and marks["user.presence_changed"] is False
    finally:
        await svc.stop()


async def test_pruning_is_a_periodic_job_that_works_a_chunk_at_a_time(db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False, retention_outbox_days=1))
    await svc.start()
    try:
        timers = svc.timers
        assert timers is not None
        old = utcnow() - timedelta(days=2)
        async with svc.db.transaction() as s:
            await s.execute(insert(OutboxEventRow), [
                {"seq": i, "name": "contact.created", "payload": {}, "audience": {}, "created_at": old,
                 "published_at": old, "ephemeral": False} for i in range(1, 2502)])
        clock = FakeClock()
        timers.clock = clock
        await timers._start_periodic()  # every process makes sure the job exists, due a minute after start
        assert await timers.run_due() == 0
        clock.advance(61)
        runs = 0
        while await timers.run_due():  # 1000 a run, each its own short transaction, until caught up
            runs += 1
            assert runs < 10
        assert runs == 3 and await event_seqs(svc) == [2501]
        async with svc.db.transaction(write=False) as s:
            [job] = (await s.execute(select(ScheduledJobRow).where(ScheduledJobRow.kind == RETENTION))).scalars()
        assert (job.due_at - clock()).total_seconds() == 3600 and job.failed_at is None
    finally:
        await svc.stop()
