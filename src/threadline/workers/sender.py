"""Deliver queued outbound messages through their channel adapter, with retries and backoff, in every
process that runs workers.

Each round claims due jobs with a lease (``actions.sending.claim_jobs``: a conditional ``UPDATE …
RETURNING`` over rows locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two processes never send one
job; a process that dies only delays its jobs to the end of the lease) and sends them concurrently, at
most ``concurrency`` at a time and ``per_channel`` per channel (``workers/leased.py``), so one slow
provider cannot hold every slot. The adapter's ``RetryableSendError`` schedules another attempt after an
exponential backoff with jitter (or the provider's Retry-After), up to ``max_attempts``; a
``PermanentSendError`` (or running out of attempts) marks the message failed with the reason, which the
agent sees. Results are recorded together in one transaction; one whose job was claimed again meanwhile
(its lease ran out) is dropped. Jobs live in the database, so a restart resumes where it stopped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from threadline.actions import consent as consent_actions
from threadline.actions import outbound as outbound_actions
from threadline.actions import sending as actions
from threadline.adapters import AdapterFactory
from threadline.channels.base import PermanentSendError, RetryableSendError
from threadline.channels.registry import get_adapter_class
from threadline.db.models import AttachmentRow, ChannelInstanceRow, IdentityRow, MessageRow, UserRow
from threadline.db.repos import channels as channels_repo
from threadline.db.repos import contacts as contacts_repo
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import files as files_repo
from threadline.db.repos import plumbing as repo
from threadline.db.repos import users as users_repo
from threadline.db.session import Database
from threadline.db.types import utcnow
from threadline.domain.contacts import IdentityKind, IdentityValue
from threadline.domain.messages import Attachment, OutboundMessage, SendReceipt, TemplateSend
from threadline.files.store import FileStore
from threadline.metrics import OUTBOUND_RESULTS
from threadline.workers.leased import LeasedWorker

log = structlog.get_logger(__name__)
ATTACHMENT_URL = "/api/v1/attachments/"
LEASE_SECONDS = 300.0  # a claimed job is sent or tried again by then (adapters time out long before)
SHUTDOWN_WAIT = 5.0  # seconds a stopping sender lets sends in flight finish (the rest: after their lease)

Clock = Callable[[], datetime]


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: a random delay in [base/2, min(cap, base * 2**attempt)]."""
    high = min(cap, base * (2 ** attempt))
    return rng.uniform(min(base / 2, high), high)


@dataclass
class SendResult:
    """What one attempt gave (recorded by ``SenderWorker.record``)."""

    job_id: int
    attempts: int  # the job's count of attempts when it was claimed
    lease_until: datetime  # and its lease: a newer claim (this one's lease ran out) makes this result stale
    kind: str = "?"  # the channel kind (metrics)
    receipt: SendReceipt | None = None
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False


@dataclass
class _Prepared:
    """What sending one job needs (``SenderWorker._prepare``); None where the row no longer exists."""
    msg: MessageRow | None
    channel: ChannelInstanceRow | None
    ident: IdentityRow | None
    author: UserRow | None
    parent: MessageRow | None
    stored: dict[str, AttachmentRow]
    opted_out: dict[str, Any] | None


class SenderWorker(LeasedWorker[SendResult]):
    name = "sender"
    wakes_on = frozenset({"jobs"})

    def __init__(self, db: Database, factory: AdapterFactory, *, max_attempts: int = 8, backoff_base: float = 2.0,
                 backoff_max: float = 600.0, poll_seconds: float = 1.0, concurrency: int = 8,
                 per_channel: int | None = None, clock: Clock = utcnow) -> None:
        super().__init__(concurrency=concurrency, per_key=per_channel or max(1, concurrency // 2),
                         poll_seconds=poll_seconds, shutdown_wait=SHUTDOWN_WAIT)
        self.db = db
        self.factory = factory
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock
        self.files: FileStore | None = None  # set by Services: bytes of stored attachments for send()
        self.rng = random.Random()
        self.listeners: list[Callable[[list[SendResult]], None]] = []  # told after results are recorded (tests)

    def _file_bytes(self, stored: dict[str, AttachmentRow], url: str) -> bytes | None:
        row = stored.get(url.rsplit("/", 1)[1]) if url.startswith(ATTACHMENT_URL) else None
        if row is None or self.files is None or not self.files.exists(row.sha256):
            return None
        return self.files.read(row.sha256)

    async def tick(self) -> float | None:
        await self.flush()
        if self._stopping.is_set():
            return None
        if self.free <= 0:
            return self.interval  # every slot is busy: a finished send wakes us
        now = self.clock()
        async with self.db.transaction(write=False) as session:
            nxt = await repo.next_job_due(session)
        if nxt is None:
            return None
        if nxt > now:
            return max(0.01, min(self.interval, (nxt - now).total_seconds()))
        if await self._claim_and_send(now):
            return 0.0  # more may be due
        # Due, but not ours to take now: the channel's slots here are busy (a finished send wakes us), or
        # another process just claimed them.
        return self.interval if self._tasks else 0.5

    async def send_due(self, now: datetime | None = None) -> int:
        """Claim what is due (as many as there are free slots), send it and record the results before
        returning; how many jobs were claimed (tools and tests; the loop does not wait)."""
        claimed = await self._claim_and_send(now or self.clock())
        await self.drain()
        return claimed

    async def _claim_and_send(self, now: datetime) -> int:
        async with self.db.transaction(write=True) as session:
            claimed = await actions.claim_jobs(session, now=now, lease_seconds=LEASE_SECONDS, limit=self.free,
                                               per_channel=self.per_key, busy=self._busy)
        prepared = await self._prepare(claimed) if claimed else {}
        for job in claimed:
            self.spawn(job.channel_instance_id, f"send-{job.id}", partial(self._send_one, job, prepared.get(job.id)),
                       partial(_crashed, job))
        return len(claimed)

    async def _prepare(self, claimed: list[actions.ClaimedJob]) -> dict[int, _Prepared]:
        """What each claimed job needs to be sent, read for all of them at once (one read transaction, a
        query per kind of row: jobs, messages, channels, identities, authors, the customer messages they
        answer, stored files) rather than six reads per job. A job missing here is gone or no longer pending."""
        async with self.db.transaction(write=False) as session:
            jobs = [j for j in (await repo.jobs_by_ids(session, {c.id for c in claimed})).values()
                    if j.status == "pending"]
            msgs = await conv_repo.get_messages(session, {j.message_id for j in jobs})
            channels = await channels_repo.get_channels(session, {j.channel_instance_id for j in jobs})
            idents = await contacts_repo.get_identities(session, {m.identity_id for m in msgs.values() if m.identity_id})
            authors = await users_repo.get_users(session, {m.author_id for m in msgs.values() if m.author_id})
            # the customer message each reply answers on the same channel (email threading headers)
            parents = await conv_repo.last_inbound_of(session, {m.conversation_id for m in msgs.values()})
            # stored files (our own download URLs) travel as bytes to channels that attach them (email)
            local = {str(a["url"]).rsplit("/", 1)[1] for m in msgs.values() for a in m.attachments or []
                     if str(a.get("url", "")).startswith(ATTACHMENT_URL)}
            stored = {r.id: r for r in await files_repo.attachments_by_ids(session, sorted(local))} \
                if local and self.files is not None else {}
            out: dict[int, _Prepared] = {}
            for job in jobs:
                msg = msgs.get(job.message_id)
                channel = channels.get(job.channel_instance_id)
                ident = idents.get(msg.identity_id) if msg and msg.identity_id else None
                parent = parents.get(msg.conversation_id) if msg else None
                if parent is not None and (channel is None or parent.channel_instance_id != channel.id):
                    parent = None
                # the customer may have replied STOP after this reply was queued: never send it then (the
                # opt-out of this channel's consent scope: SMS, or WhatsApp)
                cls = get_adapter_class(channel.kind) if channel else None
                scope = cls.capabilities.consent_scope if cls is not None else None
                opted_out = await consent_actions.opted_out(session, ident.id, scope) \
                    if ident is not None and scope else None
                out[job.id] = _Prepared(msg, channel, ident, authors.get(msg.author_id) if msg and msg.author_id
                                        else None, parent, stored, opted_out)
        return out

    async def _send_one(self, claimed: actions.ClaimedJob, prepared: _Prepared | None = None) -> SendResult:
        """Send one claimed job through its channel's adapter (``prepared``: read by ``_prepare``; read here
        when not given)."""
        job_id = claimed.id
        if prepared is None:
            prepared = (await self._prepare([claimed])).get(job_id)
        if prepared is None:
            return SendResult(job_id, claimed.attempts, claimed.lease_until, error="the job is gone", permanent=True)
        msg, channel, ident, author, parent, stored, opted_out = (
            prepared.msg, prepared.channel, prepared.ident, prepared.author, prepared.parent, prepared.stored,
            prepared.opted_out)
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
                template=TemplateSend.from_meta((msg.meta or {}).get("template")),
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
        return SendResult(job_id, claimed.attempts, claimed.lease_until, kind, receipt, error, retry_after, permanent)

    async def record(self, results: list[SendResult]) -> None:
        """Record finished attempts in one transaction: sent, tried again later, or failed with the reason."""
        now = self.clock()
        outcomes: list[tuple[str, str]] = []
        async with self.db.transaction(write=True) as session:
            jobs = await repo.jobs_by_ids(session, {r.job_id for r in results})
            for r in results:
                job = jobs.get(r.job_id)
                if job is None or job.status != "pending" or job.attempts != r.attempts \
                        or job.next_attempt_at != r.lease_until:
                    continue  # recorded already, or claimed again since (its lease ran out): that attempt decides
                if r.receipt is not None:
                    await outbound_actions.record_sent(session, job, r.receipt.provider_id, r.receipt.status)
                    outcomes.append((r.kind, "sent"))
                elif r.permanent or job.attempts + 1 >= self.max_attempts:
                    reason = r.error or "failed"
                    if not r.permanent:
                        reason = f"gave up after {job.attempts + 1} attempts: {reason}"
                    await outbound_actions.record_failed(session, job, reason)
                    outcomes.append((r.kind, "failed"))
                else:
                    delay = r.retry_after if r.retry_after is not None else backoff(
                        job.attempts, self.backoff_base, self.backoff_max, self.rng)
                    outbound_actions.record_retry(job, r.error or "retry", min(delay, self.backoff_max), now)
                    outcomes.append((r.kind, "retry"))
        for kind, outcome in outcomes:
            OUTBOUND_RESULTS.labels(kind, outcome).inc()
        for listener in self.listeners:
            listener(results)


def _crashed(job: actions.ClaimedJob, exc: Exception) -> SendResult:
    return SendResult(job.id, job.attempts, job.lease_until, error=f"{exc.__class__.__name__}: {exc}")
