"""Routing (ACD) state that must survive a restart: tasks, offers, per-agent capacities and per-queue
routing settings. Times are UTC datetimes (``UTCDateTime``), as in every other table; the routing engine's
own clock (Unix seconds) is converted in the driver's records (``domain/routing/records.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base
from threadline.db.types import JSONType, UTCDateTime


class RoutingTaskRow(Base):
    """One routable task per conversation that needs (or has, until wrap-up ends) a human."""

    __tablename__ = "routing_tasks"
    __table_args__ = (Index("ix_routing_tasks_queue_status", "queue_id", "status"),)

    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    queue_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))  # waiting, offered, assigned, wrapping
    agent_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    task: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the engine's Task model, as JSON
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ewt_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str] = mapped_column(String(500), default="")  # why nobody can take it, if so
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sla_state: Mapped[str] = mapped_column(String(20), default="", server_default="")  # last alert sent
    # the agent said "Ready" during wrap-up: written by the action only, read by the router
    wrap_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RoutingOfferRow(Base):
    """A reservation. At most one open offer per conversation (partial unique index)."""

    __tablename__ = "routing_offers"
    __table_args__ = (
        Index("ix_routing_offers_open_task", "conversation_id", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
        Index("ix_routing_offers_agent_status", "agent_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(Integer)
    queue_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open accepted rejected timed_out rescinded
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RoutingAgentRow(Base):
    """An agent's routing profile beyond their user row: slots per channel class, cross-channel rules."""

    __tablename__ = "routing_agents"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                                         autoincrement=False)
    capacity: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    blocked_by: Mapped[dict[str, list[str]] | None] = mapped_column(JSONType, nullable=True)


class RoutingQueueRow(Base):
    """A queue's routing-only settings (escalation steps, boosts, offer timeout, wrap-up, sticky)."""

    __tablename__ = "routing_queues"

    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), primary_key=True,
                                          autoincrement=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class RoutingSettingRow(Base):
    """Engine-wide settings (key ``engine``: no-answer limit, re-offer cool-down)."""

    __tablename__ = "routing_settings"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class RoutingOutcomeRow(Base):
    """A fact for reports and wallboards, written by the router in the round it happens:
    ``answered`` (an agent accepted or picked it: ``wait_seconds``, ``within_target``), ``abandoned``,
    ``cancelled`` or ``self_service`` (it left the queue unanswered), ``transferred`` (moved to another
    queue while waiting) and ``handled`` (the agent's work on it ended: ``handle_seconds`` = talk +
    wrap-up)."""

    __tablename__ = "routing_outcomes"
    __table_args__ = (Index("ix_routing_outcomes_queue_at", "queue_id", "at"),
                      Index("ix_routing_outcomes_agent_at", "agent_id", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(Integer)
    queue_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    agent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    wait_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    handle_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    within_target: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
