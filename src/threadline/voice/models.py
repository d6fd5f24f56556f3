"""Voice tables: one row per call (its customer leg, where it stands, who answered, the flow it runs) and
the provider events applied to it, each once (unique by the provider's own key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base, Timestamps
from threadline.db.types import JSONType, UTCDateTime, utcnow


class CallRow(Timestamps, Base):
    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("channel_instance_id", "provider_ref"),
        Index("ix_calls_conversation", "conversation_id", "id"),
        Index("ix_calls_live", "state", "queue_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_instance_id: Mapped[int] = mapped_column(ForeignKey("channel_instances.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(40))  # the channel kind: twilio_voice, pbx…
    provider_ref: Mapped[str] = mapped_column(String(200))  # Twilio CallSid, the PBX's callId
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), nullable=True)
    direction: Mapped[str] = mapped_column(String(10))  # inbound | outbound
    from_number: Mapped[str] = mapped_column(String(60), default="")
    to_number: Mapped[str] = mapped_column(String(60), default="")
    state: Mapped[str] = mapped_column(String(20))
    end_cause: Mapped[str | None] = mapped_column(String(20), nullable=True)
    locale: Mapped[str] = mapped_column(String(10), default="en")
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id", ondelete="SET NULL"), nullable=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    # the flow it runs, pinned to the version it started on, and where it stands in it
    flow_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flow_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flow_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    verified_by: Mapped[str | None] = mapped_column(String(40), nullable=True)  # "pin", "account"… None: unverified
    callback_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=-1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recording_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    recording_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # conference, agent leg, gaps…


class CallEventRow(Base):
    """A provider event applied to a call; ``key`` is the provider's identity of the event (a repeat is
    refused by the unique constraint and applied once)."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
