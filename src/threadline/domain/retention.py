"""How long the logs keep what they hold (pure; docs/operations.md "Retention").

- **Outbox** (the event log: the live stream's resume and every follower's source): published events
  for ``outbox_days``; events marked ephemeral when emitted (typing, wallboard snapshots, see
  ``events.EPHEMERAL_EVENTS``) for ``ephemeral_minutes`` only, since nobody resumes that far back for
  them. Never an event a follower, the relay or a waiting webhook delivery has not passed, and never the
  newest one (the next seq follows it).
- **Inbox** (raw provider requests: personal data and provider headers): processed ones for
  ``inbox_days`` (provider retries are recognised by their stored key meanwhile); ones that never
  processed for ``inbox_failed_days``, time to fix and replay them.
- **Webhook deliveries**: finished ones for ``webhook_deliveries_days`` (pending ones stay).

Pruning runs as a periodic scheduled job, ``chunk`` rows of each kind per transaction, so that no
transaction holds SQLite's write lock for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Retention:
    outbox_days: int = 30
    ephemeral_minutes: int = 10
    inbox_days: int = 7
    inbox_failed_days: int = 90
    webhook_deliveries_days: int = 30
    chunk: int = 1000
    every_seconds: float = 3600.0  # how often the pruning job runs once it has caught up

    def outbox_before(self, now: datetime) -> datetime:
        return now - timedelta(days=self.outbox_days)

    def ephemeral_before(self, now: datetime) -> datetime:
        return now - timedelta(minutes=self.ephemeral_minutes)

    def inbox_before(self, now: datetime) -> datetime:
        return now - timedelta(days=self.inbox_days)

    def inbox_failed_before(self, now: datetime) -> datetime:
        return now - timedelta(days=self.inbox_failed_days)

    def deliveries_before(self, now: datetime) -> datetime:
        return now - timedelta(days=self.webhook_deliveries_days)


def prune_bound(newest_seq: int, slowest_cursor: int | None, *still_needed: int | None) -> int:
    """Events with a seq below this may go: every follower has passed them (its cursor is at or after),
    no waiting row of a feature's log needs them (``still_needed``: e.g. a webhook delivery's event), and
    the newest event stays (the next seq is counted from it)."""
    bound = newest_seq
    if slowest_cursor is not None:
        bound = min(bound, slowest_cursor + 1)
    for seq in still_needed:
        if seq is not None:
            bound = min(bound, seq)
    return bound
