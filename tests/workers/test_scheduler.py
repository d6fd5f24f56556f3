"""Durable timers: jobs scheduled in the caller's transaction, moved and cancelled by (kind, key), run by
the timer worker once (two processes on one database), retried with backoff, kept as failed and listed.
Storage tests run on SQLite and PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.cli.test_cli import EXE
from tests.conftest import make_settings
from tests.workers.webhook_receiver import FakeClock
from threadline.actions import scheduler as actions
from threadline.db.models import ScheduledJobRow
from threadline.db.repos import scheduler as repo
from threadline.db.types import utcnow
from threadline.domain.errors import ValidationFailed
from threadline.domain.scheduler import JobRetry, check_job
from threadline.services import Services
from threadline.workers.scheduler import Job, TimerWorker


async def jobs(svc: Services) -> list[ScheduledJobRow]:
    """The jobs these tests scheduled (not the periodic retention job every process starts)."""
    async with svc.db.transaction(write=False) as s:
        return list((await s.execute(select(ScheduledJobRow).where(ScheduledJobRow.kind.like("test.%"))
                                     .order_by(ScheduledJobRow.id))).scalars())


def test_job_names_and_backoff_rules() -> None:
    check_job("conversation.wake", "12")
    for kind, key in (("wake", "1"), ("Conversation.Wake", "1"), ("a.b", ""), ("a.b", "x" * 201)):
        with pytest.raises(ValidationFailed):
            check_job(kind, key)
    retry = JobRetry(max_attempts=4, base_seconds=5, factor=4, max_seconds=60)
    assert retry.schedule() == [5, 20, 60]
    now = utcnow()
    rng = random.Random(3)
    waits = [(retry.next_attempt(1, now, rng) - now).total_seconds() for _ in range(200)]
    assert 3.75 <= min(waits) < max(waits) <= 6.25  # jittered ±25 %
    assert retry.next_attempt(4, now, rng) is None  # the last attempt failed: kept as failed


async def test_jobs_commit_with_the_callers_transaction_and_move_or_cancel_by_kind_and_key(
        services: Services) -> None:
    now = utcnow()
    with pytest.raises(RuntimeError):
        async with services.db.transaction() as s:
            await actions.schedule_job(s, "test.ping", 1, now + timedelta(hours=1), {"n": 1})
            raise RuntimeError("the business change failed")
    assert await jobs(services) == []  # rolled back with it

    async with services.db.transaction() as s:
        await actions.schedule_job(s, "test.ping", 1, now + timedelta(hours=1), {"n": 1})
        await actions.schedule_job(s, "test.ping", 2, now + timedelta(hours=2))
        await actions.schedule_job(s, "test.other", 1, now + timedelta(hours=3))
    async with services.db.transaction() as s:  # the same (kind, key) again moves it
        await actions.schedule_job(s, "test.ping", 1, now + timedelta(minutes=5), {"n": 2})
    rows = await jobs(services)
    assert [(r.kind, r.key, r.payload) for r in rows] == [("test.ping", "1", {"n": 2}), ("test.ping", "2", {}),
                                                         ("test.other", "1", {})]
    assert abs((rows[0].due_at - (now + timedelta(minutes=5))).total_seconds()) < 0.001
    async with services.db.transaction() as s:
        assert await actions.cancel_job(s, "test.ping", 2)
        assert not await actions.cancel_job(s, "test.ping", 2)
        with pytest.raises(ValidationFailed, match="time zone"):
            await actions.schedule_job(s, "test.ping", 3, datetime(2030, 1, 1))
    assert [(r.kind, r.key) for r in await jobs(services)] == [("test.ping", "1"), ("test.other", "1")]


async def test_the_worker_runs_due_jobs_once_and_a_commit_wakes_it(services: Services) -> None:
    timers = services.timers
    assert timers is not None
    timers.interval = 60.0  # only a wake can make it run the job in time
    ran: list[tuple[str, dict, datetime]] = []
    done = asyncio.Event()

    async def ping(session, job: Job, now: datetime) -> None:  # type: ignore[no-untyped-def]
        ran.append((job.key, job.payload, now))
        done.set()

    timers.register("test.ping", ping)
    with pytest.raises(ValueError, match="registered already"):
        timers.register("test.ping", ping)
    async with services.db.transaction() as s:
        await actions.schedule_job(s, "test.ping", "later", utcnow() + timedelta(hours=1))
    timers.periodic.clear()
    first_round = asyncio.Event()
    tick = timers.tick

    async def observed() -> float | None:
        wait = await tick()
        first_round.set()
        return wait

    timers.tick = observed  # type: ignore[method-assign]
    await timers.start()
    try:
        await asyncio.wait_for(first_round.wait(), 5)  # nothing due: it sleeps for its whole poll interval
        due = utcnow() + timedelta(seconds=0.3)
        async with services.db.transaction() as s:
            await actions.schedule_job(s, "test.ping", "soon", due, {"hello": "world"})
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await timers.stop()
    [(key, payload, at)] = ran
    assert (key, payload) == ("soon", {"hello": "world"}) and at >= due
    assert [r.key for r in await jobs(services)] == ["later"]  # done: deleted; the later one waits


async def test_a_failing_job_is_retried_with_backoff_then_kept_failed_and_listed(db_url: str,
                                                                                 tmp_path: Path) -> None:
    svc = Services.build(make_settings(db_url, tmp_path, run_workers=False, scheduler_max_attempts=3))
    await svc.start()
    try:
        timers = svc.timers
        assert timers is not None
        clock = FakeClock()
        timers.clock = clock
        outcomes: list[tuple[str, str]] = []
        timers.listeners.append(lambda job, outcome: outcomes.append((job.kind, outcome)))
        calls = 0

        async def flaky(session, job: Job, now: datetime) -> None:  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            await actions.schedule_job(session, "test.side", job.key, now)  # a change that must roll back
            raise RuntimeError(f"the CRM is down (call {calls})")

        timers.register("test.flaky", flaky)
        async with svc.db.transaction() as s:
            await actions.schedule_job(s, "test.flaky", 7, clock(), {"conversation_id": 7})
            await actions.schedule_job(s, "test.unknown", "x", clock())
        assert await timers.run_due() == 2
        rows = {r.kind: r for r in await jobs(svc)}
        assert set(rows) == {"test.flaky", "test.unknown"}  # the handler's own change rolled back
        flaky_row = rows["test.flaky"]
        assert (flaky_row.attempts, flaky_row.failed_at, flaky_row.lease_until) == (1, None, None)
        assert flaky_row.last_error == "RuntimeError: the CRM is down (call 1)"
        assert 3.7 <= (flaky_row.due_at - clock()).total_seconds() <= 6.3  # 5 s ±25 %
        assert "no handler for scheduled jobs of kind 'test.unknown'" in (rows["test.unknown"].last_error or "")

        assert await timers.run_due() == 0  # not due yet
        for wait in (7, 26):
            clock.advance(wait)
            assert await timers.run_due() == 2
        rows = {r.kind: r for r in await jobs(svc)}
        assert rows["test.flaky"].failed_at is not None and rows["test.flaky"].attempts == 3
        assert rows["test.flaky"].last_error == "RuntimeError: the CRM is down (call 3)"
        assert rows["test.unknown"].failed_at is not None
        clock.advance(3600)
        assert await timers.run_due() == 0  # failed jobs never run by themselves
        assert Counter(outcomes) == {("test.flaky", "retry"): 2, ("test.flaky", "failed"): 1,
                                     ("test.unknown", "retry"): 2, ("test.unknown", "failed"): 1}
        async with svc.db.transaction() as s:
            await actions.schedule_job(s, "test.later", 1, clock() + timedelta(days=1))
    finally:
        await svc.stop()

    if db_url.startswith("sqlite"):  # the operator's view: `threadline jobs`, then `threadline jobs retry`
        env = {**os.environ, "THREADLINE_DATABASE_URL": db_url, "THREADLINE_DATA_DIR": str(tmp_path / "data"),
               "THREADLINE_SECRET_KEY": "test-secret-key-0123456789"}
        env.pop("THREADLINE_REDIS_URL", None)

        async def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
            proc = await asyncio.to_thread(subprocess.run, [EXE, "jobs", *args], env=env, capture_output=True,
                                           text=True, timeout=120)
            assert (proc.returncode == 0) is ok, proc.stderr
            return proc

        listing = (await cli("--failed")).stdout
        assert listing.splitlines()[0] == "1 pending, 2 failed"
        assert "test.flaky" in listing and "the CRM is down (call 3)" in listing and "test.later" not in listing
        data = json.loads((await cli("--json", "--kind", "test.flaky")).stdout)
        [job] = data["jobs"]
        assert (job["state"], job["attempts"], job["payload"]) == ("failed", 3, {"conversation_id": 7})
        assert f"job {job['id']} (test.flaky 7) runs again now" in (await cli("retry", str(job["id"]))).stdout
        again = json.loads((await cli("--json", "--kind", "test.flaky")).stdout)["jobs"][0]
        assert (again["state"], again["attempts"], again["last_error"]) == ("pending", 0, None)
        assert "scheduled job 999 does not exist" in (await cli("retry", "999", ok=False)).stderr


async def test_two_processes_never_run_one_job_twice(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, run_workers=False)
    a, b = Services.build(settings), Services.build(settings)
    await a.start()
    await b.start()
    try:
        ran: list[tuple[str, str]] = []

        def handler(who: str):  # type: ignore[no-untyped-def]
            async def run(session, job: Job, now: datetime) -> None:  # type: ignore[no-untyped-def]
                await asyncio.sleep(0)  # let the other process interleave
                ran.append((who, job.key))
            return run

        assert a.timers is not None and b.timers is not None
        for who, svc in (("a", a), ("b", b)):
            svc.timers.register("test.once", handler(who))
            svc.timers.batch = 3
        now = utcnow()
        async with a.db.transaction() as s:
            for i in range(40):
                await actions.schedule_job(s, "test.once", i, now)

        async def run_all(timers: TimerWorker) -> None:
            for _ in range(100):
                if not await timers.run_due():
                    return
                await asyncio.sleep(0)

        await asyncio.gather(run_all(a.timers), run_all(b.timers))
        assert sorted(int(k) for _, k in ran) == list(range(40))  # each once
        assert await jobs(a) == []

        # A process claims a job, then stalls beyond its lease: another one takes the job over; the
        # stalled one, when it goes on, finds the job is no longer its own and does not run it.
        clock_b = FakeClock()
        b.timers.clock = clock_b
        async with a.db.transaction() as s:
            await actions.schedule_job(s, "test.once", "stalled", utcnow())
            [claimed] = await actions.claim_due(s, now=utcnow(), lease_seconds=30, limit=5)
        assert await b.timers.run_due() == 0  # leased
        clock_b.advance(31)
        assert await b.timers.run_due() == 1
        await a.timers._run_job(claimed)
        assert [who for who, key in ran if key == "stalled"] == ["b"]
        assert await jobs(a) == []
    finally:
        await b.stop()
        await a.stop()


async def test_a_handler_may_schedule_its_own_job_again(services: Services) -> None:
    timers = services.timers
    assert timers is not None
    clock = FakeClock()
    timers.clock = clock

    async def periodic(session, job: Job, now: datetime) -> None:  # type: ignore[no-untyped-def]
        await actions.schedule_job(session, job.kind, job.key, now + timedelta(minutes=10),
                                   {"runs": job.payload["runs"] + 1})

    timers.register("test.periodic", periodic)
    async with services.db.transaction() as s:
        await actions.schedule_job(s, "test.periodic", "only", clock(), {"runs": 0})
    for _ in range(3):
        assert await timers.run_due() == 1
        clock.advance(600)
    [row] = await jobs(services)
    assert row.payload == {"runs": 3} and row.attempts == 0 and row.lease_until is None
    async with services.db.transaction(write=False) as s:
        assert (await s.execute(select(func.count()).select_from(ScheduledJobRow)
                                .where(ScheduledJobRow.kind == "test.periodic"))).scalar_one() == 1
        assert (await repo.counts(s))["failed"] == 0
