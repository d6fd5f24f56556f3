"""Retention: forget what the logs no longer need (``domain.retention``), a chunk per transaction.

The core's logs (the outbox, the inbox) are pruned here. A feature package that keeps a log of its own
(outgoing webhooks: their deliveries) hands in a ``RetainedLog``: how to prune it, and which outbox
events its waiting rows still need, so the outbox keeps them. The core names no feature package: the
process wiring (``services.py``) passes them in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.repos import plumbing as plumbing_repo
from threadline.domain.retention import Retention, prune_bound


@dataclass(frozen=True)
class RetainedLog:
    """A feature package's log that retention prunes."""

    name: str  # how the pruned rows are counted (metric label, log field), e.g. "webhook_deliveries"
    prune: Callable[[AsyncSession, Retention, datetime], Awaitable[int]]  # up to ``policy.chunk`` rows; how many
    oldest_needed_event: Callable[[AsyncSession], Awaitable[int | None]] | None = None  # outbox seq still needed


@dataclass(frozen=True)
class Pruned:
    events: int = 0
    ephemeral: int = 0
    inbox: int = 0
    logs: Mapping[str, int] = field(default_factory=dict)  # a feature package's log -> rows pruned

    def counts(self) -> dict[str, int]:
        """Rows pruned per log, core and feature logs alike."""
        return {"events": self.events, "ephemeral": self.ephemeral, "inbox": self.inbox, **self.logs}

    def full(self, chunk: int) -> bool:
        """Whether some log had a whole chunk to prune (so more may be left)."""
        return max(self.counts().values()) >= chunk

    @property
    def any(self) -> bool:
        return any(self.counts().values())


async def prune_once(session: AsyncSession, policy: Retention, now: datetime,
                     logs: Sequence[RetainedLog] = ()) -> Pruned:
    """Delete up to ``policy.chunk`` rows of each log that are past their retention."""
    needed = [await log.oldest_needed_event(session) for log in logs if log.oldest_needed_event is not None]
    bound = prune_bound(await plumbing_repo.max_seq(session),
                        await plumbing_repo.slowest_cursor(session, policy.outbox_before(now)), *needed)
    return Pruned(
        events=await plumbing_repo.prune_events(session, before=policy.outbox_before(now), ephemeral=False,
                                                up_to_seq=bound, limit=policy.chunk),
        ephemeral=await plumbing_repo.prune_events(session, before=policy.ephemeral_before(now), ephemeral=True,
                                                   up_to_seq=bound, limit=policy.chunk),
        inbox=await plumbing_repo.prune_inbox(session, processed_before=policy.inbox_before(now),
                                              failed_before=policy.inbox_failed_before(now), limit=policy.chunk),
        logs={log.name: await log.prune(session, policy, now) for log in logs},
    )
