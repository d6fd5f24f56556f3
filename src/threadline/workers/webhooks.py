"""Outgoing webhooks at work: the dispatcher turns outbox events into deliveries, the sender posts them.

**Dispatcher** (one process at a time, ``LeaderLock("webhooks")``). It follows the outbox table, the
same durable log the live stream resumes from, by ``seq``: in one transaction it reads the events after
its stored cursor, inserts one ``webhook_deliveries`` row per subscribed endpoint and moves the cursor, so
no event is lost or handed over twice whatever crashes. The bus only wakes it (when a published event is
one an endpoint wants); a poll every ``poll_seconds`` is the backstop. Events nobody subscribed to move
the cursor in memory and are stored every few seconds, so a busy contact centre with few webhooks costs
almost nothing. It also forgets finished deliveries after the retention period.

**Sender** (every process that runs workers). It claims due deliveries (``actions.webhooks.claim_due``:
the claim counts the attempt and leases the row, so two processes never post the same row at once, and
a crash mid-flight only means the row is due again when the lease ends), posts them concurrently (at most
``concurrency`` at a time and ``per_endpoint`` per endpoint, so one slow receiver cannot hold every
slot) and records the results of finished attempts together in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from threadline.actions import webhooks as actions
from threadline.bus.base import Bus, Envelope
from threadline.config import Settings
from threadline.db.leader import LeaderLock
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.repos import webhooks as repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.errors import ValidationFailed
from threadline.domain.webhooks import (
    PING,
    USER_AGENT,
    AttemptResult,
    RetryPolicy,
    delivery_body,
    matches,
    signature_header,
    wanted_names,
)
from threadline.loop import BackgroundLoop
from threadline.metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS_DISABLED
from threadline.security import SecretBox
from threadline.workers.webhook_http import Answer, DestinationRefused, check_destination, make_client, post

log = structlog.get_logger(__name__)
BATCH = 500
STORE_CURSOR_EVERY = 5.0  # seconds: how often a cursor moved past unsubscribed events is stored
PRUNE_EVERY = 3600.0
LEASE_MARGIN = 60.0  # seconds a claimed delivery stays leased beyond the request timeout
SHUTDOWN_WAIT = 5.0  # seconds a stopping sender lets attempts in flight finish (the rest: after their lease)

Clock = Callable[[], datetime]


class WebhookDispatcher(BackgroundLoop):
    name = "webhook-dispatcher"

    def __init__(self, db: Database, *, poll_seconds: float = 2.0, retention_days: int = 30,
                 clock: Clock = utcnow) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.leader = LeaderLock(db, "webhooks")
        self.retention = timedelta(days=retention_days)
        self.clock = clock
        self.names: set[str] | None = None  # events some active endpoint wants (None: not read yet)
        self._seen: int | None = None  # last seq looked at; ahead of the stored cursor when nothing matched
        self._stored: int | None = None
        self._stored_at = 0.0
        self._pruned_at = 0.0

    def on_event(self, env: Envelope) -> None:
        """A bus subscriber: wake when a published event is one an endpoint wants."""
        if self.names is None or env.name in self.names:
            self.wake()

    async def on_stop(self) -> None:
        with contextlib.suppress(Exception):
            if self._seen is not None and self._stored is not None and self._seen > self._stored:
                await self._store_cursor()
        await self.leader.release()

    async def tick(self) -> float | None:
        if not await self.leader.try_acquire():
            self._seen = self._stored = None  # another process leads: re-read the cursor when we do
            return None
        while not self._stopping.is_set() and await self.dispatch_once():
            pass
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            await self.prune()
        return None

    async def dispatch_once(self) -> int:
        """One step; how many events were looked at (0: caught up)."""
        async with self.db.transaction(write=False) as session:
            if self._seen is None:
                self._seen = self._stored = await repo.get_cursor(session)
            last = await plumbing_repo.max_seq(session)  # read before the endpoints: see dispatch()
            endpoints = await repo.active_endpoints(session)
            self.names = wanted_names(e.events for e in endpoints)
            heads = await repo.event_heads_after(session, self._seen, BATCH) \
                if self._seen is not None and endpoints and last > self._seen else []
        if self._seen is None:  # no cursor yet: the first endpoint creates it (at the outbox's end)
            if not endpoints:
                return 0
            async with self.db.transaction(write=True) as session:
                done = await actions.dispatch(session, limit=BATCH, now=self.clock())
            self._seen = self._stored = done.cursor
            return 0
        if not endpoints:  # nobody listens: skip to the end
            self._seen = max(self._seen, last)
            await self._maybe_store_cursor()
            return 0
        if not heads:
            await self._maybe_store_cursor()
            return 0
        wanted = any(h.created_at >= e.created_at and matches(e.events, h.name) for h in heads for e in endpoints)
        if not wanted:
            self._seen = heads[-1].seq
            await self._maybe_store_cursor()
            return len(heads)
        async with self.db.transaction(write=True) as session:
            done = await actions.dispatch(session, limit=BATCH, now=self.clock())
        self._seen = self._stored = done.cursor
        self._stored_at = time.monotonic()
        return done.events

    async def _maybe_store_cursor(self) -> None:
        if self._seen is not None and self._seen != self._stored \
                and time.monotonic() - self._stored_at >= STORE_CURSOR_EVERY:
            await self._store_cursor()

    async def _store_cursor(self) -> None:
        assert self._seen is not None
        async with self.db.transaction(write=True) as session:
            await actions.advance_cursor(session, self._seen, self.clock())
        self._stored, self._stored_at = self._seen, time.monotonic()

    async def prune(self) -> int:
        """Forget finished deliveries older than the retention period, a chunk per transaction."""
        total = 0
        before = self.clock() - self.retention
        while not self._stopping.is_set():
            async with self.db.transaction(write=True) as session:
                gone = await actions.prune(session, before)
            total += gone
            if gone < 5000:
                break
        if total:
            log.info("webhook_deliveries_pruned", count=total)
        return total


@dataclass
class _Job:
    delivery_id: int
    endpoint_id: int
    attempts: int
    event: str
    url: str
    body: bytes
    secrets: list[str]


class WebhookSender(BackgroundLoop):
    name = "webhook-sender"

    def __init__(self, db: Database, box: SecretBox, client: httpx.AsyncClient, policy: RetryPolicy, *,
                 timeout: float = 10.0, concurrency: int = 16, per_endpoint: int = 4, poll_seconds: float = 5.0,
                 clock: Clock = utcnow, rng: random.Random | None = None) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.box = box
        self.client = client
        self.policy = policy
        self.timeout = timeout
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint
        self.clock = clock
        self.rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: dict[int, int] = {}  # endpoint id → attempts in flight in this process
        self._results: list[AttemptResult] = []
        self.listeners: list[Callable[[actions.Recorded], None]] = []  # told after results are recorded (tests)

    @property
    def lease_seconds(self) -> float:
        return self.timeout + LEASE_MARGIN

    async def tick(self) -> float | None:
        await self.flush()
        if self._stopping.is_set():
            return None
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return self.interval  # every slot is busy: a finished attempt wakes us
        now = self.clock()
        async with self.db.transaction(write=False) as session:
            nxt = await repo.next_due(session)
        if nxt is None:
            return None
        if nxt > now:
            return min(self.interval, (nxt - now).total_seconds())
        async with self.db.transaction(write=True) as session:
            claimed = await actions.claim_due(session, now=now, lease_seconds=self.lease_seconds, limit=free,
                                              per_endpoint=self.per_endpoint, busy=self._busy)
            jobs = await self._prepare(session, claimed, now)
        for job in jobs:
            self._spawn(job)
        if claimed:
            return 0.0  # more may be due
        # Due, but not ours to take now: the endpoint's slots here are busy (a finished attempt wakes us),
        # or another process just claimed them.
        return self.interval if self._tasks else 1.0

    async def _prepare(self, session: Any, claimed: list[repo.Claimed], now: datetime) -> list[_Job]:
        endpoints = await repo.endpoints_by_ids(session, {c.endpoint_id for c in claimed})
        events = await repo.events_by_seqs(session, {c.event_seq for c in claimed if c.event_seq is not None})
        secrets: dict[int, list[str]] = {}
        jobs: list[_Job] = []
        for c in claimed:
            ep = endpoints.get(c.endpoint_id)
            event = events.get(c.event_seq) if c.event_seq is not None else None
            if ep is None or (c.event_seq is not None and event is None):
                self._results.append(AttemptResult(c.id, c.attempts, error="the event is no longer stored",
                                                   permanent=True))
                continue
            if ep.id not in secrets:
                try:
                    secrets[ep.id] = actions.endpoint_secrets(self.box, ep, now)
                except ValueError as exc:  # the instance's secret key changed since the endpoint was saved
                    self._results.append(AttemptResult(c.id, c.attempts, error=str(exc)))
                    continue
            if event is not None:
                body = delivery_body(c.id, event.name, c.event_seq, event.created_at, event.payload)
            else:
                body = delivery_body(c.id, c.event_name, None, c.created_at, c.payload or {})
            jobs.append(_Job(c.id, ep.id, c.attempts, c.event_name, ep.url, body, secrets[ep.id]))
        return jobs

    def _spawn(self, job: _Job) -> None:
        self._busy[job.endpoint_id] = self._busy.get(job.endpoint_id, 0) + 1
        task = asyncio.create_task(self._attempt(job), name=f"webhook-{job.delivery_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, job: _Job) -> None:
        try:
            answer = await send(self.client, job, timeout=self.timeout, now=self.clock())
            result = AttemptResult(job.delivery_id, job.attempts, answer.status_code, answer.error, answer.response,
                                   answer.duration_ms, answer.retry_after)
        except Exception as exc:  # a bug here must not leave the row leased with no result
            log.exception("webhook_attempt_crashed", delivery_id=job.delivery_id)
            result = AttemptResult(job.delivery_id, job.attempts, error=f"{exc.__class__.__name__}: {exc}")
        finally:
            left = self._busy.get(job.endpoint_id, 1) - 1
            if left > 0:
                self._busy[job.endpoint_id] = left
            else:
                self._busy.pop(job.endpoint_id, None)
        self._results.append(result)
        self.wake()

    async def flush(self) -> None:
        """Record every finished attempt in one transaction."""
        if not self._results:
            return
        results, self._results = self._results, []
        try:
            async with self.db.transaction(write=True) as session:
                done = await actions.record_results(session, results, policy=self.policy, now=self.clock(),
                                                    rng=self.rng)
        except Exception:  # the rows stay leased and are tried again when the lease ends
            log.exception("webhook_results_not_recorded", count=len(results))
            return
        for outcome in done.outcomes.values():
            WEBHOOK_DELIVERIES.labels(outcome).inc()
        for r in results:
            if r.status_code is not None or r.error:
                WEBHOOK_ATTEMPT_SECONDS.observe(r.duration_ms / 1000)
        for endpoint_id in done.disabled:
            WEBHOOK_ENDPOINTS_DISABLED.inc()
            log.warning("webhook_endpoint_disabled", endpoint_id=endpoint_id)
        for listener in self.listeners:
            listener(done)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the attempts in flight and record them (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        await self.flush()

    async def on_stop(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=min(self.timeout + 1, SHUTDOWN_WAIT))
            for task in pending:  # their rows are leased: tried again when the lease ends
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.flush()


async def send(client: httpx.AsyncClient, job: _Job, *, timeout: float, now: datetime) -> Answer:
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "threadline-event": job.event,
               "threadline-delivery": str(job.delivery_id), "threadline-attempt": str(job.attempts),
               "threadline-signature": signature_header(job.secrets, job.body, int(time.time()))}
    return await post(client, job.url, job.body, headers, timeout=timeout, now=now)


@dataclass
class PingResult:
    delivery_id: int
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    response: str | None


class Webhooks:
    """The webhooks of one process: dispatcher, sender, their HTTP client, and what the API asks of them."""

    def __init__(self, settings: Settings, db: Database, bus: Bus, box: SecretBox,
                 client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.db = db
        self.box = box
        self.allow_private = settings.webhooks_allow_private
        self.timeout = settings.webhooks_timeout_seconds
        self.policy = RetryPolicy(max_attempts=settings.webhooks_max_attempts,
                                  base_seconds=settings.webhooks_backoff_base,
                                  max_seconds=settings.webhooks_backoff_max,
                                  disable_after_failures=settings.webhooks_disable_after_failures,
                                  disable_after_seconds=settings.webhooks_disable_after_hours * 3600)
        self.client = client or make_client(allow_private=self.allow_private, timeout=self.timeout)
        self.dispatcher = WebhookDispatcher(db, retention_days=settings.webhooks_retention_days)
        self.sender = WebhookSender(db, box, self.client, self.policy, timeout=self.timeout,
                                    concurrency=settings.webhooks_concurrency)
        bus.subscribe(self._on_event)

    def _on_event(self, env: Envelope) -> None:
        if self.dispatcher.leader.held:
            self.dispatcher.on_event(env)

    def wake(self) -> None:
        self.dispatcher.wake()
        self.sender.wake()

    async def start(self) -> None:
        await self.dispatcher.start()
        await self.sender.start()

    async def stop(self) -> None:
        await self.sender.stop(grace=SHUTDOWN_WAIT + 2)
        await self.dispatcher.stop()
        await self.client.aclose()

    async def check_destination(self, url: str) -> None:
        """Refuse (422 naming ``url``) a URL webhooks may not reach; run before saving one."""
        try:
            await check_destination(url.strip(), allow_private=self.allow_private)
        except DestinationRefused as exc:
            raise ValidationFailed(str(exc), field="url") from None

    async def ping(self, endpoint_id: int) -> PingResult:
        """Send a ``webhook.ping`` delivery now and say what the receiver answered (also logged as a delivery)."""
        now = utcnow()
        async with self.db.transaction(write=True) as session:
            endpoint, row = await actions.start_ping(session, endpoint_id, now=now,
                                                     lease_seconds=self.timeout + LEASE_MARGIN)
            try:
                secrets = actions.endpoint_secrets(self.box, endpoint, now)
            except ValueError:
                secrets = []
            job = _Job(row.id, endpoint.id, 1, PING, endpoint.url,
                       delivery_body(row.id, PING, None, now, row.payload or {}), secrets)
        if secrets:
            answer = await send(self.client, job, timeout=self.timeout, now=now)
        else:
            answer = Answer(None, "cannot decrypt the signing secret (THREADLINE_SECRET_KEY changed): roll it",
                            None, 0, None)
        async with self.db.transaction(write=True) as session:
            await actions.record_results(session, [AttemptResult(row.id, 1, answer.status_code, answer.error,
                                                                 answer.response, answer.duration_ms)],
                                         policy=self.policy, now=utcnow(), rng=self.sender.rng)
        ok = answer.status_code is not None and 200 <= answer.status_code < 300
        WEBHOOK_DELIVERIES.labels("ping_ok" if ok else "ping_failed").inc()
        return PingResult(row.id, ok, answer.status_code, answer.error, answer.duration_ms, answer.response)
