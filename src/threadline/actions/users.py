"""Users, teams, queues and presence."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from threadline.actions.events import emit
from threadline.db.models import PresenceLogRow, QueueRow, TeamRow, UserRow
from threadline.db.repos import auth as auth_repo
from threadline.db.repos import users as repo
from threadline.db.types import utcnow
from threadline.domain.contacts import normalise_email
from threadline.domain.errors import Conflict, NotFound, ValidationFailed
from threadline.domain.events import Audience, PresenceChanged
from threadline.domain.queues import QueueSettings
from threadline.domain.routing.events import RoutingSettingsChanged
from threadline.domain.text import clean_name
from threadline.domain.users import Presence, Role, User, normalise_skills
from threadline.security import hash_password, password_problem


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationFailed(f"role must be one of {', '.join(r.value for r in Role)}", field="role") from None


def _languages(langs: list[str]) -> list[str]:
    out = []
    for lang in langs:
        code = lang.strip().lower()
        if not code or len(code) > 12 or not code.replace("-", "").isalpha():
            raise ValidationFailed(f"{lang!r} is not a language code like en, es or pt-br", field="languages")
        out.append(code)
    return sorted(set(out))


async def _check_ids(session: AsyncSession, team_ids: list[int] | None, queue_ids: list[int] | None) -> None:
    for tid in team_ids or []:
        if await repo.get_team(session, tid) is None:
            raise ValidationFailed(f"team {tid} does not exist", field="team_ids")
    for qid in queue_ids or []:
        if await repo.get_queue(session, qid) is None:
            raise ValidationFailed(f"queue {qid} does not exist", field="queue_ids")


async def create_user(session: AsyncSession, *, email: str, name: str, role: str = "agent",
                      password: str | None = None, skills: dict[str, int] | None = None,
                      languages: list[str] | None = None, team_ids: list[int] | None = None,
                      queue_ids: list[int] | None = None) -> UserRow:
    email = normalise_email(email)
    if await repo.get_user_by_email(session, email) is not None:
        raise Conflict(f"a user with email {email} already exists", field="email")
    if not clean_name(name):
        raise ValidationFailed("a user needs a name", field="name")
    if password is not None and (problem := password_problem(password)):
        raise ValidationFailed(problem, field="password")
    await _check_ids(session, team_ids, queue_ids)
    user = UserRow(email=email, name=clean_name(name), role=_role(role).value,
                   password_hash=hash_password(password) if password else None,
                   skills=normalise_skills(skills or {}), languages=_languages(languages or []),
                   presence="offline", presence_reason="", active=True)
    session.add(user)
    await session.flush()
    await repo.set_team_ids(session, user.id, team_ids or [])
    await repo.set_queue_ids(session, user.id, queue_ids or [])
    await session.flush()
    if team_ids or queue_ids:  # the router adds them to its roster now, not at its next sweep
        emit(session, RoutingSettingsChanged(agent_ids=[user.id]), Audience(supervisors=False))
    return user


async def update_user(session: AsyncSession, user_id: int, *, name: str | None = None, role: str | None = None,
                      skills: dict[str, int] | None = None, languages: list[str] | None = None,
                      team_ids: list[int] | None = None, queue_ids: list[int] | None = None,
                      active: bool | None = None) -> UserRow:
    user = await repo.get_user(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    await _check_ids(session, team_ids, queue_ids)
    if name is not None:
        if not clean_name(name):
            raise ValidationFailed("a user needs a name", field="name")
        user.name = clean_name(name)
    new_role = _role(role).value if role is not None else user.role
    if user.role == Role.ADMIN.value and user.active and (new_role != Role.ADMIN.value or active is False):
        # Someone must always be able to administer Threadline: the last active admin stays one.
        if await repo.active_admin_ids(session) == [user.id]:
            raise Conflict("this is the last active admin; make another user an admin first",
                           field="role" if new_role != Role.ADMIN.value else "active")
    if role is not None:
        user.role = new_role
    if skills is not None:
        user.skills = normalise_skills(skills)
    if languages is not None:
        user.languages = _languages(languages)
    if active is not None:
        user.active = active
        if not active:
            await auth_repo.delete_sessions_of(session, user.id)
    if team_ids is not None:
        await repo.set_team_ids(session, user.id, team_ids)
    if queue_ids is not None:
        await repo.set_queue_ids(session, user.id, queue_ids)
    await session.flush()
    if any(v is not None for v in (skills, languages, team_ids, queue_ids, active)):
        # who may take what changed: the router re-reads this agent now (removes them if they left)
        emit(session, RoutingSettingsChanged(agent_ids=[user.id]), Audience(supervisors=False))
    return user


async def set_password(session: AsyncSession, user_id: int, password: str) -> None:
    user = await repo.get_user(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    if problem := password_problem(password):
        raise ValidationFailed(problem, field="password")
    user.password_hash = hash_password(password)
    await auth_repo.delete_sessions_of(session, user.id)  # a new password ends every open session


async def set_presence(session: AsyncSession, user_id: int, status: str, reason: str = "") -> UserRow:
    user = await repo.get_user(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    domain = User(email=user.email, name=user.name, presence=Presence(user.presence),
                  presence_reason=user.presence_reason)
    change = domain.set_presence(status, utcnow(), reason)
    if change is None:
        return user
    user.presence, user.presence_reason, user.presence_since = change.status.value, change.reason, change.at
    session.add(PresenceLogRow(user_id=user.id, status=change.status.value, reason=change.reason,
                               started_at=change.at))
    teams = await repo.team_ids_of(session, user.id)
    emit(session, PresenceChanged(user_id=user.id, status=change.status, reason=change.reason),
         Audience(users=[user.id], teams=teams))
    return user


async def create_team(session: AsyncSession, name: str) -> TeamRow:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("a team name is 1-100 characters", field="name")
    if await repo.get_team_by_name(session, name) is not None:
        raise Conflict(f"a team named {name!r} already exists", field="name")
    team = TeamRow(name=name)
    session.add(team)
    await session.flush()
    return team


def _queue_settings(settings: dict[str, Any]) -> QueueSettings:
    try:
        return QueueSettings.model_validate(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValidationFailed(f"settings.{loc}: {err['msg']}" if loc else f"settings: {err['msg']}",
                               field="settings") from None


async def create_queue(session: AsyncSession, name: str, settings: dict[str, Any] | None = None,
                       team_id: int | None = None) -> QueueRow:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("a queue name is 1-100 characters", field="name")
    if await repo.get_queue_by_name(session, name) is not None:
        raise Conflict(f"a queue named {name!r} already exists", field="name")
    await _check_ids(session, [team_id] if team_id else None, None)
    queue = QueueRow(name=name, team_id=team_id,
                     settings=_queue_settings(settings or {}).model_dump(mode="json"))
    session.add(queue)
    await session.flush()
    emit(session, RoutingSettingsChanged(queue_ids=[queue.id]), Audience(supervisors=False))
    return queue


async def update_queue(session: AsyncSession, queue_id: int, *, name: str | None = None,
                       settings: dict[str, Any] | None = None, team_id: int | None = None) -> QueueRow:
    queue = await repo.get_queue(session, queue_id)
    if queue is None:
        raise NotFound(f"queue {queue_id} does not exist")
    if name is not None and name.strip() != queue.name:
        other = await repo.get_queue_by_name(session, name.strip())
        if other is not None:
            raise Conflict(f"a queue named {name!r} already exists", field="name")
        queue.name = name.strip()
    if settings is not None:
        queue.settings = _queue_settings({**(queue.settings or {}), **settings}).model_dump(mode="json")
    if team_id is not None:
        await _check_ids(session, [team_id], None)
        queue.team_id = team_id
    await session.flush()
    if settings is not None:  # skills, hours, SLA: the router reloads the queue now, not at its next sweep
        emit(session, RoutingSettingsChanged(queue_ids=[queue.id]), Audience(supervisors=False))
    return queue
