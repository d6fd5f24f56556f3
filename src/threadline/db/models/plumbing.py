"""Tables that make delivery reliable: the event outbox and its followers' cursors, the inbound inbox,
the outbound job queue, and the durable timers (scheduled jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, false
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
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),
                      Index("ix_outbox_ephemeral", "ephemeral", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    name: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # a high-frequency signal (typing, wallboard snapshots): kept minutes, not days (docs/operations.md)
    ephemeral: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class OutboxCursorRow(Base):
    """How far a named outbox follower (workers/follower.py) has handled the outbox: the last ``seq``."""

    __tablename__ = "outbox_cursors"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


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


class ScheduledJobRow(Base):
    """A durable timer: run the handler of ``kind`` for ``key`` at ``due_at`` (workers/scheduler.py).

    One row per (kind, key): scheduling the pair again moves it. A worker claims a due job by counting
    the attempt and leasing it (``lease_until``); the job is deleted when its handler succeeds, tried
    again after a backoff when it fails, and kept with ``failed_at`` and ``last_error`` when it has
    failed too often."""

    __tablename__ = "scheduled_jobs"
    __table_args__ = (
        UniqueConstraint("kind", "key"),
        Index("ix_scheduled_jobs_due", "failed_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(60))
    key: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
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


class ChangeCounterRow(Base):
    """A counter that triggers raise on every write to a group of tables (``auth``: users, their queue and
    team memberships, sessions and API tokens), in the writer's transaction, whatever code or process
    wrote. A reader that kept something derived from those tables (the actor of a token, db/cache.py)
    keeps it while the counter has not moved. SQLite only (the triggers are created there); PostgreSQL
    keeps no reads."""

    __tablename__ = "change_counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
