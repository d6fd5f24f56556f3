"""The timer worker: runs due scheduled jobs (``scheduled_jobs``), in every process that runs workers.

Each round claims due jobs (``actions.scheduler.claim_due``: the claim counts the attempt and leases the
job, over rows locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two processes never take one job),
then runs each job's handler in a write transaction of its own that first checks the claim still owns
the job and deletes the job when the handler returns: the handler's changes, its events and the job's
end commit together, once. A handler that raises rolls its work back; the job runs again after a
backoff (``domain.scheduler.JobRetry``) and is kept with its error, as failed, after the last attempt.
A job of a kind nobody registered fails the same way (another process, newer, may know it).

The worker sleeps until the next due job (at most ``poll_seconds``); a commit that schedules a job wakes
it (``Services._committed``), and so does the bus's wake from another process.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import scheduler as actions
from threadline.db.repos import scheduler as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.scheduler import JobRetry, wait_seconds
from threadline.loop import BackgroundLoop
from threadline.metrics import SCHEDULED_JOBS

log = structlog.get_logger(__name__)

Job = actions.Claimed
Handler = Callable[[AsyncSession, Job, datetime], Awaitable[None]]
Clock = Callable[[], datetime]


class TimerWorker(BackgroundLoop):
    name = "timers"
    wakes_on = frozenset({"scheduled_jobs"})  # a job committed here may be due before the next wake

    def __init__(self, db: Database, *, retry: JobRetry | None = None, poll_seconds: float = 5.0,
                 lease_seconds: float = 120.0, batch: int = 20, clock: Clock = utcnow,
                 rng: random.Random | None = None) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.retry = retry or JobRetry()
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.clock = clock
        self.rng = rng or random.Random()
        self.handlers: dict[str, Handler] = {}
        self.periodic: list[tuple[str, str, float]] = []  # (kind, key, first run after seconds) to start
        self._started_periodic = False
        self.listeners: list[Callable[[Job, str], None]] = []  # told each attempt's outcome (tests)

    def register(self, kind: str, handler: Handler) -> None:
        """Run ``handler(session, job, now)`` for due jobs of ``kind`` (one handler per kind)."""
        if kind in self.handlers:
            raise ValueError(f"a handler for scheduled jobs of kind {kind!r} is registered already")
        self.handlers[kind] = handler

    def every(self, kind: str, key: str, *, first_after: float) -> None:
        """Make sure a periodic job (kind, key) exists: every process schedules it at start unless it is
        scheduled already; its handler schedules the next run (the job never ends)."""
        self.periodic.append((kind, key, first_after))

    async def _start_periodic(self) -> None:
        now = self.clock()
        async with self.db.transaction(write=True) as session:
            for kind, key, after in self.periodic:
                await actions.ensure_job(session, kind, key, now + timedelta(seconds=after))
        self._started_periodic = True

    async def tick(self) -> float | None:
        if not self._started_periodic:
            await self._start_periodic()
        async with self.db.transaction(write=False) as session:  # a read first: claiming takes the write lock
            nxt = await repo.next_due(session)
        wait = wait_seconds(nxt, self.clock(), self.interval)
        if wait is None or wait > 0:
            return wait
        if await self.run_due():
            return 0.0  # more may be due
        return min(1.0, self.interval)  # due, but another process took it meanwhile

    async def run_due(self) -> int:
        """Claim what is due now and run it; how many jobs were claimed."""
        async with self.db.transaction(write=True) as session:
            claimed = await actions.claim_due(session, now=self.clock(), lease_seconds=self.lease_seconds,
                                              limit=self.batch)
        for job in claimed:
            if self._stopping.is_set():
                break  # the rest are leased: they run when the lease ends, here or elsewhere
            await self._run_job(job)
        return len(claimed)

    async def _run_job(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        outcome = "done"
        try:
            if handler is None:
                raise LookupError(f"no handler for scheduled jobs of kind {job.kind!r} in this process")
            async with self.db.transaction(write=True) as session:
                if not await actions.take(session, job):
                    outcome = "stale"
                else:
                    await handler(session, job, self.clock())
                    await actions.finish(session, job)
        except Exception as exc:  # the handler's work rolled back; the job is kept with the error
            error = f"{exc.__class__.__name__}: {exc}"
            log.warning("scheduled_job_failed", kind=job.kind, key=job.key, attempt=job.attempts, error=error,
                        exc_info=handler is not None)
            try:
                async with self.db.transaction(write=True) as session:
                    outcome = await actions.record_failure(session, job, error, retry=self.retry, now=self.clock(),
                                                           rng=self.rng)
            except Exception:  # the lease ends and the job runs again: still never lost
                log.exception("scheduled_job_failure_not_recorded", kind=job.kind, key=job.key)
                outcome = "retry"
        SCHEDULED_JOBS.labels(job.kind, outcome).inc()
        for listener in self.listeners:
            listener(job, outcome)
