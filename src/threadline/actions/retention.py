"""Retention: forget what the logs no longer need (``domain.retention``), a chunk per transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.db.repos import plumbing as plumbing_repo
from threadline.db.repos import webhooks as webhooks_repo
from threadline.domain.retention import Retention, prune_bound


@dataclass(frozen=True)
class Pruned:
    events: int = 0
    ephemeral: int = 0
    inbox: int = 0
    webhook_deliveries: int = 0

    def full(self, chunk: int) -> bool:
        """Whether some log had a whole chunk to prune (so more may be left)."""
        return max(self.events, self.ephemeral, self.inbox, self.webhook_deliveries) >= chunk


async def prune_once(session: AsyncSession, policy: Retention, now: datetime) -> Pruned:
    """Delete up to ``policy.chunk`` rows of each log that are past their retention."""
    bound = prune_bound(await plumbing_repo.max_seq(session),
                        await plumbing_repo.slowest_cursor(session, policy.outbox_before(now)),
                        await webhooks_repo.oldest_waiting_event(session))
    return Pruned(
        events=await plumbing_repo.prune_events(session, before=policy.outbox_before(now), ephemeral=False,
                                                up_to_seq=bound, limit=policy.chunk),
        ephemeral=await plumbing_repo.prune_events(session, before=policy.ephemeral_before(now), ephemeral=True,
                                                   up_to_seq=bound, limit=policy.chunk),
        inbox=await plumbing_repo.prune_inbox(session, processed_before=policy.inbox_before(now),
                                              failed_before=policy.inbox_failed_before(now), limit=policy.chunk),
        webhook_deliveries=await webhooks_repo.prune(session, policy.deliveries_before(now), policy.chunk),
    )
