"""Routing settings: a queue's routing (checked with every other queue and the current roster), an
agent's slots per channel class, the engine-wide settings; and the reads that map them to the domain."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions import users as user_actions
from threadline.actions.events import emit
from threadline.db.repos import routing as repo
from threadline.db.repos import users as users_repo
from threadline.domain.access import Actor
from threadline.domain.errors import NotFound, ValidationFailed
from threadline.domain.events import Audience
from threadline.domain.queues import QueueSettings
from threadline.domain.routing import Agent, ValidationReport, validate_routing
from threadline.domain.routing.events import RoutingSettingsChanged
from threadline.domain.routing.records import RoutingQueue
from threadline.domain.routing.settings import EngineSettings, QueueRouting, queue_config
from threadline.domain.users import Role

ENGINE_KEY = "engine"


def queue_parts(rec: repo.QueueRecord) -> tuple[QueueSettings, QueueRouting]:
    """A stored queue's settings and routing settings."""
    return QueueSettings.model_validate(rec.settings or {}), QueueRouting.model_validate(rec.routing or {})


async def routing_queues(session: AsyncSession) -> list[RoutingQueue]:
    return [RoutingQueue.parse(r.id, r.settings, r.routing) for r in await repo.queues(session)]


async def engine_settings(session: AsyncSession) -> EngineSettings:
    return EngineSettings.model_validate(await repo.get_setting(session, ENGINE_KEY) or {})


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
    report = validate_routing(cfgs, [a.agent() for a in await repo.roster(session)])
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
        await user_actions.update_queue(session, queue_id, settings=settings)
    await repo.set_queue_routing(session, queue_id, parsed.model_dump(mode="json"))
    emit(session, RoutingSettingsChanged(queue_ids=[queue_id]), Audience())
    return mine


async def set_agent_profile(session: AsyncSession, actor: Actor, user_id: int, *, capacity: dict[str, int],
                            blocked_by: dict[str, list[str]] | None = None) -> None:
    actor.require(Role.SUPERVISOR, "change agents' capacities")
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
