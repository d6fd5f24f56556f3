"""The conversation SLA clock step by step (the follower and the timers run by hand, on a fake clock):
deadlines from the queue's targets, a move to a stricter queue re-counts them (late at once), the breach
is recorded with an alert for the queue and supervisors, a conversation resolved before the follower
reads its creation gets no clock, a reopening starts a new cycle. SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from tests.conftest import make_settings, seed_basics
from tests.web.test_desk_pages import inbound
from tests.workers.test_follower import follow_all
from tests.workers.webhook_receiver import FakeClock
from threadline.actions import conversations as conv_actions
from threadline.actions import users as user_actions
from threadline.actions.events import capture_events
from threadline.db.models import ConversationRow, ScheduledJobRow
from threadline.services import Services


async def sla_jobs(svc: Services) -> dict[tuple[str, str], object]:
    async with svc.db.transaction(write=False) as s:
        rows = (await s.execute(select(ScheduledJobRow).where(ScheduledJobRow.kind.like("sla.%")))).scalars()
        return {(r.kind, r.key): r.due_at for r in rows}


async def conversation(svc: Services, conv_id: int) -> ConversationRow:
    async with svc.db.transaction(write=False) as s:
        row = await s.get(ConversationRow, conv_id)
        assert row is not None
        return row


async def test_deadlines_follow_queue_moves_resolution_and_reopening(db_url: str, tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        ids = await seed_basics(svc)
        async with svc.db.transaction() as s:
            await user_actions.update_queue(s, ids["general"], settings={"sla": {
                "first_response_seconds": 600, "resolution_seconds": 3600}})
            await user_actions.update_queue(s, ids["billing"], settings={"sla": {
                "first_response_seconds": 60, "resolution_seconds": 600, "near_breach_ratio": 0.5}})
        follower, timers = svc.sla, svc.timers
        assert follower is not None and timers is not None
        clock = FakeClock()
        follower.clock = timers.clock = clock
        await svc.relay.relay_once()
        await follow_all(follower)  # the follower starts at the log's end

        conv_id = await inbound(svc, ids["channel"], "my invoice is wrong")
        quick = await inbound(svc, ids["channel"], "never mind", email="quick@example.com")
        async with svc.db.transaction() as s:  # resolved before the follower reads that it was created
            await conv_actions.update_conversation(s, None, quick, status="resolved")
        await svc.relay.relay_once()
        await follow_all(follower)
        conv = await conversation(svc, conv_id)
        assert conv.sla_started_at == conv.created_at
        assert conv.first_response_due_at == conv.created_at + timedelta(seconds=600)
        assert conv.resolution_due_at == conv.created_at + timedelta(seconds=3600)
        jobs = await sla_jobs(svc)
        assert set(jobs) == {("sla.first_response", str(conv_id)), ("sla.resolution", str(conv_id))}
        assert jobs["sla.first_response", str(conv_id)] == conv.created_at + timedelta(seconds=480)  # the warning
        assert (await conversation(svc, quick)).sla_started_at is None  # no clock, no jobs

        async with svc.db.transaction() as s:  # to billing: 60 s from the start, long past
            await conv_actions.update_conversation(s, None, conv_id, queue_id=ids["billing"])
        await svc.relay.relay_once()
        await follow_all(follower)
        conv = await conversation(svc, conv_id)
        assert conv.first_response_due_at == conv.created_at + timedelta(seconds=60)
        clock.value = conv.created_at + timedelta(seconds=120)
        with capture_events() as events:
            while await timers.run_due():
                pass
        alerts = [(e.target, e.state, a.queues) for e, a in events if e.name == "conversation.sla_alert"]
        assert alerts == [("first_response", "breached", [ids["billing"]])]
        assert all(a.supervisors for e, a in events)
        conv = await conversation(svc, conv_id)
        assert conv.first_response_breached_at == clock() and conv.resolution_breached_at is None

        async with svc.db.transaction() as s:
            await conv_actions.update_conversation(s, None, conv_id, status="resolved")
        await svc.relay.relay_once()
        await follow_all(follower)
        assert await sla_jobs(svc) == {}  # resolved: nothing watched
        clock.advance(3600)
        async with svc.db.transaction() as s:
            await conv_actions.update_conversation(s, None, conv_id, status="open")
        await svc.relay.relay_once()
        await follow_all(follower)
        conv = await conversation(svc, conv_id)
        reopened_at = conv.sla_started_at
        assert reopened_at is not None and reopened_at > conv.created_at  # a new cycle from the reopening
        assert conv.resolution_due_at == reopened_at + timedelta(seconds=600)
        assert conv.first_response_breached_at is not None  # the late first reply stays on record
        assert set(await sla_jobs(svc)) == {("sla.resolution", str(conv_id))}
    finally:
        await svc.stop()
