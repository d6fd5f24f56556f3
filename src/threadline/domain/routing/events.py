"""Events of the routing worker and routing actions (offers, queue and agent states, alerts).

Times are Unix seconds (the routing engine's clock) so a desk can run a countdown without parsing."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict


class OfferResult(enum.StrEnum):
    """How an offer ended (``routing.offer_ended``; the offer row's status once it is not open)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    RESCINDED = "rescinded"  # withdrawn: the task left, or another agent picked it


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OfferCreated(_Event):
    """To the chosen agent only: take this conversation? Answer before ``expires_at``."""

    name: Literal["routing.offer"] = "routing.offer"
    offer_id: int
    conversation_id: int
    agent_id: int
    queue_id: int
    channel: str
    contact_name: str = ""
    waited_seconds: float
    offered_at: float
    expires_at: float


class OfferEnded(_Event):
    """An offer was accepted, rejected, timed out or withdrawn (the desk closes its popup)."""

    name: Literal["routing.offer_ended"] = "routing.offer_ended"
    offer_id: int
    conversation_id: int
    agent_id: int
    outcome: OfferResult
    at: float


class TaskPicked(_Event):
    name: Literal["routing.task_picked"] = "routing.task_picked"
    conversation_id: int
    agent_id: int
    queue_id: int
    at: float


class TaskUnroutable(_Event):
    """Supervisor alert: no agent in the roster can take this task at its current escalation step."""

    name: Literal["routing.task_unroutable"] = "routing.task_unroutable"
    conversation_id: int
    queue_id: int
    reason: str
    next_step_at: float | None = None


class SlaAlert(_Event):
    name: Literal["routing.sla_alert"] = "routing.sla_alert"
    conversation_id: int
    queue_id: int
    state: Literal["near_breach", "breached"]
    waited_seconds: float
    threshold_seconds: float


class WrapUp(_Event):
    """To the agent: after-contact work on a conversation started (with its end) or ended, by its
    timer or because the agent said they are ready (``ended_by``)."""

    name: Literal["routing.wrap_up"] = "routing.wrap_up"
    conversation_id: int
    agent_id: int
    queue_id: int
    state: Literal["started", "ended"]
    until: float | None = None
    at: float
    ended_by: Literal["timer", "agent", "router"] | None = None


class WrapUpEndRequested(_Event):
    """The agent (or a supervisor) ends a wrap-up early; the router frees the slot."""

    name: Literal["routing.wrap_up_end_requested"] = "routing.wrap_up_end_requested"
    conversation_id: int
    agent_id: int
    at: float


class QueueState(BaseModel):
    queue_id: int
    waiting: int
    offered: int
    longest_wait_seconds: float
    unroutable: int
    agents_available: int


class AgentState(BaseModel):
    agent_id: int
    available: bool
    load: dict[str, int]


class RoutingState(_Event):
    """For supervisors' wallboards: queues and agents whose state changed since the last one."""

    name: Literal["routing.state"] = "routing.state"
    at: float
    queues: list[QueueState]
    agents: list[AgentState]


class RoutingSettingsChanged(_Event):
    """Queue routing settings or agent capacities changed: the router reloads them."""

    name: Literal["routing.settings_changed"] = "routing.settings_changed"
    queue_ids: list[int] = []
    agent_ids: list[int] = []


ROUTING_EVENTS = (OfferCreated, OfferEnded, TaskPicked, TaskUnroutable, SlaAlert, RoutingState,
                  RoutingSettingsChanged, WrapUp, WrapUpEndRequested)
