"""Deliver queued outbound messages through their channel adapter, with retries and backoff.

A job is picked when due; the adapter's ``RetryableSendError`` schedules another attempt after an
exponential backoff with jitter (or the provider's Retry-After), up to ``max_attempts``; a
``PermanentSendError`` (or running out of attempts) marks the message failed with the reason, which
the agent sees. Jobs live in the database, so a restart resumes where it stopped.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import structlog

from threadline.actions import messages as message_actions
from threadline.channels.base import PermanentSendError, RetryableSendError
from threadline.db.leader import LeaderLock
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import plumbing as repo
from threadline.db.repos import users as users_repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.contacts import IdentityKind, IdentityValue
from threadline.domain.messages import Attachment, OutboundMessage
from threadline.metrics import OUTBOUND_RESULTS
from threadline.workers.channels import AdapterFactory
from threadline.workers.loop import BackgroundLoop

log = structlog.get_logger(__name__)


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: a random delay in [base/2, min(cap, base * 2**attempt)]."""
    high = min(cap, base * (2 ** attempt))
    return rng.uniform(min(base / 2, high), high)


class SenderWorker(BackgroundLoop):
    name = "sender"

    def __init__(self, db: Database, factory: AdapterFactory, *, max_attempts: int = 8, backoff_base: float = 2.0,
                 backoff_max: float = 600.0, poll_seconds: float = 1.0) -> None:
        super().__init__(interval=poll_seconds)
        self.db = db
        self.factory = factory
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.leader = LeaderLock(db, "sender")
        self.rng = random.Random()

    async def on_stop(self) -> None:
        await self.leader.release()

    async def tick(self) -> float | None:
        if not await self.leader.try_acquire():
            return None
        while not self._stopping.is_set() and await self.send_due() > 0:
            pass
        async with self.db.transaction(write=False) as session:
            nxt = await repo.next_job_due(session)
        if nxt is None:
            return None
        return max(0.01, min(self.interval, (nxt - utcnow()).total_seconds()))

    async def send_due(self, now: datetime | None = None) -> int:
        now = now or utcnow()
        async with self.db.transaction(write=False) as session:
            jobs = await repo.due_jobs(session, now, 50, skip_locked=False)
            job_ids = [j.id for j in jobs]
        for job_id in job_ids:
            await self._send_one(job_id)
        return len(job_ids)

    async def _send_one(self, job_id: int) -> None:
        async with self.db.transaction(write=False) as session:
            job = await repo.get_job(session, job_id)
            if job is None or job.status != "pending":
                return
            msg = await conv_repo.get_message(session, job.message_id)
            channel = await channels_repo.get_channel(session, job.channel_instance_id)
            ident = await contacts_repo.get_identity(session, msg.identity_id) if msg and msg.identity_id else None
            author = await users_repo.get_user(session, msg.author_id) if msg and msg.author_id else None
        error: str | None = None
        retry_after: float | None = None
        permanent = False
        receipt = None
        kind = channel.kind if channel else "?"
        if msg is None or channel is None or ident is None:
            permanent, error = True, "the message, its channel or the customer's identity no longer exists"
        elif not channel.enabled:
            permanent, error = True, f"channel {channel.name} is disabled"
        else:
            out = OutboundMessage(
                message_id=msg.id, conversation_id=msg.conversation_id,
                to=IdentityValue(IdentityKind(ident.kind), ident.value, ident.scope), text=msg.text,
                attachments=tuple(Attachment(a["url"], a.get("content_type", ""), a.get("name", ""))
                                  for a in (msg.attachments or [])),
                author_name=author.name if author else "",
            )
            try:
                receipt = await self.factory.for_row(channel).send(out)
            except RetryableSendError as exc:
                error, retry_after = str(exc), exc.retry_after
            except PermanentSendError as exc:
                permanent, error = True, str(exc)
            except Exception as exc:  # an adapter bug: retry, the reason is recorded
                log.exception("adapter_send_crashed", job_id=job_id)
                error = f"{exc.__class__.__name__}: {exc}"
        async with self.db.transaction(write=True) as session:
            job = await repo.get_job(session, job_id)
            if job is None or job.status != "pending":
                return
            if receipt is not None:
                await message_actions.record_sent(session, job, receipt.provider_id, receipt.status)
                OUTBOUND_RESULTS.labels(kind, "sent").inc()
            elif permanent or job.attempts + 1 >= self.max_attempts:
                reason = error or "failed"
                if not permanent:
                    reason = f"gave up after {job.attempts + 1} attempts: {reason}"
                await message_actions.record_failed(session, job, reason)
                OUTBOUND_RESULTS.labels(kind, "failed").inc()
            else:
                delay = retry_after if retry_after is not None else backoff(
                    job.attempts, self.backoff_base, self.backoff_max, self.rng)
                message_actions.record_retry(job, error or "retry", min(delay, self.backoff_max),
                                             datetime.now(UTC))
                OUTBOUND_RESULTS.labels(kind, "retry").inc()
