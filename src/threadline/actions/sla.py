"""Conversation SLA: keep each conversation's first-response and resolution deadlines (``domain/sla.py``)
and their timers, and raise the alerts when one is near or missed.

``follow`` is called by the SLA follower (``workers/sla.py``) for the conversation and message events it
reads from the outbox, so the actions that create conversations, replies and status changes need no
change. It reads the conversation as it is now (the event only says which one and when), updates its
SLA columns and schedules one timer per watched deadline (``sla.first_response`` / ``sla.resolution``,
keyed by the conversation): at the warning time, then at the deadline. ``check_deadline`` is the timers'
handler: it looks again, warns (``conversation.sla_alert`` ``at_risk``) or records the breach on the
conversation (``breached``). A reply that meets a first-response deadline and a breach are announced
with a ``conversation.updated`` whose ``changes`` are ``["sla"]`` (the desk's header follows it); the
deadlines being set or moved are not (one more event per conversation would be), they show on the next
read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.conversations import audience_for
from threadline.actions.events import emit
from threadline.actions.scheduler import cancel_jobs, schedule_job, schedule_jobs
from threadline.actions.views import conversation_views
from threadline.db.models import ConversationRow
from threadline.db.repos import conversations as repo
from threadline.db.repos import users as users_repo
from threadline.domain.conversations import ConversationStatus
from threadline.domain.events import (
    ConversationCreated,
    ConversationSlaAlert,
    ConversationUpdated,
    Event,
    MessageCreated,
)
from threadline.domain.messages import Direction
from threadline.domain.queues import QueueSettings, SlaTargets
from threadline.domain.sla import SlaClock, SlaStage, SlaTarget

JOB_KINDS = {SlaTarget.FIRST_RESPONSE: "sla.first_response", SlaTarget.RESOLUTION: "sla.resolution"}
FOLLOWED = (ConversationCreated, ConversationUpdated, MessageCreated)  # what the SLA follower reads


def moves_clock(name: str, payload: dict[str, Any]) -> bool:
    """Whether an event of ``FOLLOWED`` can move a conversation's SLA clock, read off its payload without
    decoding it (the follower reads every message and conversation event; most are neither replies
    nor status or queue changes): the same cases ``follow`` acts on."""
    if name == MessageCreated.model_fields["name"].default:
        return (payload.get("message") or {}).get("direction") == Direction.OUT.value
    if name == ConversationUpdated.model_fields["name"].default:
        return bool({"status", "queue_id"} & set(payload.get("changes") or ()))
    return True


def _clock(conv: ConversationRow) -> SlaClock:
    return SlaClock(conv.sla_started_at, conv.first_response_due_at, conv.first_response_at,
                    conv.first_response_breached_at, conv.resolution_due_at, conv.resolution_breached_at)


def _store(conv: ConversationRow, clock: SlaClock) -> None:
    conv.sla_started_at = clock.started_at
    conv.first_response_due_at, conv.first_response_at = clock.first_response_due_at, clock.first_response_at
    conv.first_response_breached_at = clock.first_response_breached_at
    conv.resolution_due_at, conv.resolution_breached_at = clock.resolution_due_at, clock.resolution_breached_at


async def _targets(session: AsyncSession, queue_id: int | None) -> SlaTargets | None:
    queue = await users_repo.get_queue(session, queue_id) if queue_id is not None else None
    return QueueSettings.model_validate(queue.settings or {}).sla if queue is not None else None


async def follow(session: AsyncSession, events: Sequence[tuple[Event, datetime]], now: datetime) -> None:
    """Bring conversations' SLA up to date after a batch of their events (each with when it happened):
    a few statements for the whole batch (the follower reads every conversation and message event)."""
    touched: list[tuple[int, datetime | None, datetime | None]] = []  # (conversation, event time, reply time)
    for event, at in events:
        if isinstance(event, MessageCreated):
            # a reply to the customer; notes and activity lines are not
            if event.message.direction == Direction.OUT:
                touched.append((event.message.conversation_id, None, event.message.created_at))
        elif isinstance(event, ConversationCreated) or (
                isinstance(event, ConversationUpdated) and {"status", "queue_id"} & set(event.changes)):
            touched.append((event.conversation.id, at, None))
    if not touched:
        return
    convs = await repo.get_conversations(session, {cid for cid, _, _ in touched})
    targets: dict[int | None, SlaTargets | None] = {}
    before: dict[int, SlaClock] = {}
    replied: set[int] = set()
    for cid, at, reply in touched:
        conv = convs.get(cid)
        if conv is None:
            continue
        if conv.queue_id not in targets:
            targets[conv.queue_id] = await _targets(session, conv.queue_id)
        before.setdefault(cid, _clock(conv))
        clock = _step(_clock(conv), conv, targets[conv.queue_id], at, reply)
        if reply is not None and clock.first_response_at != conv.first_response_at:
            replied.add(cid)
        _store(conv, clock)
    schedule: list[tuple[str, int, datetime, None]] = []
    cancel: dict[str, list[int]] = {kind: [] for kind in JOB_KINDS.values()}
    for cid, old in before.items():
        conv = convs[cid]
        for target, kind in JOB_KINDS.items():
            deadline = _clock(conv).deadline(target, targets[conv.queue_id])
            if deadline == old.deadline(target, targets[conv.queue_id]):
                continue  # unchanged: its timer stands (and a warning already given is not repeated)
            if deadline is None:
                cancel[kind].append(cid)
            else:
                schedule.append((kind, cid, deadline.warn_at if now < deadline.warn_at else now, None))
    await schedule_jobs(session, schedule)
    for kind, ids in cancel.items():
        await cancel_jobs(session, kind, ids)
    if replied:  # the desk's header drops its "Reply by" (it follows conversation.updated)
        await _announce(session, [convs[cid] for cid in sorted(replied)])


def _step(clock: SlaClock, conv: ConversationRow, targets: SlaTargets | None, at: datetime | None,
          reply: datetime | None) -> SlaClock:
    """One event's effect on the clock, from the conversation as it is now."""
    if reply is not None:
        return clock.replied(reply)
    if conv.status == ConversationStatus.RESOLVED.value:
        return clock.stop()
    if clock.started_at is None:  # created, reopened, or put in a queue for the first time
        fresh = clock.first_response_due_at is None and clock.resolution_due_at is None \
            and clock.first_response_at is None
        assert at is not None
        return clock.start(targets, conv.created_at if fresh else at)
    return clock.retarget(targets)  # moved to another queue (or its targets changed)


async def check_deadline(session: AsyncSession, conversation_id: int, target: SlaTarget,
                         now: datetime) -> SlaStage | None:
    """The timer of one deadline is due: warn, or record the breach; nothing if it was met, stopped or
    moved meanwhile (then it is scheduled again for its new time). Returns what was raised."""
    conv = await repo.get_conversation(session, conversation_id, for_update=True)
    if conv is None:
        return None
    targets = await _targets(session, conv.queue_id)
    clock = _clock(conv)
    # Look at the conversation itself, not only at what the SLA follower has recorded so far: a reply
    # or a resolution just before the deadline may not have reached the follower yet.
    if conv.status == ConversationStatus.RESOLVED.value:
        clock = clock.stop()
    elif target is SlaTarget.FIRST_RESPONSE and clock.first_response_at is None:
        replied = await repo.first_reply_at(session, conv.id)
        if replied is not None:
            clock = clock.replied(replied)
    deadline = clock.deadline(target, targets)
    if deadline is None:
        if clock != _clock(conv):
            announce = clock.first_response_at != conv.first_response_at
            _store(conv, clock)
            if announce:
                await _announce(session, [conv])
        return None
    stage = deadline.stage_at(now)
    kind = JOB_KINDS[target]
    if stage is None:  # the deadline moved later
        await schedule_job(session, kind, conv.id, deadline.warn_at)
        return None
    alert = ConversationSlaAlert(conversation_id=conv.id, queue_id=conv.queue_id, assignee_id=conv.assignee_id,
                                 target=target.value, state=stage.value, due_at=deadline.due_at,
                                 target_seconds=deadline.seconds)
    audience = audience_for(conv)
    if stage is SlaStage.AT_RISK:
        emit(session, alert, audience)
        await schedule_job(session, kind, conv.id, deadline.due_at)
        return stage
    _store(conv, clock.breach(target, now))
    emit(session, alert, audience)
    await _announce(session, [conv])
    return stage


async def _announce(session: AsyncSession, convs: list[ConversationRow]) -> None:
    """What these conversations show of their SLA changed: a ``conversation.updated`` each."""
    await session.flush()
    for conv, view in zip(convs, await conversation_views(session, convs), strict=True):
        emit(session, ConversationUpdated(conversation=view, changes=["sla"]), audience_for(conv, customer=True))
