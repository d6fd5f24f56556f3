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
from threadline.actions import messaging as messaging_actions
from threadline.channels.base import PermanentSendError, RetryableSendError
from threadline.channels.registry import get_adapter_class
from threadline.db.leader import LeaderLock
from threadline.db.models import AttachmentRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import files as files_repo
from threadline.db.repos import plumbing as repo
from threadline.db.repos import users as users_repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.contacts import IdentityKind, IdentityValue
from threadline.domain.messages import Attachment, OutboundMessage
from threadline.files.store import FileStore
from threadline.loop import BackgroundLoop
from threadline.metrics import OUTBOUND_RESULTS
from threadline.workers.channels import AdapterFactory

log = structlog.get_logger(__name__)
ATTACHMENT_URL = "/api/v1/attachments/"


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
        self.files: FileStore | None = None  # set by Services: bytes of stored attachments for send()
        self.rng = random.Random()

    def _file_bytes(self, stored: dict[str, AttachmentRow], url: str) -> bytes | None:
        row = stored.get(url.rsplit("/", 1)[1]) if url.startswith(ATTACHMENT_URL) else None
        if row is None or self.files is None or not self.files.exists(row.sha256):
            return None
        return self.files.read(row.sha256)

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
            # the customer message this reply answers on the same channel (email threading headers)
            parent = await conv_repo.last_inbound(session, msg.conversation_id) if msg else None
            if parent is not None and (channel is None or parent.channel_instance_id != channel.id):
                parent = None
            # stored files (our own download URLs) travel as bytes to channels that attach them (email)
            local = [str(a["url"]).rsplit("/", 1)[1] for a in (msg.attachments if msg else None) or []
                     if str(a.get("url", "")).startswith(ATTACHMENT_URL)]
            stored = {r.id: r for r in await files_repo.attachments_by_ids(session, local)} \
                if local and self.files is not None else {}
            # an SMS customer may have replied STOP after this reply was queued: never send it then
            cls = get_adapter_class(channel.kind) if channel else None
            opted_out = await messaging_actions.opted_out(session, ident.id) \
                if ident is not None and cls is not None and cls.capabilities.consent_keywords else None
        error: str | None = None
        retry_after: float | None = None
        permanent = False
        receipt = None
        kind = channel.kind if channel else "?"
        if msg is None or channel is None or ident is None:
            permanent, error = True, "the message, its channel or the customer's identity no longer exists"
        elif not channel.enabled:
            permanent, error = True, f"channel {channel.name} is disabled"
        elif opted_out is not None:
            permanent, error = True, (f"not sent: {ident.value} replied {opted_out.get('keyword') or 'STOP'!r} "
                                      "and opted out of messages")
        else:
            out = OutboundMessage(
                message_id=msg.id, conversation_id=msg.conversation_id,
                to=IdentityValue(IdentityKind(ident.kind), ident.value, ident.scope), text=msg.text,
                attachments=tuple(Attachment(a["url"], a.get("content_type", ""), a.get("name", ""),
                                             data=self._file_bytes(stored, str(a["url"])))
                                  for a in (msg.attachments or [])),
                author_name=author.name if author else "",
                reply_to_provider_id=parent.provider_id if parent else None,
                reply_to_meta=dict(parent.meta or {}) if parent else {},
                meta=dict(msg.meta or {}),
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
