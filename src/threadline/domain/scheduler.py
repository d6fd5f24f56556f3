"""Durable timers: the pure rules of scheduled jobs.

A job is named by its ``kind`` (what runs: ``conversation.wake``, ``sla.first_response``…) and a ``key``
unique within the kind (what it is about: usually an id). Scheduling the same (kind, key) again moves
the job; cancelling names the pair. A job whose handler fails is tried again after a backoff and is
kept, with its last error, as failed after ``max_attempts``: never lost.

Time and randomness are passed in (the domain has no clock and no RNG of its own).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from threadline.domain.errors import ValidationFailed

KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_KIND = 60
MAX_KEY = 200


def check_job(kind: str, key: str) -> None:
    """Refuse a kind that is not a dotted lower-case name, or a key that is empty or too long."""
    if len(kind) > MAX_KIND or not KIND.match(kind):
        raise ValidationFailed(f"job kind {kind!r} must be a dotted lower-case name like 'conversation.wake'",
                               field="kind")
    if not key or len(key) > MAX_KEY:
        raise ValidationFailed(f"a job key is 1-{MAX_KEY} characters", field="key")


@dataclass(frozen=True)
class JobRetry:
    """When a failed job runs again: after its n-th failed attempt it waits ``base * factor**(n-1)``
    seconds (at most ``max_seconds``) with ±``jitter`` (a fraction), so that jobs failing together do
    not come back in step. After ``max_attempts`` attempts it is kept as failed.

    The defaults (5 s, ×4, 1 h cap, 8 attempts) try for about three hours: 5 s, 20 s, 80 s, 5.3 min,
    21 min, 1 h, 1 h."""

    max_attempts: int = 8
    base_seconds: float = 5.0
    factor: float = 4.0
    max_seconds: float = 3600.0
    jitter: float = 0.25

    def nominal_delay(self, failures: int) -> float:
        return min(self.max_seconds, self.base_seconds * self.factor ** max(0, failures - 1))

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after the ``failures``-th failed attempt, jittered."""
        spread = rng.uniform(1 - self.jitter, 1 + self.jitter)
        return min(self.max_seconds, self.nominal_delay(failures) * spread)

    def schedule(self) -> list[float]:
        """The nominal waits between attempts (docs and tests)."""
        return [self.nominal_delay(n) for n in range(1, self.max_attempts)]

    def next_attempt(self, attempts: int, now: datetime, rng: random.Random) -> datetime | None:
        """When to run a job again after its ``attempts``-th attempt failed; None: keep it as failed."""
        if attempts >= self.max_attempts:
            return None
        return now + timedelta(seconds=self.delay(attempts, rng))


def wait_seconds(due: datetime | None, now: datetime, cap: float) -> float | None:
    """How long a timer sleeps before the next due job: 0 when one is due, at most ``cap``; None when
    nothing is scheduled (the caller's poll interval applies)."""
    if due is None:
        return None
    return max(0.0, min(cap, (due - now).total_seconds()))


def pick_fairly(candidates: Sequence[tuple[int, int]], limit: int, per_key: int,
                busy: Mapping[int, int] | None = None) -> list[int]:
    """Which due rows to claim: ``candidates`` are (row id, key) earliest first, the key being what a
    receiver shares (a webhook endpoint, a channel). At most ``limit`` rows and ``per_key`` per key,
    counting the ``busy`` ones already in flight in this process: one slow receiver cannot hold every
    slot, and a backlog on one key does not hide the others' rows."""
    taken = dict(busy or {})
    picked: list[int] = []
    for row_id, key in candidates:
        if len(picked) >= limit:
            break
        if taken.get(key, 0) >= per_key:
            continue
        taken[key] = taken.get(key, 0) + 1
        picked.append(row_id)
    return picked
