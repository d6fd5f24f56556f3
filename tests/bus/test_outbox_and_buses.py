"""The outbox relay and the buses: events are published once committed, in order, after a crash too;
the Redis bus fans them out across processes; only one relay leads at a time."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from tests.conftest import REDIS_URL, make_settings, need, redis_available, seed_basics

from threadline.bus.base import Envelope
from threadline.bus.memory import MemoryBus
from threadline.db.leader import LeaderLock
from threadline.db.models import OutboxEventRow
from threadline.db.types import utcnow
from threadline.services import Services


async def test_events_committed_before_a_crash_are_published_after_restart(db_url, tmp_path) -> None:
    # A process commits changes (and their events) and dies before its relay publishes anything.
    first = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    await first.start()
    await seed_basics(first)
    async with first.db.transaction() as s:
        from threadline.actions import users as user_actions

        await user_actions.set_presence(s, 3, "available")
        await user_actions.set_presence(s, 3, "away")
    await first.stop()

    # A new process starts: its relay finds the unpublished events and publishes them, in order.
    second = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    got: list[Envelope] = []
    second.bus.subscribe(got.append)
    await second.start()
    try:
        published = await second.relay.relay_once()
        assert published >= 2
        assert [e.payload["status"] for e in got if e.name == "user.presence_changed"] == ["available", "away"]
        assert [e.seq for e in got] == list(range(1, len(got) + 1))
        assert await second.relay.relay_once() == 0  # nothing published twice
        async with second.db.transaction(write=False) as s:
            left = (await s.execute(select(func.count()).select_from(OutboxEventRow)
                                    .where(OutboxEventRow.published_at.is_(None)))).scalar_one()
        assert left == 0
    finally:
        await second.stop()


async def test_a_crash_between_sequencing_and_publishing_republishes_with_the_same_seq(sqlite_url, tmp_path) -> None:
    svc = Services.build(make_settings(sqlite_url, tmp_path, run_workers=False))
    await svc.start()
    try:
        async with svc.db.transaction() as s:
            s.add(OutboxEventRow(name="user.presence_changed", payload={"user_id": 1, "status": "away"},
                                 audience={"supervisors": True}, seq=1, published_at=None, created_at=utcnow()))
        got: list[Envelope] = []
        svc.bus.subscribe(got.append)
        assert await svc.relay.relay_once() == 1
        assert [e.seq for e in got] == [1]
    finally:
        await svc.stop()


async def test_relay_wakes_on_commit_and_publishes_without_polling(sqlite_url, tmp_path) -> None:
    svc = Services.build(make_settings(sqlite_url, tmp_path, run_workers=True, relay_poll_seconds=30))
    arrived = asyncio.Event()
    svc.bus.subscribe(lambda env: arrived.set() if env.name == "user.presence_changed" else None)
    await svc.start()
    try:
        await seed_basics(svc)
        async with svc.db.transaction() as s:
            from threadline.actions import users as user_actions

            await user_actions.set_presence(s, 3, "available")
        await asyncio.wait_for(arrived.wait(), 5)  # far sooner than the 30 s poll
    finally:
        await svc.stop()


async def test_only_one_relay_leads_and_another_takes_over(db_url, tmp_path) -> None:
    a = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    b = Services.build(make_settings(db_url, tmp_path, run_workers=False))
    lock_a, lock_b = LeaderLock(a.db, "relay"), LeaderLock(b.db, "relay")
    try:
        assert await lock_a.try_acquire() is True
        assert await lock_b.try_acquire() is False
        await lock_a.release()  # the leader stops (or dies: the server drops its lock the same way)
        assert await lock_b.try_acquire() is True
    finally:
        await lock_a.release()
        await lock_b.release()
        await a.stop()
        await b.stop()


async def test_memory_bus_delivers_to_every_subscriber_until_unsubscribed() -> None:
    bus = MemoryBus()
    seen: list[int] = []
    unsubscribe = bus.subscribe(lambda e: seen.append(e.seq))
    env = Envelope(1, "x", {}, {}, utcnow())
    await bus.publish([env])
    unsubscribe()
    await bus.publish([env])
    assert seen == [1]


async def test_redis_bus_fans_out_across_processes() -> None:
    need(redis_available(), "Redis")
    from threadline.bus.redis import RedisBus

    prefix = f"tl-test-{id(object())}"
    one, two = RedisBus(REDIS_URL, prefix), RedisBus(REDIS_URL, prefix)
    await one.start()
    await two.start()
    got: asyncio.Queue[Envelope] = asyncio.Queue()
    woke = asyncio.Event()
    two.subscribe(got.put_nowait)
    two.on_wake(woke.set)
    try:
        await one.publish([Envelope(7, "message.created", {"a": 1}, {"users": [3]}, utcnow())])
        env = await asyncio.wait_for(got.get(), 5)
        assert (env.seq, env.name, env.payload, env.audience) == (7, "message.created", {"a": 1}, {"users": [3]})
        await one.wake()
        await asyncio.wait_for(woke.wait(), 5)
    finally:
        await one.stop()
        await two.stop()


async def test_services_with_redis_deliver_events_through_redis(sqlite_url, tmp_path) -> None:
    need(redis_available(), "Redis")
    svc = Services.build(make_settings(sqlite_url, tmp_path, run_workers=True, redis_url=REDIS_URL))
    arrived: asyncio.Queue[Envelope] = asyncio.Queue()
    svc.bus.subscribe(arrived.put_nowait)
    await svc.start()
    try:
        await seed_basics(svc)
        async with svc.db.transaction() as s:
            from threadline.actions import users as user_actions

            await user_actions.set_presence(s, 4, "available")
        async with asyncio.timeout(5):
            while True:
                env = await arrived.get()
                if env.name == "user.presence_changed":
                    break
        assert env.payload["user_id"] == 4
    finally:
        await svc.stop()



async def test_installations_sharing_one_redis_never_see_each_other(tmp_path) -> None:
    """Two installations (each with its own secret key) on one Redis server: each process gets the events of
    its own installation only; two processes of one installation share them."""
    need(redis_available(), "Redis")
    from threadline.bus.redis import RedisBus
    from threadline.config import Settings

    def prefix(secret: str) -> str:
        return Settings(secret_key=secret, data_dir=tmp_path).resolved_redis_prefix

    assert prefix("installation-one-secret") == prefix("installation-one-secret")
    assert prefix("installation-one-secret") != prefix("installation-two-secret")
    assert "installation" not in prefix("installation-one-secret")  # the secret itself is not revealed
    one_a, one_b = (RedisBus(REDIS_URL, prefix("installation-one-secret")) for _ in range(2))
    two = RedisBus(REDIS_URL, prefix("installation-two-secret"))
    got: dict[str, asyncio.Queue[Envelope]] = {"one_b": asyncio.Queue(), "two": asyncio.Queue()}
    one_b.subscribe(got["one_b"].put_nowait)
    two.subscribe(got["two"].put_nowait)
    for bus in (one_a, one_b, two):
        await bus.start()
    try:
        await one_a.publish([Envelope(1, "message.created", {"n": 1}, {}, utcnow())])
        await two.publish([Envelope(1, "message.created", {"n": 2}, {}, utcnow())])
        assert (await asyncio.wait_for(got["one_b"].get(), 5)).payload == {"n": 1}
        assert (await asyncio.wait_for(got["two"].get(), 5)).payload == {"n": 2}
        await one_a.publish([Envelope(2, "message.created", {"n": 3}, {}, utcnow())])  # a marker: order is kept
        assert (await asyncio.wait_for(got["one_b"].get(), 5)).payload == {"n": 3}
        assert got["two"].empty() and got["one_b"].empty()
    finally:
        for bus in (one_a, one_b, two):
            await bus.stop()
