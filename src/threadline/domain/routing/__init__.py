"""Routing (ACD): which waiting task goes to which agent, and when.

Pure: the standard library and pydantic only; ``now`` is always passed in. The caller (an action
or the router worker) persists what the engine decides and can rebuild it from a snapshot.

Typical loop::

    engine = RoutingEngine({"billing": QueueConfig(skills={"billing": 2})})
    engine.upsert_agent(Agent(id=7, skills={"billing": 4}, queues=["billing"]))
    engine.enqueue(Task(id=1, channel="chat", queue_id="billing", enqueued_at=now), now)
    result = engine.step(now)          # expire offers, fire timers, decide
    for offer in result.offers: ...    # notify the agent; later engine.accept(offer.offer_id, t)

Semantics are documented on :class:`RoutingEngine` (matching), :class:`EscalationStep`
(relaxing over time, overflow) and :mod:`.estimates` (SLA state, EWT formula).
"""

from .engine import RoutingEngine
from .estimates import estimated_wait, sla_state
from .models import (
    CHANNELS,
    DEFAULT_AHT,
    DEFAULT_BLOCKED_BY,
    DEFAULT_CAPACITY,
    Agent,
    AgentAway,
    AgentNow,
    Assignment,
    Channel,
    Completed,
    EngineConfig,
    Enqueued,
    EscalationStep,
    Id,
    Offer,
    OfferOutcome,
    OfferRecord,
    PriorityBoost,
    QueueConfig,
    QueueNow,
    QueuePosition,
    QueueStats,
    RoutingEvent,
    RoutingSnapshot,
    SlaAlert,
    SlaState,
    SlaTarget,
    StepResult,
    Task,
    TaskEscalated,
    TaskOverflowed,
    TaskRemoved,
    TaskStatus,
    TaskView,
    UnroutableTask,
    WrapUpEnded,
)
from .validation import ValidationIssue, ValidationReport, explain_no_match, validate_routing

__all__ = [
    "CHANNELS",
    "DEFAULT_AHT",
    "DEFAULT_BLOCKED_BY",
    "DEFAULT_CAPACITY",
    "Agent",
    "AgentAway",
    "AgentNow",
    "Assignment",
    "Channel",
    "Completed",
    "EngineConfig",
    "Enqueued",
    "EscalationStep",
    "Id",
    "Offer",
    "OfferOutcome",
    "OfferRecord",
    "PriorityBoost",
    "QueueConfig",
    "QueueNow",
    "QueuePosition",
    "QueueStats",
    "RoutingEngine",
    "RoutingEvent",
    "RoutingSnapshot",
    "SlaAlert",
    "SlaState",
    "SlaTarget",
    "StepResult",
    "Task",
    "TaskEscalated",
    "TaskOverflowed",
    "TaskRemoved",
    "TaskStatus",
    "TaskView",
    "UnroutableTask",
    "ValidationIssue",
    "ValidationReport",
    "WrapUpEnded",
    "estimated_wait",
    "explain_no_match",
    "sla_state",
    "validate_routing",
]
