"""The kinds of scheduled jobs the core runs, and their handlers (``TimerWorker.register``).

Each handler runs in the timer worker's write transaction with the due job and the worker's clock; it
calls an action, so the change, its events and the job's end commit together. A feature package adds
its own kinds the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import conversations as conversation_actions
from threadline.actions import retention as retention_actions
from threadline.actions import sla as sla_actions
from threadline.actions.retention import RetainedLog
from threadline.actions.scheduler import schedule_job
from threadline.domain.retention import Retention
from threadline.domain.sla import SlaStage, SlaTarget
from threadline.metrics import RETENTION_PRUNED, SLA_BREACHES
from threadline.workers.scheduler import Handler, Job, TimerWorker

log = structlog.get_logger(__name__)
RETENTION = "retention.prune"
RETENTION_FIRST_AFTER = 60.0  # seconds after a start: the first pruning round


async def wake_conversation(session: AsyncSession, job: Job, now: datetime) -> None:
    await conversation_actions.wake_conversation(session, int(job.key), now)


def sla_deadline(target: SlaTarget) -> Handler:
    async def run(session: AsyncSession, job: Job, now: datetime) -> None:
        if await sla_actions.check_deadline(session, int(job.key), target, now) is SlaStage.BREACHED:
            SLA_BREACHES.labels(target.value).inc()
    return run


def prune_logs(policy: Retention, logs: Sequence[RetainedLog] = ()) -> Handler:
    """The periodic retention job: one chunk of each log (the core's and ``logs``, the feature packages')
    per run; again at once while a chunk was full, then after ``policy.every_seconds``."""
    async def run(session: AsyncSession, job: Job, now: datetime) -> None:
        done = await retention_actions.prune_once(session, policy, now, logs)
        counts = done.counts()
        for what, count in counts.items():
            if count:
                RETENTION_PRUNED.labels(what).inc(count)
        if done.any:
            log.info("retention_pruned", **counts)
        again = now if done.full(policy.chunk) else now + timedelta(seconds=policy.every_seconds)
        await schedule_job(session, job.kind, job.key, again)
    return run


def register_core_jobs(timers: TimerWorker, retention: Retention, logs: Sequence[RetainedLog] = ()) -> None:
    timers.register(conversation_actions.WAKE, wake_conversation)
    for target, kind in sla_actions.JOB_KINDS.items():
        timers.register(kind, sla_deadline(target))
    timers.register(RETENTION, prune_logs(retention, logs))
    timers.every(RETENTION, "logs", first_after=RETENTION_FIRST_AFTER)
