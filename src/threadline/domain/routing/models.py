"""Routing data: configuration and snapshot inputs (pydantic) and outcomes (frozen dataclasses).

Inputs are pydantic models so that admins' settings and persisted snapshots are validated with
messages a user can act on. Outcomes are small frozen dataclasses: the engine creates one per
decision and they must be cheap. Both serialise with ``pydantic.TypeAdapter`` or ``dataclasses.asdict``.

Times are plain ``float`` seconds on the caller's clock (e.g. a Unix timestamp); the engine never
reads a clock. Ids are ``int`` or ``str``, as the caller stores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Id = int | str
Channel = Literal["voice", "chat", "messaging", "email"]
CHANNELS: tuple[Channel, ...] = ("voice", "chat", "messaging", "email")
TaskStatus = Literal["waiting", "offered", "assigned", "wrapping"]
SlaState = Literal["ok", "near_breach", "breached"]
RemovalReason = Literal["abandoned", "cancelled", "self_service"]

MIN_LEVEL = 1
MAX_LEVEL = 5

DEFAULT_CAPACITY: dict[str, int] = {"voice": 1, "chat": 3, "messaging": 3, "email": 5}
# An agent on a call is not offered written work; written work never blocks a call.
DEFAULT_BLOCKED_BY: dict[str, list[str]] = {"chat": ["voice"], "messaging": ["voice"], "email": ["voice"]}
DEFAULT_AHT: dict[str, float] = {"voice": 300.0, "chat": 600.0, "messaging": 900.0, "email": 1800.0}


def _check_levels(skills: dict[str, int], what: str) -> dict[str, int]:
    for name, level in skills.items():
        if not name:
            raise ValueError(f"{what}: a skill needs a name")
        if not MIN_LEVEL <= level <= MAX_LEVEL:
            raise ValueError(
                f"{what} {name!r}: level {level} is impossible, levels go from {MIN_LEVEL} to {MAX_LEVEL}"
            )
    return skills


# ---------------------------------------------------------------------------------------------
# Configuration


class EscalationStep(BaseModel):
    """One rung of a queue's escalation ladder, applied once a task has waited ``after_seconds``
    in the queue. Steps are cumulative: a later step keeps the relaxations of the earlier ones.

    * ``max_level``: every required skill level is capped at this (``3`` = "level 3 will do").
    * ``drop_skills`` / ``ignore_skills``: stop evaluating some / all skills (bullseye rings).
    * ``ignore_language``: any agent may take it whatever languages they speak.
    * ``add_teams``: agents of these teams become eligible too (as if they served the queue).
    * ``priority_boost``: added to the task's priority.
    * ``overflow_to``: move the task to another queue; it then climbs that queue's ladder from
      its first rung, with the wait clock restarted at the moment of the overflow (the task keeps
      its original enqueue time, so it stays at the front of its priority in the new queue).
      An overflow step must be the last one and may not relax anything else.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_seconds: float = Field(ge=0)
    max_level: int | None = Field(default=None, ge=MIN_LEVEL, le=MAX_LEVEL)
    drop_skills: list[str] = Field(default_factory=list)
    ignore_skills: bool = False
    ignore_language: bool = False
    add_teams: list[str] = Field(default_factory=list)
    priority_boost: int = 0
    overflow_to: Id | None = None

    @model_validator(mode="after")
    def _overflow_alone(self) -> EscalationStep:
        relaxes = (
            self.max_level is not None
            or self.drop_skills
            or self.ignore_skills
            or self.ignore_language
            or self.add_teams
            or self.priority_boost
        )
        if self.overflow_to is not None and relaxes:
            raise ValueError("an overflow step only moves the task; put the relaxations in an earlier step")
        if self.overflow_to is None and not relaxes:
            raise ValueError(f"the step after {self.after_seconds:g} s changes nothing")
        return self


class PriorityBoost(BaseModel):
    """Add ``boost`` to a task's priority when ``attributes[attribute] == equals`` (e.g. vip)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(min_length=1)
    equals: Any = True
    boost: int


class SlaTarget(BaseModel):
    """``target_percent`` of tasks answered within ``threshold_seconds``. A waiting task is
    near breach from ``near_breach_ratio × threshold`` and breached at the threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_seconds: float = Field(default=20.0, gt=0)
    target_percent: float = Field(default=80.0, gt=0, le=100)
    near_breach_ratio: float = Field(default=0.8, gt=0, lt=1)


class QueueConfig(BaseModel):
    """Routing settings of one queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skills: dict[str, int] = Field(default_factory=dict, description="required of every task, levels 1-5")
    language_required: bool = True
    priority: int = 0
    boosts: list[PriorityBoost] = Field(default_factory=list)
    steps: list[EscalationStep] = Field(default_factory=list)
    sla: SlaTarget = Field(default_factory=SlaTarget)
    offer_timeout_seconds: float = Field(default=30.0, gt=0, le=86_400)
    wrap_up_seconds: float = Field(default=0.0, ge=0)
    aht_seconds: dict[Channel, float] = Field(
        default_factory=dict, description="handle time assumed for wait estimates before any task completes"
    )

    @field_validator("skills")
    @classmethod
    def _skills(cls, v: dict[str, int]) -> dict[str, int]:
        return _check_levels(v, "required skill")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[EscalationStep]) -> list[EscalationStep]:
        for before, after in zip(v, v[1:], strict=False):
            if after.after_seconds <= before.after_seconds:
                raise ValueError(
                    f"escalation steps must have increasing times: {after.after_seconds:g} s "
                    f"comes after {before.after_seconds:g} s"
                )
        for step in v[:-1]:
            if step.overflow_to is not None:
                raise ValueError("an overflow step must be the last one: later steps would never apply")
        return v


class EngineConfig(BaseModel):
    """Engine-wide settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_consecutive_no_answer: int | None = Field(
        default=3, ge=1, description="offers timing out in a row before the agent is put away; None = never"
    )
    reoffer_cooldown_seconds: float = Field(
        default=30.0, ge=0, description="a rejected or timed-out task is not re-offered to that agent before"
    )
    default_aht_seconds: dict[Channel, float] = Field(default_factory=lambda: dict(DEFAULT_AHT))
    aht_window: int = Field(default=100, ge=1, description="completed tasks averaged for wait estimates")
    idle_bucket_limit: int = Field(default=512, ge=0, description="empty requirement groups kept warm")


# ---------------------------------------------------------------------------------------------
# Roster and work items (also the snapshot format)


class Agent(BaseModel):
    """An agent as the router sees them. ``external_load`` counts slots busy with work the
    engine does not track (an outbound call, say); work the engine tracks (offers, assigned and
    wrapping tasks) is added to it. ``blocked_by[c]`` lists channels whose activity stops the
    agent from being offered channel ``c`` (the default: a call blocks chat, messaging, email)."""

    model_config = ConfigDict(extra="forbid")

    id: Id
    skills: dict[str, int] = Field(default_factory=dict)
    languages: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    queues: list[Id] = Field(default_factory=list)
    available: bool = True
    capacity: dict[Channel, int] = Field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    blocked_by: dict[Channel, list[Channel]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_BLOCKED_BY.items()}
    )
    external_load: dict[Channel, int] = Field(default_factory=dict)
    last_idle: float = 0.0
    no_answer_streak: int = Field(default=0, ge=0)

    @field_validator("skills")
    @classmethod
    def _skills(cls, v: dict[str, int]) -> dict[str, int]:
        return _check_levels(v, "agent skill")

    @field_validator("capacity", "external_load")
    @classmethod
    def _non_negative(cls, v: dict[str, int]) -> dict[str, int]:
        for channel, n in v.items():
            if n < 0:
                raise ValueError(f"{channel}: a slot count cannot be negative")
        return v


class Task(BaseModel):
    """A work item. The first block is what the caller supplies on enqueue; the second is the
    engine's runtime state, filled in by :meth:`RoutingEngine.snapshot` and read back by
    :meth:`RoutingEngine.from_snapshot`.

    ``language`` defaults to ``attributes["language"]``. While ``now < sticky_until`` the
    ``preferred_agent_id`` gets the task first if eligible and free; with ``preferred_only`` the
    task waits for that agent alone until ``sticky_until``.
    """

    model_config = ConfigDict(extra="forbid")

    id: Id
    channel: Channel
    queue_id: Id
    enqueued_at: float
    skills: dict[str, int] = Field(default_factory=dict)
    language: str | None = None
    priority: int = 0
    preferred_agent_id: Id | None = None
    sticky_until: float | None = None
    preferred_only: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict)

    status: TaskStatus = "waiting"
    agent_id: Id | None = None
    origin_queue_id: Id | None = None
    queue_entered_at: float | None = None
    escalation_step: int = Field(default=0, ge=0, description="rung of the queue's ladder reached")
    excluded_agents: list[tuple[Id, float]] = Field(
        default_factory=list, description="(agent id, not before): no re-offer to that agent until then"
    )
    accepted_at: float | None = None
    wrap_until: float | None = None

    @field_validator("skills")
    @classmethod
    def _skills(cls, v: dict[str, int]) -> dict[str, int]:
        return _check_levels(v, "required skill")

    @model_validator(mode="after")
    def _runtime(self) -> Task:
        if self.status in ("assigned", "wrapping") and self.agent_id is None:
            raise ValueError(f"task {self.id!r} is {self.status} but names no agent")
        if self.status == "wrapping" and self.wrap_until is None:
            raise ValueError(f"task {self.id!r} is wrapping but has no wrap_until")
        return self

    @property
    def effective_language(self) -> str | None:
        if self.language is not None:
            return self.language
        lang = self.attributes.get("language")
        return lang if isinstance(lang, str) and lang else None


# ---------------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True, slots=True)
class Offer:
    """A reservation: ``agent_id`` is asked to take ``task_id``; one slot is held until accept,
    reject, timeout (``expires_at``) or rescind."""

    offer_id: int
    task_id: Id
    agent_id: Id
    queue_id: Id
    channel: str
    offered_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Enqueued:
    task_id: Id
    queue_id: Id
    routable: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """The agent owns the task (accepted offer or manual pick); the slot stays busy until
    :meth:`RoutingEngine.complete` and the wrap-up after it."""

    task_id: Id
    agent_id: Id
    queue_id: Id
    channel: str
    accepted_at: float
    wait_seconds: float
    offer_id: int | None
    picked: bool = False


@dataclass(frozen=True, slots=True)
class AgentAway:
    """The engine stopped routing to this agent; the caller should set their presence."""

    agent_id: Id
    at: float
    reason: Literal["no_answer"] = "no_answer"
    no_answers: int = 0


@dataclass(frozen=True, slots=True)
class OfferOutcome:
    """An offer that ended without an accept. The task is waiting again (with its original
    enqueue time) unless ``kind == "rescinded"`` because it left the queue."""

    offer_id: int
    task_id: Id
    agent_id: Id
    kind: Literal["rejected", "timed_out", "rescinded"]
    at: float
    agent_away: AgentAway | None = None


@dataclass(frozen=True, slots=True)
class TaskRemoved:
    task_id: Id
    queue_id: Id
    reason: RemovalReason
    at: float
    wait_seconds: float
    rescinded: OfferOutcome | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    task_id: Id
    agent_id: Id
    at: float
    talk_seconds: float
    wrap_until: float | None


@dataclass(frozen=True, slots=True)
class WrapUpEnded:
    task_id: Id
    agent_id: Id
    queue_id: Id
    at: float
    handle_seconds: float  # talk + wrap-up
    channel: str = ""


@dataclass(frozen=True, slots=True)
class TaskEscalated:
    task_id: Id
    queue_id: Id
    step: int
    at: float


@dataclass(frozen=True, slots=True)
class TaskOverflowed:
    task_id: Id
    from_queue_id: Id
    to_queue_id: Id
    at: float


RoutingEvent = TaskEscalated | TaskOverflowed | WrapUpEnded


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task as the engine holds it now (read-only), for callers that persist or display it."""

    id: Id
    queue_id: Id
    origin_queue_id: Id
    channel: str
    status: str  # waiting, offered, assigned, wrapping
    agent_id: Id | None
    enqueued_at: float
    offer_id: int | None
    offer_expires_at: float | None


@dataclass(frozen=True, slots=True)
class QueueNow:
    """A queue's live figures for wallboards."""

    queue_id: Id
    waiting: int
    offered: int
    longest_wait_seconds: float
    agents_available: int
    waiting_ids: tuple[Id, ...]


@dataclass(frozen=True, slots=True)
class AgentNow:
    agent_id: Id
    available: bool
    load: dict[str, int]


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """``position`` is 1 for the next task to be served in its queue and channel."""

    task_id: Id
    queue_id: Id
    position: int
    ewt_seconds: float | None


@dataclass(frozen=True, slots=True)
class SlaAlert:
    task_id: Id
    queue_id: Id
    state: SlaState
    waited_seconds: float
    threshold_seconds: float


@dataclass(frozen=True, slots=True)
class UnroutableTask:
    task_id: Id
    queue_id: Id
    waited_seconds: float
    reason: str
    next_step_at: float | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counters since the engine was built. ``service_level`` counts abandoned tasks as misses."""

    queue_id: Id
    waiting: int
    offered: int
    answered: int
    answered_within_threshold: int
    abandoned: int
    service_level: float | None
    asa_seconds: float | None
    aht_seconds: dict[str, float]


@dataclass(frozen=True, slots=True)
class StepResult:
    """What :meth:`RoutingEngine.step` did: ended offers, new offers, timer events."""

    outcomes: list[OfferOutcome]
    offers: list[Offer]
    events: list[RoutingEvent]


class OfferRecord(BaseModel):
    """An open offer in a snapshot."""

    model_config = ConfigDict(extra="forbid")

    offer_id: int
    task_id: Id
    agent_id: Id
    offered_at: float
    expires_at: float


class RoutingSnapshot(BaseModel):
    """Everything needed to rebuild an engine after a restart (queue configs are passed apart)."""

    model_config = ConfigDict(extra="forbid")

    agents: list[Agent] = Field(default_factory=list)
    tasks: list[Task] = Field(default_factory=list)
    offers: list[OfferRecord] = Field(default_factory=list)
    next_offer_id: int = 1
