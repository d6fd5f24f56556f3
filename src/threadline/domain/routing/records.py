"""The typed seam between the routing driver and storage: what the driver reads (conversation states,
agents, queues, stored tasks and offers) and what it decides (rows to write, events to emit).

The records are plain slotted dataclasses, not frozen ones: thousands are made a second on the router's
hot path, and a frozen dataclass costs four times as much to build. Treat them as values all the same.

Times here are timezone-aware UTC datetimes, the one time type at the storage boundary; the engine's
own clock is Unix seconds (floats, cheap to compare in its heaps), converted with :func:`instant` and
:func:`seconds`. Durations (waits, handle times) are seconds everywhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ..conversations import ConversationStatus
from ..queues import QueueSettings
from .events import OfferCreated, OfferEnded, OfferResult, RoutingState, SlaAlert, TaskUnroutable, WrapUp
from .models import DEFAULT_BLOCKED_BY, DEFAULT_CAPACITY, Agent, EngineConfig, QueueConfig, Task
from .settings import QueueRouting, queue_config


class OutcomeKind(enum.StrEnum):
    """The kind of a routing fact (``routing_outcomes.kind``)."""

    ANSWERED = "answered"  # an agent accepted or picked it
    ABANDONED = "abandoned"  # the customer left while it waited
    CANCELLED = "cancelled"  # it left the queue for another reason (resolved, unassigned from routing)
    SELF_SERVICE = "self_service"
    TRANSFERRED = "transferred"  # moved to another queue while waiting
    HANDLED = "handled"  # the agent's work on it ended (talk + wrap-up)


class OfferStatus(enum.StrEnum):
    """An offer row's status (``routing_offers.status``): open, then how it ended (``OfferResult``)."""

    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    RESCINDED = "rescinded"


def instant(at: float) -> datetime:
    """The engine's clock (Unix seconds) as a UTC datetime."""
    return datetime.fromtimestamp(at, UTC)


def seconds(at: datetime) -> float:
    """A datetime on the engine's clock (Unix seconds)."""
    return at.timestamp()


# --------------------------------------------------------------------------- what the driver reads


@dataclass(slots=True)
class ConversationState:
    """What routing needs of a conversation. ``abandoned``: the customer left while waiting (a caller
    hung up), so a waiting task leaves as abandoned rather than cancelled."""

    id: int
    status: str
    queue_id: int | None
    assignee_id: int | None
    contact_id: int
    contact_name: str
    priority: str
    attributes: dict[str, Any]
    contact_attributes: dict[str, Any]
    kind: str | None  # the channel kind of its last channel (the adapter declares the work class)
    active_at: datetime  # last activity: a new task's age counts from it (the customer's last message)
    abandoned: bool = False

    @property
    def needs_human(self) -> bool:
        return self.status == ConversationStatus.OPEN and self.assignee_id is None and self.queue_id is not None


class ConversationKeys(NamedTuple):
    """The narrow columns the reconciliation compares with the engine."""

    status: str
    queue_id: int | None
    assignee_id: int | None


@dataclass(slots=True)
class AgentRecord:
    """An active user who serves a queue or belongs to a team, with their routing profile."""

    id: int
    name: str
    role: str
    skills: dict[str, int]
    languages: list[str]
    presence: str
    presence_since: datetime | None
    queue_ids: list[int]
    team_ids: list[int]
    capacity: dict[str, int] | None
    blocked_by: dict[str, list[str]] | None

    def agent(self) -> Agent:
        """The engine's agent: default slots and cross-channel rules unless the profile sets them."""
        capacity = dict(DEFAULT_CAPACITY)
        capacity.update(self.capacity or {})
        blocked = self.blocked_by if self.blocked_by is not None else {
            k: list(v) for k, v in DEFAULT_BLOCKED_BY.items()}
        return Agent(id=self.id, skills=self.skills, languages=self.languages, teams=[str(t) for t in self.team_ids],
                     queues=list(self.queue_ids), available=self.presence == "available", capacity=capacity,
                     blocked_by=blocked,
                     last_idle=seconds(self.presence_since) if self.presence_since is not None else 0.0)


@dataclass(slots=True)
class RoutingQueue:
    """A queue as routing sees it: its settings, its routing-only settings and the engine's config."""

    id: int
    settings: QueueSettings
    routing: QueueRouting
    config: QueueConfig

    @classmethod
    def of(cls, queue_id: int, settings: QueueSettings, routing: QueueRouting) -> RoutingQueue:
        return cls(queue_id, settings, routing, queue_config(settings, routing))

    @classmethod
    def parse(cls, queue_id: int, settings: dict[str, Any] | None, routing: dict[str, Any] | None) -> RoutingQueue:
        """From the stored JSON of the queue's settings and its routing settings."""
        return cls.of(queue_id, QueueSettings.model_validate(settings or {}),
                      QueueRouting.model_validate(routing or {}))


@dataclass(slots=True)
class StoredTask:
    """A row of ``routing_tasks``: one per conversation that needs (or had, until its wrap-up ends) a human.
    ``task`` is the engine's task as JSON (its own snapshot format, on the engine's clock)."""

    conversation_id: int
    queue_id: int
    channel: str
    status: str
    agent_id: int | None
    enqueued_at: datetime
    task: dict[str, Any]
    position: int | None
    ewt_seconds: float | None
    note: str
    updated_at: datetime
    sla_state: str
    wrap_end_requested_at: datetime | None  # the agent said "Ready" (written by the action only)


@dataclass(slots=True)
class StoredOffer:
    id: int
    conversation_id: int
    agent_id: int
    queue_id: int
    channel: str
    offered_at: datetime
    expires_at: datetime
    status: OfferStatus
    ended_at: datetime | None


class OfferAnswer(NamedTuple):
    """An offer row read back (locked) by the router: has the agent answered, and when?"""

    status: OfferStatus
    ended_at: datetime | None


@dataclass(slots=True)
class Restore:
    """Everything the driver rebuilds its engine from after a restart or a change of leader."""

    queues: list[RoutingQueue]
    settings: EngineConfig
    roster: list[AgentRecord]
    tasks: list[StoredTask]
    offers: list[StoredOffer]
    next_offer_id: int
    names: dict[int, str]  # conversation -> contact name (shown with offers)


@dataclass(slots=True)
class RoundInput:
    """What a round read: ``queues`` (all of them, when reloaded), ``roster`` (every agent, or only those
    in ``roster_scope``), offer rows read back, conversations read (``gone``: no longer there), wrap-ups
    the agent ended ("Ready"), each new task's contact's last agent, and whether the periodic state
    round (SLA alerts, positions, ``routing.state``) is due."""

    now: float
    queues: list[RoutingQueue] | None = None
    roster: list[AgentRecord] | None = None
    roster_scope: set[int] | None = None
    offers: dict[int, OfferAnswer] = field(default_factory=dict)
    conversations: dict[int, ConversationState] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    wrap_done: set[int] = field(default_factory=set)
    last_agents: dict[int, int] = field(default_factory=dict)
    state: bool = False


# --------------------------------------------------------------------------- what the driver decides


@dataclass(slots=True)
class TaskUpdate:
    """A task row's new state (``task``: the engine's task, stored as JSON)."""

    conversation_id: int
    queue_id: int
    channel: str
    status: str
    agent_id: int | None
    task: Task
    updated_at: datetime


@dataclass(slots=True)
class NewTask(TaskUpdate):
    enqueued_at: datetime
    note: str = ""  # why nobody can take it, if so


@dataclass(slots=True)
class PositionUpdate:
    conversation_id: int
    position: int
    ewt_seconds: int | None
    note: str


@dataclass(slots=True)
class SlaStateUpdate:
    """The last SLA alert announced for a task ("" once it waits again), so a restart does not repeat it."""

    conversation_id: int
    sla_state: str


@dataclass(slots=True)
class NewOffer:
    offer_id: int
    conversation_id: int
    agent_id: int
    queue_id: int
    channel: str
    contact_name: str
    waited_seconds: float
    offered_at: datetime
    expires_at: datetime

    def event(self) -> OfferCreated:
        return OfferCreated(offer_id=self.offer_id, conversation_id=self.conversation_id, agent_id=self.agent_id,
                            queue_id=self.queue_id, channel=self.channel, contact_name=self.contact_name,
                            waited_seconds=self.waited_seconds, offered_at=seconds(self.offered_at),
                            expires_at=seconds(self.expires_at))


@dataclass(slots=True)
class EndedOffer:
    offer_id: int
    conversation_id: int
    agent_id: int
    outcome: OfferResult
    at: datetime

    def event(self) -> OfferEnded:
        return OfferEnded(offer_id=self.offer_id, conversation_id=self.conversation_id, agent_id=self.agent_id,
                          outcome=self.outcome, at=seconds(self.at))


@dataclass(slots=True)
class Outcome:
    """A fact for reports and wallboards (``routing_outcomes``), written in the round it happens."""

    conversation_id: int
    queue_id: int
    channel: str
    agent_id: int | None
    kind: OutcomeKind
    at: datetime
    enqueued_at: datetime | None = None
    wait_seconds: float | None = None
    handle_seconds: float | None = None
    within_target: bool | None = None


@dataclass(slots=True)
class Decisions:
    """What one round changed: rows to write and events to emit, in one transaction. ``reread``,
    ``refused_queues`` and ``more`` are for the caller only (nothing to write)."""

    new_tasks: list[NewTask] = field(default_factory=list)
    task_updates: list[TaskUpdate] = field(default_factory=list)
    gone_tasks: list[int] = field(default_factory=list)
    offers: list[NewOffer] = field(default_factory=list)
    ended: list[EndedOffer] = field(default_factory=list)
    unroutable: list[TaskUnroutable] = field(default_factory=list)
    sla: list[SlaAlert] = field(default_factory=list)
    away: list[int] = field(default_factory=list)  # agents to put away after missed offers
    positions: list[PositionUpdate] = field(default_factory=list)
    sla_states: list[SlaStateUpdate] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    wrap_ups: list[WrapUp] = field(default_factory=list)
    state: RoutingState | None = None
    reread: set[int] = field(default_factory=set)  # conversations to read again next round
    refused_queues: list[tuple[int, str]] = field(default_factory=list)  # settings the engine refused, why
    more: bool = False  # the round hit its offer limit: another one is due at once
    state_cost: float = 0.0  # seconds the state round took (on the timer passed to the driver)

    def __bool__(self) -> bool:
        return bool(self.new_tasks or self.task_updates or self.gone_tasks or self.offers or self.ended
                    or self.unroutable or self.sla or self.away or self.positions or self.sla_states
                    or self.outcomes or self.wrap_ups or self.state)
