"""Routing actions: answer an offer, pick a task by hand, change routing settings, and record what
the router decided. Every change emits its event in the same transaction.

The database is the referee between the router and the agents: an offer row changes from ``open``
only once (rows are locked on PostgreSQL; SQLite serialises writers), and at most one offer per
conversation is open (a partial unique index). The router applies answers it reads back from the
database, so an accept racing a timeout has exactly one winner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import conversations as conversation_actions
from threadline.actions.events import emit
from threadline.actions.permissions import Actor
from threadline.db.repos import conversations as conv_repo
from threadline.db.repos import routing as repo
from threadline.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from threadline.domain.events import Audience
from threadline.domain.queues import QueueSettings
from threadline.domain.routing import (
    DEFAULT_BLOCKED_BY,
    DEFAULT_CAPACITY,
    Agent,
    QueueConfig,
    ValidationReport,
    validate_routing,
)
from threadline.domain.routing_events import (
    OfferCreated,
    OfferEnded,
    RoutingSettingsChanged,
    RoutingState,
    SlaAlert,
    TaskPicked,
    TaskUnroutable,
    WrapUp,
    WrapUpEndRequested,
)
from threadline.domain.routing_settings import EngineSettings, QueueRouting, queue_config
from threadline.domain.users import Role

ENGINE_KEY = "engine"


# --------------------------------------------------------------------------- mapping db -> engine


def to_agent(rec: repo.AgentRecord) -> Agent:
    capacity = dict(DEFAULT_CAPACITY)
    capacity.update(rec.capacity or {})
    blocked = rec.blocked_by if rec.blocked_by is not None else {k: list(v) for k, v in DEFAULT_BLOCKED_BY.items()}
    return Agent(id=rec.id, skills=rec.skills, languages=rec.languages, teams=[str(t) for t in rec.team_ids],
                 queues=list(rec.queue_ids), available=rec.presence == "available", capacity=capacity,
                 blocked_by=blocked, last_idle=rec.presence_since)  # type: ignore[arg-type]


def queue_parts(rec: repo.QueueRecord) -> tuple[QueueSettings, QueueRouting]:
    return QueueSettings.model_validate(rec.settings or {}), QueueRouting.model_validate(rec.routing or {})


def to_configs(records: list[repo.QueueRecord]) -> dict[int, QueueConfig]:
    return {r.id: queue_config(*queue_parts(r)) for r in records}


async def engine_settings(session: AsyncSession) -> EngineSettings:
    return EngineSettings.model_validate(await repo.get_setting(session, ENGINE_KEY) or {})


# --------------------------------------------------------------------------- settings


def _bad(exc: ValidationError, prefix: str) -> ValidationFailed:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return ValidationFailed(f"{prefix}{loc + ': ' if loc else ''}{msg}", field=prefix.rstrip(".") or None)


async def check_queue_routing(session: AsyncSession, queue_id: int, routing: dict[str, Any],
                              settings: dict[str, Any] | None = None) -> tuple[QueueRouting, ValidationReport]:
    """Validate a queue's routing settings together with every other queue and the current roster."""
    records = await repo.queues(session)
    target = next((r for r in records if r.id == queue_id), None)
    if target is None:
        raise NotFound(f"queue {queue_id} does not exist")
    try:
        parsed = QueueRouting.model_validate(routing)
    except ValidationError as exc:
        raise _bad(exc, "routing.") from None
    try:
        qs = QueueSettings.model_validate({**(target.settings or {}), **(settings or {})})
    except ValidationError as exc:
        raise _bad(exc, "settings.") from None
    ids = {r.id for r in records}
    for step in parsed.steps:
        if step.overflow_to is not None and step.overflow_to not in ids:
            raise ValidationFailed(f"queue {queue_id}: overflow to queue {step.overflow_to!r}, which does not exist",
                                   field="routing.steps")
    cfgs: dict[Any, Any] = {}
    for r in records:
        cfgs[r.id] = queue_config(qs, parsed) if r.id == queue_id else queue_config(*queue_parts(r))
    report = validate_routing(cfgs, [to_agent(a) for a in await repo.roster(session)])
    if not report.ok:
        raise ValidationFailed(report.error_text(), field="routing")
    return parsed, report


async def set_queue_routing(session: AsyncSession, actor: Actor, queue_id: int, routing: dict[str, Any], *,
                            settings: dict[str, Any] | None = None, force: bool = False) -> list[str]:
    """Replace a queue's routing settings (and merge ``settings`` into its queue settings: skills, SLA).
    Refused when the settings are impossible (overflow loop, unknown queue, bad levels) or, unless
    ``force``, when no agent of the current roster could ever take the queue's tasks. Returns warnings."""
    actor.require(Role.ADMIN, "change routing settings")
    parsed, report = await check_queue_routing(session, queue_id, routing, settings)
    mine = [w.message for w in report.warnings if w.queue_id == queue_id]
    never = [m for m in mine if "can never be matched" in m]
    if never and not force:
        raise ValidationFailed(never[0] + " (send force=true to save anyway)", field="routing")
    if settings:
        from threadline.actions import users as user_actions

        await user_actions.update_queue(session, queue_id, settings=settings)
    await repo.set_queue_routing(session, queue_id, parsed.model_dump(mode="json"))
    emit(session, RoutingSettingsChanged(queue_ids=[queue_id]), Audience())
    return mine


async def set_agent_profile(session: AsyncSession, actor: Actor, user_id: int, *, capacity: dict[str, int],
                            blocked_by: dict[str, list[str]] | None = None) -> None:
    actor.require(Role.SUPERVISOR, "change agents' capacities")
    from threadline.db.repos import users as users_repo

    if await users_repo.get_user(session, user_id) is None:
        raise NotFound(f"user {user_id} does not exist")
    try:
        agent = Agent(id=user_id, capacity=capacity, **({"blocked_by": blocked_by} if blocked_by is not None else {}))
    except ValidationError as exc:
        raise _bad(exc, "") from None
    await repo.set_agent_profile(session, user_id, {k: int(v) for k, v in agent.capacity.items()},
                                 None if blocked_by is None else {k: list(v) for k, v in agent.blocked_by.items()})
    emit(session, RoutingSettingsChanged(agent_ids=[user_id]), Audience())


async def set_engine_settings(session: AsyncSession, actor: Actor, values: dict[str, Any]) -> EngineSettings:
    actor.require(Role.ADMIN, "change routing settings")
    current = await engine_settings(session)
    try:
        new = EngineSettings.model_validate({**current.model_dump(mode="json"), **values})
    except ValidationError as exc:
        raise _bad(exc, "") from None
    await repo.set_setting(session, ENGINE_KEY, new.model_dump(mode="json"))
    emit(session, RoutingSettingsChanged(), Audience())
    return new


# --------------------------------------------------------------------------- agents answer


def _offer_audience(agent_id: int) -> Audience:
    return Audience(users=[agent_id])


async def _assign(session: AsyncSession, conversation_id: int, agent_id: int, now: float) -> None:
    task = await repo.get_task(session, conversation_id, for_update=True)
    if task is not None:
        data = dict(task.task)
        data.update(status="assigned", agent_id=agent_id, accepted_at=now)
        await repo.update_tasks(session, [{"b_id": conversation_id, "queue_id": task.queue_id,
                                           "channel": task.channel, "status": "assigned", "agent_id": agent_id,
                                           "task": data, "updated_at": now}])
    await conversation_actions.update_conversation(session, None, conversation_id, assignee_id=agent_id)


async def accept_offer(session: AsyncSession, actor: Actor, offer_id: int, now: float | None = None) -> int:
    """The agent takes the offered conversation: it is assigned to them (through the conversation
    action, with its events). Returns the conversation id."""
    now = time.time() if now is None else now
    offer = await repo.get_offer(session, offer_id, for_update=True)
    if offer is None or offer.agent_id != actor.user_id:
        raise NotFound(f"offer {offer_id} does not exist")
    if offer.status != "open":
        raise Conflict(f"offer {offer_id} is no longer open: it was {offer.status.replace('_', ' ')}")
    conv = await conv_repo.get_conversation(session, offer.conversation_id, for_update=True)
    if conv is None or conv.status != "open" or conv.assignee_id not in (None, actor.user_id):
        offer.status, offer.ended_at = "rescinded", now
        emit(session, OfferEnded(offer_id=offer.id, conversation_id=offer.conversation_id, agent_id=offer.agent_id,
                                 outcome="rescinded", at=now), _offer_audience(offer.agent_id))
        raise Conflict(f"conversation {offer.conversation_id} no longer needs an agent")
    offer.status, offer.ended_at = "accepted", now
    await _assign(session, offer.conversation_id, actor.user_id, now)
    emit(session, OfferEnded(offer_id=offer.id, conversation_id=offer.conversation_id, agent_id=offer.agent_id,
                             outcome="accepted", at=now), _offer_audience(offer.agent_id))
    return offer.conversation_id


async def reject_offer(session: AsyncSession, actor: Actor, offer_id: int, now: float | None = None) -> None:
    """The agent declines: the task waits again with its original age (the router re-offers it)."""
    now = time.time() if now is None else now
    offer = await repo.get_offer(session, offer_id, for_update=True)
    if offer is None or offer.agent_id != actor.user_id:
        raise NotFound(f"offer {offer_id} does not exist")
    if offer.status != "open":
        raise Conflict(f"offer {offer_id} is no longer open: it was {offer.status.replace('_', ' ')}")
    offer.status, offer.ended_at = "rejected", now
    task = await repo.get_task(session, offer.conversation_id, for_update=True)
    if task is not None and task.status == "offered":
        data = dict(task.task)
        data.update(status="waiting", agent_id=None)
        await repo.update_tasks(session, [{"b_id": task.conversation_id, "queue_id": task.queue_id,
                                           "channel": task.channel, "status": "waiting", "agent_id": None,
                                           "task": data, "updated_at": now}])
    emit(session, OfferEnded(offer_id=offer.id, conversation_id=offer.conversation_id, agent_id=offer.agent_id,
                             outcome="rejected", at=now), _offer_audience(offer.agent_id))


async def pick_task(session: AsyncSession, actor: Actor, conversation_id: int, now: float | None = None) -> None:
    """An agent takes a waiting task from a queue they serve (a supervisor: any), if they have a free
    slot on its channel class. An open offer of it to someone else is withdrawn."""
    now = time.time() if now is None else now
    offer = await repo.open_offer_for(session, conversation_id)  # offer, then task: the order everyone locks in
    task = await repo.get_task(session, conversation_id, for_update=True)
    if task is None or task.status not in ("waiting", "offered"):
        if task is None or not actor.sees_everything and task.queue_id not in actor.queue_ids:
            raise NotFound(f"conversation {conversation_id} is not waiting in a queue")
        raise Conflict(f"conversation {conversation_id} is already {task.status}")
    origin = task.task.get("origin_queue_id")
    if not actor.sees_everything and task.queue_id not in actor.queue_ids and origin not in actor.queue_ids:
        raise PermissionDenied(f"you do not serve the queue of conversation {conversation_id}")
    rec = await repo.roster(session, [actor.user_id])
    capacity = to_agent(rec[0]).capacity if rec else dict(DEFAULT_CAPACITY)
    used = (await repo.loads(session, actor.user_id)).get(actor.user_id, {}).get(task.channel, 0)
    if task.status == "offered" and task.agent_id == actor.user_id:
        used -= 1  # the offer to me already holds the slot it would take
    if not actor.sees_everything and used >= capacity.get(task.channel, 0):  # type: ignore[call-overload]
        raise Conflict(f"you have no free {task.channel} slot ({used} of {capacity.get(task.channel, 0)} in use)")  # type: ignore[call-overload]
    if offer is not None and offer.agent_id != actor.user_id:
        offer.status, offer.ended_at = "rescinded", now
        emit(session, OfferEnded(offer_id=offer.id, conversation_id=conversation_id, agent_id=offer.agent_id,
                                 outcome="rescinded", at=now), _offer_audience(offer.agent_id))
    elif offer is not None:  # taken from the queue view while it was offered to them: the popup closes
        offer.status, offer.ended_at = "accepted", now
        emit(session, OfferEnded(offer_id=offer.id, conversation_id=conversation_id, agent_id=offer.agent_id,
                                 outcome="accepted", at=now), _offer_audience(offer.agent_id))
    await _assign(session, conversation_id, actor.user_id, now)
    emit(session, TaskPicked(conversation_id=conversation_id, agent_id=actor.user_id, queue_id=task.queue_id, at=now),
         Audience(users=[actor.user_id], queues=[task.queue_id]))


async def end_wrap_up(session: AsyncSession, actor: Actor, conversation_id: int, now: float | None = None) -> None:
    """The agent is ready before the wrap-up timer ends (a supervisor may end anyone's): the slot is
    freed. The request is stored on the task row in a column only this action writes, so a router that
    misses the event (a restart, a change of leader) still finds it."""
    now = time.time() if now is None else now
    task = await repo.get_task(session, conversation_id, for_update=True)
    if task is None or task.status != "wrapping" or task.agent_id is None:
        if task is None or not (actor.sees_everything or task.agent_id == actor.user_id):
            raise NotFound(f"conversation {conversation_id} is not in wrap-up")
        raise Conflict(f"conversation {conversation_id} is not in wrap-up: it is {task.status}")
    if task.agent_id != actor.user_id and not actor.sees_everything:
        raise NotFound(f"conversation {conversation_id} is not in wrap-up")
    if task.wrap_ended_at is not None:
        raise Conflict(f"the wrap-up of conversation {conversation_id} is already ending")
    await repo.request_wrap_end(session, conversation_id, now)
    emit(session, WrapUpEndRequested(conversation_id=conversation_id, agent_id=task.agent_id, at=now),
         Audience(users=[task.agent_id], supervisors=False))


async def my_wrap_ups(session: AsyncSession, actor: Actor) -> list[WrapUp]:
    """The agent's conversations in wrap-up now, with when each ends."""
    out = []
    for row in await repo.agent_tasks(session, actor.user_id, status="wrapping"):
        if row.wrap_ended_at is not None:  # "Ready" was said: the router is ending it
            continue
        out.append(WrapUp(conversation_id=row.conversation_id, agent_id=actor.user_id, queue_id=row.queue_id,
                          state="started", until=row.task.get("wrap_until"), at=row.updated_at))
    return out


# --------------------------------------------------------------------------- figures


def local_midnight(now: float, timezone: str) -> float:
    """Start of the day containing ``now`` in a time zone (a queue's business-hours zone)."""
    local = datetime.fromtimestamp(now, ZoneInfo(timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def today_figures(session: AsyncSession, now: float | None = None) -> dict[int, repo.QueueFigures]:
    """Each queue's figures since midnight in the queue's own time zone (that of its business hours):
    answered, within the answer target, abandoned, service level, ASA, AHT. One query per time zone."""
    now = time.time() if now is None else now
    by_zone: dict[str, list[int]] = {}
    for rec in await repo.queues(session):
        settings, _ = queue_parts(rec)
        by_zone.setdefault(settings.hours.timezone, []).append(rec.id)
    out: dict[int, repo.QueueFigures] = {}
    for zone, ids in by_zone.items():
        out.update(await repo.queue_figures(session, local_midnight(now, zone), queue_ids=ids))
    return out


# --------------------------------------------------------------------------- the router's writes


@dataclass
class Decisions:
    """What one router round changed, written in one transaction with executemany statements."""

    new_tasks: list[dict[str, Any]] = field(default_factory=list)
    task_updates: list[dict[str, Any]] = field(default_factory=list)
    gone_tasks: list[int] = field(default_factory=list)
    offers: list[OfferCreated] = field(default_factory=list)
    ended: list[OfferEnded] = field(default_factory=list)
    unroutable: list[TaskUnroutable] = field(default_factory=list)
    sla: list[SlaAlert] = field(default_factory=list)
    away: list[int] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    sla_states: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    wrap_ups: list[WrapUp] = field(default_factory=list)
    state: RoutingState | None = None

    def __bool__(self) -> bool:
        return bool(self.new_tasks or self.task_updates or self.gone_tasks or self.offers or self.ended
                    or self.unroutable or self.sla or self.away or self.positions or self.sla_states
                    or self.outcomes or self.wrap_ups or self.state)


async def record_decisions(session: AsyncSession, d: Decisions) -> None:
    """Persist a router round: tasks, offers and their outcomes, agents put away; emit the events
    (offers to their agent only; alerts to supervisors and the queue)."""
    await repo.delete_tasks(session, d.gone_tasks)
    await repo.insert_tasks(session, d.new_tasks)
    await repo.update_tasks(session, d.task_updates)
    if d.ended:
        await repo.end_offers(session, [{"b_id": e.offer_id, "status": e.outcome, "ended_at": e.at} for e in d.ended])
    if d.offers:
        await repo.insert_offers(session, [
            {"id": o.offer_id, "conversation_id": o.conversation_id, "agent_id": o.agent_id,
             "queue_id": o.queue_id, "channel": o.channel, "offered_at": o.offered_at,
             "expires_at": o.expires_at, "status": "open", "ended_at": None} for o in d.offers])
    for e in d.ended:
        emit(session, e, Audience(users=[e.agent_id], supervisors=False))
    for o in d.offers:
        emit(session, o, Audience(users=[o.agent_id], supervisors=False))
    for u in d.unroutable:
        emit(session, u, Audience(queues=[u.queue_id]))
    for s in d.sla:
        emit(session, s, Audience(queues=[s.queue_id]))
    await repo.update_positions(session, d.positions)
    await repo.update_sla_states(session, d.sla_states)
    await repo.insert_outcomes(session, d.outcomes)
    for w in d.wrap_ups:
        emit(session, w, Audience(users=[w.agent_id], supervisors=False))
    if d.state is not None:
        emit(session, d.state, Audience())
    if d.away:
        from threadline.actions import users as user_actions

        for agent_id in d.away:
            await user_actions.set_presence(session, agent_id, "away", "missed offers")
