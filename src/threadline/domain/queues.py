"""Queues: where conversations wait for an agent, with their skills, hours and SLA targets."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _parse_hhmm(value: str) -> time | None:
    """``"24:00"`` means the end of the day and is returned as None."""
    m = _HHMM.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a time of day like 09:30")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours == 24:
        if minutes:
            raise ValueError(f"{value!r} is past midnight")
        return None
    return time(hours, minutes)


class BusinessHours(BaseModel):
    """Weekly opening hours in a time zone, with closed days. No ``weekly`` entry means always open."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    weekly: dict[str, list[tuple[str, str]]] | None = None
    closed_dates: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Madrid)") from None
        return v

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, v: dict[str, list[tuple[str, str]]] | None) -> dict[str, list[tuple[str, str]]] | None:
        if v is None:
            return v
        for day, spans in v.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
            for start, end in spans:
                s, e = _parse_hhmm(start), _parse_hhmm(end)
                if s is None or (e is not None and e <= s):
                    raise ValueError(f"{day} {start}-{end}: the end must come after the start")
        return v

    def is_open(self, at: datetime) -> bool:
        if self.weekly is None and not self.closed_dates:
            return True
        local = at.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.closed_dates:
            return False
        if self.weekly is None:
            return True
        for start, end in self.weekly.get(DAYS[local.weekday()], []):
            s, e = _parse_hhmm(start), _parse_hhmm(end)
            assert s is not None
            if local.time() >= s and (e is None or local.time() < e):
                return True
        return False


class SlaTargets(BaseModel):
    """Per-queue service targets. Service level: ``percent`` of contacts answered within ``answer_seconds``
    (routing). A conversation's first agent reply is due ``first_response_seconds`` after it starts and
    its resolution ``resolution_seconds`` after it (``domain/sla.py``; null: not tracked). Warnings come at
    ``near_breach_ratio`` of each."""

    model_config = ConfigDict(extra="forbid")

    answer_seconds: int = Field(default=60, ge=1, le=86_400 * 7)
    service_level_percent: float = Field(default=80.0, gt=0, le=100)
    first_response_seconds: int | None = Field(default=3600, ge=1, le=86_400 * 365)
    resolution_seconds: int | None = Field(default=86_400, ge=1, le=86_400 * 365)
    near_breach_ratio: float = Field(default=0.8, gt=0, lt=1)


class QueueVoice(BaseModel):
    """How the queue handles calls (every way in: Twilio, Asterisk, a PBX, the browser)."""

    model_config = ConfigDict(extra="forbid")

    record: str = Field(default="channel", pattern=r"^(channel|never|always|on_demand)$",
                        description="record its calls: always, on demand (the agent starts it), never, or as the "
                        "phone line says (channel; browser calls are then not recorded)")
    dispositions: list[str] = Field(default_factory=list, max_length=50,
                                    description="the disposition codes an agent picks at wrap-up (none: free text)")
    callback_order: str = Field(default="customer_first", pattern=r"^(customer_first|agent_first)$",
                                description="A callback rings the customer first (the agent joins when they "
                                "answer) or the agent first (the customer is dialled once the agent is there)")
    verified_for_sensitive: bool = Field(default=False, description="sensitive actions on a call need a caller "
                                         "verified by the IVR (PIN, account digits, date of birth)")

    @field_validator("dispositions")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for code in v:
            code = code.strip()
            if not 1 <= len(code) <= 60:
                raise ValueError("a disposition code is 1 to 60 characters")
            if code not in out:
                out.append(code)
        return out


class QueueSettings(BaseModel):
    """What an admin configures on a queue (the routing engine reads the same object)."""

    model_config = ConfigDict(extra="forbid")

    skills: dict[str, int] = Field(default_factory=dict, description="required skills with minimum levels 1-5")
    language: str | None = None
    priority: int = Field(default=0, ge=-100, le=100)
    hours: BusinessHours = Field(default_factory=BusinessHours)
    sla: SlaTargets = Field(default_factory=SlaTargets)
    voice: QueueVoice = Field(default_factory=QueueVoice)

    @model_validator(mode="after")
    def _levels(self) -> QueueSettings:
        for name, level in self.skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"skill {name!r}: a minimum level is from 1 to 5")
        return self
