"""Outgoing webhooks, the pure part: which events an endpoint may subscribe to, what a delivery's body
and signature are, and when a failed delivery is tried again. Which destinations are refused is shared
with the channel settings check: ``domain/network.py``.

No I/O here: the worker (``webhooks/worker.py``) resolves names, posts and keeps time; it passes ``now``
and a random generator in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from threadline.domain.errors import ValidationFailed
from threadline.domain.events import EVENT_NAMES

WILDCARD = "*"
PING = "webhook.ping"  # the test delivery of "Ping": never stored as an event, not subscribable
USER_AGENT = "Threadline-Webhooks/1"
SIGNATURE_TOLERANCE = 300  # seconds a receiver should accept between ``t`` and its clock

# "*" means every event except these: frequent signals that drive live screens and the router, not facts
# an integration acts on. They can still be subscribed to by name.
NOT_IN_WILDCARD = frozenset({
    "conversation.typing",            # every start/stop of typing
    "routing.state",                  # wallboard snapshots, several a second on a busy centre
    "routing.offer",                  # an offer to one agent (routing.task_picked says who took it)
    "routing.offer_ended",
    "routing.settings_changed",       # tells the router to reload
    "routing.wrap_up_end_requested",  # an agent's command to the router
    "channel.changed",                # tells processes to drop cached channel settings
})

MAX_EVENTS = 100


def wildcard_events() -> list[str]:
    """The events ``*`` covers."""
    return [n for n in EVENT_NAMES if n not in NOT_IN_WILDCARD]


def normalise_events(names: Iterable[str]) -> list[str]:
    """The subscribed names, sorted and without repeats; unknown names are refused, naming them."""
    cleaned = sorted({str(n).strip() for n in names if str(n).strip()})
    if not cleaned:
        raise ValidationFailed("subscribe to at least one event, or '*' for all of them", field="events")
    if len(cleaned) > MAX_EVENTS:
        raise ValidationFailed(f"at most {MAX_EVENTS} event names", field="events")
    known = set(EVENT_NAMES)
    unknown = [n for n in cleaned if n != WILDCARD and n not in known]
    if unknown:
        raise ValidationFailed(
            f"unknown event name{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
            "(GET /api/v1/webhooks/event-types lists them)", field="events")
    return cleaned


def matches(subscribed: Sequence[str], name: str) -> bool:
    return name in subscribed or (WILDCARD in subscribed and name not in NOT_IN_WILDCARD)


def wanted_names(subscriptions: Iterable[Sequence[str]]) -> set[str]:
    """Every event name at least one of these subscriptions receives."""
    out: set[str] = set()
    for subscribed in subscriptions:
        out.update(n for n in subscribed if n != WILDCARD)
        if WILDCARD in subscribed:
            out.update(wildcard_events())
    return out


# --- the request ---------------------------------------------------------------------------------------

def delivery_body(delivery_id: int, event: str, seq: int | None, created_at: datetime, data: dict[str, Any]) -> bytes:
    """The JSON posted: the same bytes on every attempt of a delivery (only the signature's ``t`` changes)."""
    return json.dumps({"id": str(delivery_id), "event": event, "seq": seq, "created_at": created_at.isoformat(),
                       "data": data}, separators=(",", ":"), ensure_ascii=False).encode()


def signature_header(secrets: Sequence[str], body: bytes, timestamp: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, one ``v1`` per valid secret (two while a rolled
    secret's predecessor is still honoured)."""
    msg = str(timestamp).encode() + b"." + body
    sigs = [f"v1={hmac.new(s.encode(), msg, hashlib.sha256).hexdigest()}" for s in secrets]
    return ",".join([f"t={timestamp}", *sigs])


def verify_signature(secret: str, body: bytes, header: str, now: float, tolerance: int = SIGNATURE_TOLERANCE) -> bool:
    """What a receiver does (docs/webhooks.md has the same few lines for receivers to copy)."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [v for k, v in fields if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    t = int(stamps[0])
    if abs(now - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v.strip()) for k, v in fields if k.strip() == "v1")


def succeeded(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


GONE = 410  # "this endpoint is gone for good": the endpoint is disabled at once


# --- retries -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """When failed deliveries are tried again, and when an endpoint is given up on.

    A delivery is tried up to ``max_attempts`` times; after its n-th failure it waits
    ``base * factor**(n-1)`` seconds (at most ``max_seconds``) with ±25 % jitter, or what the receiver's
    Retry-After asks (up to ``max_seconds``). The defaults (10 s, ×4, 6 h cap, 10 attempts) spread the
    attempts over about a day: 10 s, 40 s, 2.7 min, 11 min, 43 min, 2.8 h, 6 h, 6 h, 6 h.

    A failing endpoint also rests between attempts (``pause``, at most ``pause_max_seconds``), so a
    receiver that is down gets a probe now and then instead of every queued delivery at its own time.
    It is disabled when it has failed ``disable_after_failures`` attempts in a row over at least
    ``disable_after_seconds``.
    """

    max_attempts: int = 10
    base_seconds: float = 10.0
    factor: float = 4.0
    max_seconds: float = 6 * 3600.0
    pause_max_seconds: float = 300.0
    disable_after_failures: int = 50
    disable_after_seconds: float = 24 * 3600.0

    def nominal_delay(self, failures: int) -> float:
        return min(self.max_seconds, self.base_seconds * self.factor ** max(0, failures - 1))

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after the ``failures``-th failed attempt, jittered so retries do not arrive in step."""
        return min(self.max_seconds, self.nominal_delay(failures) * rng.uniform(0.75, 1.25))

    def schedule(self) -> list[float]:
        """The nominal waits between attempts (for docs and tests)."""
        return [self.nominal_delay(n) for n in range(1, self.max_attempts)]

    def next_attempt(self, attempts: int, now: datetime, retry_after: float | None,
                     rng: random.Random) -> datetime | None:
        """When to try a delivery again after its ``attempts``-th attempt failed; None: give up."""
        if attempts >= self.max_attempts:
            return None
        wait = retry_after if retry_after is not None else self.delay(attempts, rng)
        return now + timedelta(seconds=min(max(wait, 0.0), self.max_seconds))

    def pause(self, consecutive_failures: int, retry_after: float | None, rng: random.Random) -> float:
        """How long a failing endpoint rests before its next attempt."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_seconds)
        return min(self.pause_max_seconds, self.delay(consecutive_failures, rng))

    def should_disable(self, consecutive_failures: int, failing_since: datetime | None, now: datetime) -> bool:
        return (consecutive_failures >= self.disable_after_failures and failing_since is not None
                and (now - failing_since).total_seconds() >= self.disable_after_seconds)


@dataclass(frozen=True)
class AttemptResult:
    """What one POST of a delivery gave (the worker builds it; actions record it)."""

    delivery_id: int
    attempts: int  # the attempt's number: the delivery's count when it was claimed
    status_code: int | None = None  # None: no HTTP answer (refused destination, timeout, network error)
    error: str | None = None
    response: str | None = None  # the first characters of the receiver's answer
    duration_ms: int = 0
    retry_after: float | None = None
    permanent: bool = False  # not worth another attempt, and not the receiver's fault (the event is gone)
