"""Tables that make delivery reliable: the event outbox, the inbound inbox, the outbound job queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from threadline.db.models.base import Base
from threadline.db.types import JSONType, UTCDateTime, utcnow


class OutboxEventRow(Base):
    """An event written in the same transaction as the change it describes.

    ``seq`` is the stream position clients resume after. On PostgreSQL the single relay gives it when it
    publishes (transactions commit out of id order there); on SQLite the writer gives it at insert
    (writers take turns, so commit order is seq order).
    """

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    name: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class InboxItemRow(Base):
    """A provider's request, stored verbatim before it is acknowledged; processed by workers/inbox.py."""

    __tablename__ = "inbox_items"
    __table_args__ = (
        UniqueConstraint("channel_instance_id", "dedupe_key"),
        Index("ix_inbox_pending", "processed_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_instance_id: Mapped[int] = mapped_column(ForeignKey("channel_instances.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(String(300))
    method: Mapped[str] = mapped_column(String(10), default="POST")
    url: Mapped[str] = mapped_column(Text, default="")
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class OutboundJobRow(Base):
    """One message to deliver through a channel adapter, retried with backoff until sent or failed."""

    __tablename__ = "outbound_jobs"
    __table_args__ = (Index("ix_outbound_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    channel_instance_id: Mapped[int] = mapped_column(ForeignKey("channel_instances.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ReplayNonceRow(Base):
    """A provider's one-time token (Mailgun's ``token``), kept until its signature could no longer be
    fresh: the same token with another request is a replay (refused), with the same request a retry."""

    __tablename__ = "replay_nonces"
    __table_args__ = (UniqueConstraint("channel_instance_id", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_instance_id: Mapped[int] = mapped_column(ForeignKey("channel_instances.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of what the request carried (its dedupe key)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
