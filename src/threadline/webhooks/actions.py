"""Outgoing webhooks: endpoints (admins), turning outbox events into deliveries, and recording each
attempt (delivered, retried later, given up; an endpoint rested or disabled).

The signing secret is generated here, encrypted at rest with the instance's ``SecretBox`` (like channel
credentials) and returned only by ``create_endpoint`` and ``roll_secret``. Destinations are checked for
private addresses by the caller before it opens the transaction (it needs DNS): see
``webhooks/worker.py`` ``Webhooks.check_destination``.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.events import emit
from threadline.actions.retention import RetainedLog
from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.session import mark_written
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import Audience, WebhookDisabled
from threadline.domain.network import url_problem
from threadline.domain.retention import Retention
from threadline.domain.scheduler import pick_fairly
from threadline.security import SecretBox
from threadline.webhooks import repo
from threadline.webhooks.domain import (
    GONE,
    PING,
    AttemptResult,
    RetryPolicy,
    matches,
    normalise_events,
    succeeded,
)
from threadline.webhooks.models import WebhookDeliveryRow, WebhookEndpointRow

FOLLOWER = "webhooks"  # the dispatcher's name as an outbox follower (its cursor and leader lock)
SECRET_PREFIX = "whsec_"
MAX_KEEP_PREVIOUS = 24 * 3600  # a rolled secret's predecessor signs along for at most a day
MAX_DESCRIPTION = 500


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def endpoint_secrets(box: SecretBox, row: WebhookEndpointRow, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one until it expires."""
    out = [str(box.decrypt(row.secret_encrypted)["secret"])]
    if row.previous_secret_encrypted and row.previous_secret_expires_at and row.previous_secret_expires_at > now:
        out.append(str(box.decrypt(row.previous_secret_encrypted)["secret"]))
    return out


def _url(url: str) -> str:
    url = url.strip()
    problem = url_problem(url)
    if problem:
        raise ValidationFailed(problem, field="url")
    return url


def _description(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationFailed(f"a description is at most {MAX_DESCRIPTION} characters", field="description")
    return text


def _healthy(row: WebhookEndpointRow) -> None:
    row.consecutive_failures = 0
    row.failing_since = None
    row.paused_until = None
    row.disabled_reason = None


async def create_endpoint(session: AsyncSession, box: SecretBox, *, url: str, events: Sequence[str],
                          description: str = "", active: bool = True, created_by: int | None = None,
                          now: datetime) -> tuple[WebhookEndpointRow, str]:
    """A new endpoint and its signing secret (shown to the admin this once)."""
    secret = new_secret()
    row = WebhookEndpointRow(url=_url(url), events=normalise_events(events), description=_description(description),
                             active=active, secret_encrypted=box.encrypt({"secret": secret}), consecutive_failures=0,
                             created_by=created_by, created_at=now, updated_at=now)
    session.add(row)
    await session.flush()
    # The dispatcher starts from the outbox's end the first time: history is never sent.
    await plumbing_repo.ensure_cursor(session, FOLLOWER, await plumbing_repo.max_seq(session), now)
    mark_written(session, "webhook_endpoints")
    return row, secret


async def update_endpoint(session: AsyncSession, endpoint_id: int, *, url: str | None = None,
                          events: Sequence[str] | None = None, description: str | None = None,
                          active: bool | None = None) -> WebhookEndpointRow:
    row = await _endpoint(session, endpoint_id)
    if url is not None and _url(url) != row.url:
        row.url = _url(url)
        _healthy(row)  # a new receiver starts with a clean record
    if events is not None:
        row.events = normalise_events(events)
    if description is not None:
        row.description = _description(description)
    if active is not None and active != row.active:
        row.active = active
        if active:
            _healthy(row)  # re-enabled: its waiting deliveries go out again
        else:
            row.disabled_reason = "disabled by an admin"
    await session.flush()
    mark_written(session, "webhook_endpoints")
    return row


async def delete_endpoint(session: AsyncSession, endpoint_id: int) -> None:
    row = await _endpoint(session, endpoint_id)
    await repo.delete_endpoint(session, row)
    await session.flush()
    mark_written(session, "webhook_endpoints")


async def roll_secret(session: AsyncSession, box: SecretBox, endpoint_id: int, *, keep_previous_seconds: int = 0,
                      now: datetime) -> tuple[WebhookEndpointRow, str]:
    """A new signing secret. With ``keep_previous_seconds`` (at most a day) deliveries carry a second
    signature made with the old secret until then, so receivers can switch without losing any."""
    if not 0 <= keep_previous_seconds <= MAX_KEEP_PREVIOUS:
        raise ValidationFailed(f"keep the previous secret 0-{MAX_KEEP_PREVIOUS} seconds",
                               field="keep_previous_seconds")
    row = await _endpoint(session, endpoint_id)
    secret = new_secret()
    if keep_previous_seconds:
        row.previous_secret_encrypted = row.secret_encrypted
        row.previous_secret_expires_at = now + timedelta(seconds=keep_previous_seconds)
    else:
        row.previous_secret_encrypted = None
        row.previous_secret_expires_at = None
    row.secret_encrypted = box.encrypt({"secret": secret})
    await session.flush()
    return row, secret


async def _endpoint(session: AsyncSession, endpoint_id: int) -> WebhookEndpointRow:
    row = await repo.get_endpoint(session, endpoint_id)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} does not exist")
    return row


# --- fan-out: outbox events → deliveries ---------------------------------------------------------------

async def fan_out(session: AsyncSession, heads: Sequence[plumbing_repo.EventHead], *, now: datetime) -> int:
    """Turn outbox events into one delivery per active endpoint that subscribed to each (and existed
    when it happened); how many deliveries were created. The dispatcher (an outbox follower) runs this
    in the transaction that moves its cursor past them: an event is handed to the webhooks exactly once,
    whatever crashes."""
    endpoints = await repo.active_endpoints(session)
    rows = [{"endpoint_id": ep.id, "event_seq": h.seq, "event_name": h.name, "status": "pending", "attempts": 0,
             "next_attempt_at": now, "created_at": now}
            for h in heads for ep in endpoints if h.created_at >= ep.created_at and matches(ep.events, h.name)]
    await repo.insert_deliveries(session, rows)
    if rows:
        mark_written(session, "webhook_deliveries")
    return len(rows)


# --- attempts --------------------------------------------------------------------------------------------

async def claim_due(session: AsyncSession, *, now: datetime, lease_seconds: float, limit: int, per_endpoint: int,
                    busy: dict[int, int] | None = None) -> list[repo.Claimed]:
    """Claim up to ``limit`` due deliveries for an attempt, earliest first, at most ``per_endpoint`` per
    endpoint counting the ``busy`` ones already in flight here (one slow receiver must not hold every
    slot). Each claim counts an attempt and leases the row for ``lease_seconds``."""
    if limit <= 0:
        return []
    candidates = await repo.due_candidates(session, now, limit + sum((busy or {}).values()), per_endpoint)
    picked = pick_fairly(candidates, limit, per_endpoint, busy)
    return await repo.claim(session, picked, now, now + timedelta(seconds=lease_seconds))


async def start_ping(session: AsyncSession, endpoint_id: int, *, now: datetime, lease_seconds: float
                     ) -> tuple[WebhookEndpointRow, WebhookDeliveryRow]:
    """A ``webhook.ping`` delivery, claimed at once for the caller's attempt (it is never retried)."""
    endpoint = await _endpoint(session, endpoint_id)
    row = WebhookDeliveryRow(endpoint_id=endpoint.id, event_seq=None, event_name=PING,
                             payload={"endpoint_id": endpoint.id, "message": "Threadline webhook test"},
                             status="pending", attempts=1, created_at=now, last_attempt_at=now,
                             next_attempt_at=now + timedelta(seconds=lease_seconds))
    session.add(row)
    await session.flush()
    return endpoint, row


@dataclass
class Recorded:
    outcomes: dict[int, str] = field(default_factory=dict)  # delivery id → delivered | retry | failed | stale
    disabled: list[int] = field(default_factory=list)  # endpoints disabled by these results


async def record_results(session: AsyncSession, results: Sequence[AttemptResult], *, policy: RetryPolicy,
                         now: datetime, rng: random.Random) -> Recorded:
    """Record finished attempts: delivered; or tried again later (backoff, Retry-After); or given up.
    Failures also rest the endpoint, and disable it when it has failed too long (or answered 410 Gone),
    with a ``webhook.disabled`` event. A result whose delivery was claimed again meanwhile (its lease ran
    out) or redelivered is dropped: the newer attempt decides."""
    done = Recorded()
    deliveries = await repo.deliveries_by_ids(session, {r.delivery_id for r in results}, lock=True)
    endpoints = await repo.endpoints_by_ids(session, {d.endpoint_id for d in deliveries.values()}, lock=True)
    for r in results:
        d = deliveries.get(r.delivery_id)
        if d is None or d.status != "pending" or d.attempts != r.attempts:
            done.outcomes[r.delivery_id] = "stale"
            continue
        d.last_attempt_at = now
        d.last_status_code = r.status_code
        d.last_response = r.response
        d.last_duration_ms = r.duration_ms
        ep = endpoints.get(d.endpoint_id)
        ping = d.event_name == PING
        if succeeded(r.status_code):
            d.status, d.delivered_at, d.last_error = "delivered", now, None
            if ep is not None and not ping:
                ep.consecutive_failures, ep.failing_since, ep.paused_until = 0, None, None
            done.outcomes[d.id] = "delivered"
            continue
        error = r.error or f"the receiver answered {r.status_code}"
        nxt = None if ping or r.permanent else policy.next_attempt(d.attempts, now, r.retry_after, rng)
        if nxt is None:
            d.status = "failed"
            d.last_error = error if ping or r.permanent else f"gave up after {d.attempts} attempts: {error}"
            done.outcomes[d.id] = "failed"
        else:
            d.next_attempt_at, d.last_error = nxt, error
            done.outcomes[d.id] = "retry"
        if ep is None or ping or r.permanent:
            continue
        ep.consecutive_failures += 1
        ep.failing_since = ep.failing_since or now
        ep.paused_until = now + timedelta(seconds=policy.pause(ep.consecutive_failures, r.retry_after, rng))
        if not ep.active:
            continue
        reason = None
        if r.status_code == GONE:
            reason = "the receiver answered 410 Gone"
        elif policy.should_disable(ep.consecutive_failures, ep.failing_since, now):
            reason = (f"{ep.consecutive_failures} failed attempts in a row since "
                      f"{ep.failing_since:%Y-%m-%d %H:%M} UTC; last: {error}")
        if reason:
            ep.active, ep.disabled_reason = False, f"disabled automatically: {reason}"[:2000]
            done.disabled.append(ep.id)
            emit(session, WebhookDisabled(endpoint_id=ep.id, description=ep.description, reason=reason,
                                          consecutive_failures=ep.consecutive_failures), Audience())
    await session.flush()
    return done


async def redeliver(session: AsyncSession, delivery_id: int, *, now: datetime) -> WebhookDeliveryRow:
    """Send a delivery again now: a finished one starts over with a fresh count of attempts (same id and
    body, so receivers that dedupe by ``id`` see a repeat); a pending one is tried now. Its endpoint's
    rest ends."""
    d = await repo.get_delivery(session, delivery_id, lock=True)
    if d is None:
        raise NotFound(f"webhook delivery {delivery_id} does not exist")
    ep = await _endpoint(session, d.endpoint_id)
    if not ep.active:
        raise Conflict(f"webhook endpoint {ep.id} is disabled: enable it to redeliver", field="endpoint_id")
    if d.event_name == PING:
        raise ValidationFailed("a ping is not redelivered: send a new one", field="delivery_id")
    if d.status != "pending":
        d.status, d.attempts, d.delivered_at = "pending", 0, None
    d.next_attempt_at = now
    ep.paused_until = None
    await session.flush()
    mark_written(session, "webhook_deliveries")
    return d


async def _prune(session: AsyncSession, policy: Retention, now: datetime) -> int:
    return await repo.prune(session, policy.deliveries_before(now), policy.chunk)


# Retention of the delivery log (``actions/retention.py``): finished deliveries go after
# ``retention_webhook_deliveries_days``; a waiting delivery keeps its outbox event.
RETAINED = RetainedLog("webhook_deliveries", _prune, repo.oldest_waiting_event)
