"""From what admins configure (``QueueSettings`` on the queue, ``QueueRouting`` for routing only) to
the routing engine's ``QueueConfig``, and from a conversation to a routing ``Task``. Pure.

Ids inside the engine: queues and agents are the database ids (int); teams are the team ids as
strings (``EscalationStep.add_teams=["3"]``) because the engine keys teams by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from threadline.domain.queues import QueueSettings

from .models import (
    CHANNELS,
    Channel,
    EngineConfig,
    EscalationStep,
    PriorityBoost,
    QueueConfig,
    SlaTarget,
    Task,
)

DEFAULT_BOOSTS = [PriorityBoost(attribute="vip", equals=True, boost=10)]
PRIORITY_LEVELS = {"low": -10, "normal": 0, "high": 10, "urgent": 20}


class QueueRouting(BaseModel):
    """Routing settings of a queue that ``QueueSettings`` does not hold (stored apart)."""

    model_config = ConfigDict(extra="forbid")

    steps: list[EscalationStep] = Field(default_factory=list, description="escalation ladder, by time waited")
    boosts: list[PriorityBoost] = Field(default_factory=lambda: list(DEFAULT_BOOSTS))
    language_required: bool = True
    offer_timeout_seconds: float = Field(default=30.0, gt=0, le=86_400)
    wrap_up_seconds: float = Field(default=0.0, ge=0, le=86_400)
    sticky_seconds: float = Field(default=0.0, ge=0, le=86_400 * 30,
                                  description="the contact's last agent gets the task first for this long")
    sticky_only: bool = Field(default=False, description="during the sticky time, wait for that agent alone")
    aht_seconds: dict[Channel, float] = Field(default_factory=dict)

    @field_validator("steps")
    @classmethod
    def _ladder(cls, v: list[EscalationStep]) -> list[EscalationStep]:
        return QueueConfig(steps=v).steps  # the engine's own checks: increasing times, overflow last

    @field_validator("steps", mode="before")
    @classmethod
    def _team_ids_as_text(cls, v: Any) -> Any:
        if isinstance(v, list):
            for step in v:
                if isinstance(step, dict) and isinstance(step.get("add_teams"), list):
                    step["add_teams"] = [str(t) for t in step["add_teams"]]
        return v


class EngineSettings(EngineConfig):
    """Engine-wide settings (stored under the key ``engine``)."""


def queue_config(settings: QueueSettings, routing: QueueRouting) -> QueueConfig:
    sla = settings.sla
    return QueueConfig(
        skills=dict(settings.skills),
        language_required=routing.language_required,
        priority=settings.priority,
        boosts=list(routing.boosts),
        steps=list(routing.steps),
        sla=SlaTarget(threshold_seconds=float(sla.answer_seconds), target_percent=sla.service_level_percent,
                      near_breach_ratio=sla.near_breach_ratio),
        offer_timeout_seconds=routing.offer_timeout_seconds,
        wrap_up_seconds=routing.wrap_up_seconds,
        aht_seconds=dict(routing.aht_seconds),
    )


def channel_class(work_class: Channel, attributes: dict[str, Any] | None = None) -> Channel:
    """The channel class of a conversation: its ``channel_class`` attribute, else the work class its
    channel's adapter declares (``Capabilities.work_class``: email, chat, voice or messaging)."""
    forced = (attributes or {}).get("channel_class")
    if forced in CHANNELS:
        return forced  # type: ignore[no-any-return]
    return work_class


def task_for(
    *,
    conversation_id: int,
    queue_id: int,
    work_class: Channel,
    priority: str,
    conversation_attributes: dict[str, Any],
    contact_attributes: dict[str, Any],
    enqueued_at: float,
    queue_settings: QueueSettings,
    routing: QueueRouting,
    last_agent_id: int | None = None,
) -> Task:
    """The routable task of a conversation. Attributes are the contact's overlaid with the
    conversation's (so ``vip`` and ``language`` may come from either); the language defaults to the
    queue's; ``skills`` (``{"name": level}``) in the conversation attributes add to the queue's."""
    attributes = {**(contact_attributes or {}), **(conversation_attributes or {})}
    language = attributes.get("language") or queue_settings.language
    skills: dict[str, int] = {}
    raw = attributes.get("skills")
    if isinstance(raw, dict):
        for name, level in raw.items():
            if isinstance(level, int) and not isinstance(level, bool) and 1 <= level <= 5 and name:
                skills[str(name)] = level
    sticky = last_agent_id is not None and routing.sticky_seconds > 0
    owner = attributes.get("preferred_agent_id")  # e.g. the account owner, set by the CRM lookup
    if isinstance(owner, int) and not isinstance(owner, bool) and owner > 0:
        last_agent_id, sticky = owner, True
        routing = routing.model_copy(update={"sticky_seconds": routing.sticky_seconds or 60})
    return Task(
        id=conversation_id,
        channel=channel_class(work_class, attributes),
        queue_id=queue_id,
        enqueued_at=enqueued_at,
        skills=skills,
        language=language if isinstance(language, str) and language else None,
        priority=PRIORITY_LEVELS.get(priority, 0),
        preferred_agent_id=last_agent_id if sticky else None,
        sticky_until=enqueued_at + routing.sticky_seconds if sticky else None,
        preferred_only=routing.sticky_only and sticky,
        attributes={k: v for k, v in attributes.items() if isinstance(v, str | int | float | bool)},
    )
