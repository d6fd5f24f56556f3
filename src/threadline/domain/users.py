"""Users (agents, supervisors, admins), their skills, teams and presence."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from threadline.domain.errors import ValidationFailed


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


class Presence(enum.StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    BREAK = "break"
    OFFLINE = "offline"


_SKILL_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")


def normalise_skills(raw: dict[str, int]) -> dict[str, int]:
    """Skills are lower-case names with a level from 1 (basic) to 5 (expert)."""
    out: dict[str, int] = {}
    for name, level in raw.items():
        key = str(name).strip().lower()
        if not _SKILL_RE.match(key):
            raise ValidationFailed(f"skill name {name!r} must be 1-40 of a-z 0-9 _ -", field="skills")
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 5:
            raise ValidationFailed(f"skill {key!r} needs a level from 1 to 5, not {level!r}", field="skills")
        out[key] = level
    return out


def parse_skill_spec(spec: str) -> dict[str, int]:
    """Parse ``"billing:4,spanish:5,general"`` (a missing level means 3)."""
    skills: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, level = item.partition(":")
        try:
            skills[name] = int(level) if level else 3
        except ValueError:
            raise ValidationFailed(f"skill {item!r}: the level must be a number from 1 to 5", field="skills") from None
    return normalise_skills(skills)


@dataclass(frozen=True, slots=True)
class PresenceChange:
    status: Presence
    reason: str
    at: datetime


@dataclass(slots=True)
class User:
    email: str
    name: str
    role: Role = Role.AGENT
    skills: dict[str, int] = field(default_factory=dict)
    languages: list[str] = field(default_factory=list)
    presence: Presence = Presence.OFFLINE
    presence_reason: str = ""
    presence_since: datetime | None = None
    id: int | None = None

    def set_presence(self, status: Presence | str, now: datetime, reason: str = "") -> PresenceChange | None:
        """Change presence; a break needs a reason, an away may have one (the router's "missed offers");
        available and offline carry none. Returns the change to record, or None."""
        try:
            status = Presence(status)
        except ValueError:
            allowed = ", ".join(p.value for p in Presence)
            raise ValidationFailed(f"unknown presence {status!r}; use one of {allowed}", field="status") from None
        reason = reason.strip()
        if status is Presence.BREAK and not reason:
            raise ValidationFailed("say why you are on a break (lunch, training, …)", field="reason")
        if len(reason) > 100:
            raise ValidationFailed("a presence reason is at most 100 characters", field="reason")
        if status not in (Presence.BREAK, Presence.AWAY):
            reason = ""
        if status is self.presence and reason == self.presence_reason:
            return None
        self.presence, self.presence_reason, self.presence_since = status, reason, now
        return PresenceChange(status, reason, now)
