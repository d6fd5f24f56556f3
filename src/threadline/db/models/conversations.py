"""Conversations (no channel of their own), their labels and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base, Timestamps
from threadline.db.types import JSONType, UTCDateTime, utcnow


class ConversationRow(Timestamps, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_activity", "last_activity_at", "id"),
        Index("ix_conversations_status_queue", "status", "queue_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id", ondelete="SET NULL"), nullable=True)
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_channel_instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_instances.id", ondelete="SET NULL"), nullable=True
    )
    last_identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL"), nullable=True
    )
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Conversation SLA (actions/sla.py, docs/sla.md): when the running cycle began (None: no clock runs),
    # the deadlines of its queue's targets, when they were met or missed.
    sla_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConversationLabelRow(Base):
    __tablename__ = "conversation_labels"

    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(63), primary_key=True, index=True)


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel_instance_id", "provider_id"),
        Index("ix_messages_conversation", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    channel_instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel_instances.id", ondelete="SET NULL"), nullable=True
    )
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id", ondelete="SET NULL"), nullable=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    provider_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    delivery_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
