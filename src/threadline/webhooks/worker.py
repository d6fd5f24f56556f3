"""Outgoing webhooks at work: the dispatcher turns outbox events into deliveries, the sender posts them.

**Dispatcher** (an outbox follower, ``workers/follower.py``: one process at a time, cursor ``webhooks``).
In one transaction it takes the events after its stored cursor, inserts one ``webhook_deliveries`` row
per subscribed endpoint and moves the cursor, so no event is lost or handed over twice whatever
crashes. The bus only wakes it (when a published event is one an endpoint wants); events nobody
subscribed to move the cursor in memory and are stored every few seconds, so a busy contact centre with
few webhooks costs almost nothing. Finished deliveries are forgotten by the retention job
(``workers/jobs.py``).

**Sender** (every process that runs workers, ``workers/leased.py``). It claims due deliveries
(``webhooks.actions.claim_due``: the claim counts the attempt and leases the row, so two processes never
post the same row at once, and a crash mid-flight only means the row is due again when the lease ends),
posts them concurrently (at most ``concurrency`` at a time and ``per_endpoint`` per endpoint, so one
slow receiver cannot hold every slot) and records the results of finished attempts together in one
transaction.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.bus.base import Bus, Envelope
from threadline.config import Settings
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.errors import ValidationFailed
from threadline.loop import BackgroundLoop
from threadline.metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS_DISABLED
from threadline.net import Answer, DestinationRefused, check_destination, make_client, post
from threadline.security import SecretBox
from threadline.webhooks import actions, repo
from threadline.webhooks.domain import (
    PING,
    USER_AGENT,
    AttemptResult,
    RetryPolicy,
    delivery_body,
    matches,
    signature_header,
    wanted_names,
)
from threadline.webhooks.models import WebhookEndpointRow
from threadline.workers.follower import EventHead, Followed, OutboxFollower
from threadline.workers.leased import LeasedWorker

log = structlog.get_logger(__name__)
LEASE_MARGIN = 60.0  # seconds a claimed delivery stays leased beyond the request timeout
SHUTDOWN_WAIT = 5.0  # seconds a stopping sender lets attempts in flight finish (the rest: after their lease)

Clock = Callable[[], datetime]


class WebhookDispatcher(OutboxFollower):
    name = "webhook-dispatcher"
    wakes_on = frozenset({"webhook_endpoints"})
    needs_payload = False  # deliveries point at their event; the sender reads its body

    def __init__(self, db: Database, *, poll_seconds: float = 2.0, clock: Clock = utcnow) -> None:
        super().__init__(db, actions.FOLLOWER, poll_seconds=poll_seconds, clock=clock)
        self.names: set[str] | None = None  # events some active endpoint wants (None: not read yet)
        self.endpoints: Sequence[WebhookEndpointRow] = ()

    def on_event(self, env: Envelope) -> None:
        """Wake when a published event is one an endpoint wants (cheap: by name)."""
        if self.leader.held and (self.names is None or env.name in self.names):
            self.wake()

    def wants(self, head: EventHead) -> bool:
        return any(head.created_at >= e.created_at and matches(e.events, head.name) for e in self.endpoints)

    async def prepare(self, session: AsyncSession) -> bool:
        self.endpoints = await repo.active_endpoints(session)
        self.names = wanted_names(e.events for e in self.endpoints)
        return bool(self.endpoints)

    async def handle(self, session: AsyncSession, events: list[Followed]) -> None:
        await actions.fan_out(session, [EventHead(e.seq, e.name, e.created_at) for e in events], now=self.clock())


@dataclass
class _Job:
    delivery_id: int
    endpoint_id: int
    attempts: int
    event: str
    url: str
    body: bytes
    secrets: list[str]


class WebhookSender(LeasedWorker[AttemptResult]):
    name = "webhook-sender"
    wakes_on = frozenset({"webhook_deliveries"})

    def __init__(self, db: Database, box: SecretBox, client: httpx.AsyncClient, policy: RetryPolicy, *,
                 timeout: float = 10.0, concurrency: int = 16, per_endpoint: int = 4, poll_seconds: float = 5.0,
                 clock: Clock = utcnow, rng: random.Random | None = None) -> None:
        super().__init__(concurrency=concurrency, per_key=per_endpoint, poll_seconds=poll_seconds,
                         shutdown_wait=min(timeout + 1, SHUTDOWN_WAIT))
        self.db = db
        self.box = box
        self.client = client
        self.policy = policy
        self.timeout = timeout
        self.clock = clock
        self.rng = rng or random.Random()
        self.listeners: list[Callable[[actions.Recorded], None]] = []  # told after results are recorded (tests)

    @property
    def lease_seconds(self) -> float:
        return self.timeout + LEASE_MARGIN

    async def tick(self) -> float | None:
        await self.flush()
        if self._stopping.is_set():
            return None
        free = self.free
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
                                              per_endpoint=self.per_key, busy=self._busy)
            jobs = await self._prepare(session, claimed, now)
        for job in jobs:
            self.spawn(job.endpoint_id, f"webhook-{job.delivery_id}", partial(self._attempt, job),
                       partial(_crashed, job))
        if claimed:
            return 0.0  # more may be due
        # Due, but not ours to take now: the endpoint's slots here are busy (a finished attempt wakes us),
        # or another process just claimed them.
        return self.interval if self._tasks else 1.0

    async def _prepare(self, session: Any, claimed: list[repo.Claimed], now: datetime) -> list[_Job]:
        endpoints = await repo.endpoints_by_ids(session, {c.endpoint_id for c in claimed})
        events = await plumbing_repo.events_by_seqs(session, {c.event_seq for c in claimed
                                                              if c.event_seq is not None})
        secrets: dict[int, list[str]] = {}
        jobs: list[_Job] = []
        for c in claimed:
            ep = endpoints.get(c.endpoint_id)
            event = events.get(c.event_seq) if c.event_seq is not None else None
            if ep is None or (c.event_seq is not None and event is None):
                self.add_result(AttemptResult(c.id, c.attempts, error="the event is no longer stored", permanent=True))
                continue
            if ep.id not in secrets:
                try:
                    secrets[ep.id] = actions.endpoint_secrets(self.box, ep, now)
                except ValueError as exc:  # the instance's secret key changed since the endpoint was saved
                    self.add_result(AttemptResult(c.id, c.attempts, error=str(exc)))
                    continue
            if event is not None:
                body = delivery_body(c.id, event.name, c.event_seq, event.created_at, event.payload)
            else:
                body = delivery_body(c.id, c.event_name, None, c.created_at, c.payload or {})
            jobs.append(_Job(c.id, ep.id, c.attempts, c.event_name, ep.url, body, secrets[ep.id]))
        return jobs

    async def _attempt(self, job: _Job) -> AttemptResult:
        answer = await send(self.client, job, timeout=self.timeout, now=self.clock())
        return AttemptResult(job.delivery_id, job.attempts, answer.status_code, answer.error, answer.response,
                             answer.duration_ms, answer.retry_after)

    async def record(self, results: list[AttemptResult]) -> None:
        async with self.db.transaction(write=True) as session:
            done = await actions.record_results(session, results, policy=self.policy, now=self.clock(),
                                                rng=self.rng)
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


def _crashed(job: _Job, exc: Exception) -> AttemptResult:
    return AttemptResult(job.delivery_id, job.attempts, error=f"{exc.__class__.__name__}: {exc}")


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

    name = "webhooks"
    retained = (actions.RETAINED,)  # its log, pruned by the core's retention job (services.py)

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
        self.dispatcher = WebhookDispatcher(db)
        self.sender = WebhookSender(db, box, self.client, self.policy, timeout=self.timeout,
                                    concurrency=settings.webhooks_concurrency)
        bus.subscribe(self.dispatcher.on_event)

    @property
    def parts(self) -> tuple[BackgroundLoop, ...]:
        """Its loops, each woken by its own write tags (Services)."""
        return (self.dispatcher, self.sender)

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
